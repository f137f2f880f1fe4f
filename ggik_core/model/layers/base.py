r"""What the EGNN and EGAT layers share: helpers and the base layer :class:`EquivariantConv`.

Both layers compute an edge message :math:`\mathbf{m}_{ij} = \phi_e(\mathbf{h}_i, \mathbf{h}_j,
\|\mathbf{x}_i - \mathbf{x}_j\|^2, \mathbf{a}_{ij})`, aggregate it (with or without attention
weights) together with a coordinate message, and update the nodes the same way:

.. math::
    \mathbf{x}_i^{\prime} = \mathbf{x}_i + \frac{1}{C} \sum_j w_{ij}\,
    \frac{\mathbf{x}_i - \mathbf{x}_j}{\|\mathbf{x}_i - \mathbf{x}_j\| + 1}\, \phi_x(\cdot), \qquad
    \mathbf{h}_i^{\prime} = \mathrm{LayerNorm}\big(\mathbf{h}_i +
    \phi_h(\mathbf{h}_i, \textstyle\sum_j w_{ij} \mathbf{m}_{ij})\big)

with :math:`w_{ij} = 1` for EGNN and the attention :math:`\alpha_{ij}` for EGAT. The layer files
define only what differs: the inputs of :math:`\phi_x`, the attention MLP and :meth:`message`.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Optional, Tuple, Union

import torch
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing
from torch_geometric.nn.inits import reset
from torch_geometric.nn.resolver import activation_resolver

ActType = Union[str, nn.Module, Callable[[], nn.Module]]

#: Squared distances below this value are clamped before the square root, so
#: that coincident nodes (e.g. self-loops) do not produce ``NaN`` gradients.
DIST_SQ_EPS = 1e-12


def make_activation(act: ActType) -> nn.Module:
    r"""Builds a fresh activation module from :obj:`act`.

    :obj:`act` may be a string understood by
    :func:`torch_geometric.nn.resolver.activation_resolver` (e.g.
    :obj:`"silu"`), a module instance (which is deep-copied so that every MLP
    owns its own activation) or a zero-argument callable such as
    :class:`torch.nn.SiLU`.
    """
    if isinstance(act, str):
        return activation_resolver(act)
    if isinstance(act, nn.Module):
        return copy.deepcopy(act)
    module = act()
    if not isinstance(module, nn.Module):
        raise TypeError(f"'act' must build a torch.nn.Module (got {type(module)})")
    return module


def relative_coordinates(x_i: Tensor, x_j: Tensor) -> Tuple[Tensor, Tensor]:
    r"""Returns the squared distance :math:`\|\mathbf{x}_i - \mathbf{x}_j\|^2`
    (shape :obj:`[E, 1]`) and the damped relative position
    :math:`(\mathbf{x}_i - \mathbf{x}_j) / (\|\mathbf{x}_i - \mathbf{x}_j\| + 1)`
    (shape :obj:`[E, D]`).

    The damping keeps the coordinate message bounded by :math:`1` for far away
    nodes, is well defined for coincident nodes and, since the norm is
    invariant, preserves E(n) equivariance.
    """
    diff = x_i - x_j
    dist_sq = diff.pow(2).sum(dim=-1, keepdim=True)
    dist = dist_sq.clamp_min(DIST_SQ_EPS).sqrt()
    return dist_sq, diff / (dist + 1.0)


def check_edge_attr(edge_attr: Optional[Tensor], edge_dim: int) -> None:
    r"""Validates :obj:`edge_attr` against the expected :obj:`edge_dim`."""
    if edge_dim > 0:
        if edge_attr is None:
            raise ValueError(
                f"'edge_attr' of size {edge_dim} is required but got None")
        if edge_attr.dim() != 2 or edge_attr.size(-1) != edge_dim:
            raise ValueError(
                f"'edge_attr' must have shape [E, {edge_dim}] "
                f"(got {list(edge_attr.shape)})")
    elif edge_attr is not None and edge_attr.numel() > 0:
        raise ValueError(
            "'edge_attr' was given but the layer was built with edge_dim=0")


def split_first_linear(lin: nn.Linear, h: Tensor,
                       channels: int) -> Tuple[Tensor, Tensor]:
    r"""Per-node parts of a linear map applied to :math:`[\mathbf{h}_i,
    \mathbf{h}_j, \ldots]`.

    :math:`W [\mathbf{h}_i; \mathbf{h}_j; \mathbf{e}_{ij}] + b =
    (W_1 \mathbf{h}_i + b) + W_2 \mathbf{h}_j + W_3 \mathbf{e}_{ij}`: the
    first two terms are computed once per node instead of once per edge (the
    same function with far fewer operations on dense graphs). Returns the
    target part :math:`W_1 \mathbf{h} + b` and the source part
    :math:`W_2 \mathbf{h}`.
    """
    W = lin.weight
    h_tgt = torch.nn.functional.linear(h, W[:, :channels], lin.bias)
    h_src = torch.nn.functional.linear(h, W[:, channels:2 * channels])
    return h_tgt, h_src


def edge_linear(lin: nn.Linear, e: Tensor, offset: int) -> Tensor:
    r"""The edge part :math:`W_3 \mathbf{e}_{ij}` of :func:`split_first_linear`
    (columns from :obj:`offset` on)."""
    return torch.nn.functional.linear(e, lin.weight[:, offset:])


def pair_incidence(N: int, device: torch.device, dtype: torch.dtype) -> Tuple[Tensor, Tensor, Tensor]:
    r"""The :math:`P = N(N-1)/2` node pairs :math:`(a, b)`, :math:`a < b`
    (:obj:`[2, P]`), the incidence :math:`S` (:obj:`[N, P]`, 1 where a node is
    in the pair) and the signed incidence (:math:`+1` for :math:`a`,
    :math:`-1` for :math:`b`): :math:`\sum_{j \ne i} \mathbf{m}_{ij} = (S
    \mathbf{m})_i` for symmetric messages and :math:`\sum_{j \ne i}
    \mathbf{v}_{ij} = (S_\pm \mathbf{v})_i` for antisymmetric ones."""
    pairs = torch.triu_indices(N, N, 1, device=device)
    P = pairs.shape[1]
    cols = torch.arange(P, device=device)
    inc = torch.zeros(N, P, dtype=dtype, device=device)
    inc[pairs[0], cols] = 1.0
    inc[pairs[1], cols] = 1.0
    signed = torch.zeros(N, P, dtype=dtype, device=device)
    signed[pairs[0], cols] = 1.0
    signed[pairs[1], cols] = -1.0
    return pairs, inc, signed


class EquivariantConv(MessagePassing):
    r"""Base of :class:`~ggik_core.model.EGNNLayer` and
    :class:`~ggik_core.model.EGATLayer`: builds :math:`\phi_e`, :math:`\phi_x`,
    :math:`\phi_h` and the optional :obj:`LayerNorm`, and applies the node
    update from the aggregated messages.

    Subclasses set the input width of :math:`\phi_x` (:meth:`phi_x_in`), may
    add edge MLPs (:meth:`build_edge_mlps`, :meth:`reset_edge_mlps`) and
    implement :meth:`forward` and :meth:`message`.

    Args:
        channels (int): Size of the node features :math:`\mathbf{h}`.
        edge_dim (int): Size of the edge features :math:`\mathbf{a}_{ij}`.
        hidden_channels (int, optional): Hidden size of the MLPs. Defaults to
            :obj:`channels`.
        message_channels (int, optional): Size of :math:`\mathbf{m}_{ij}`.
            Defaults to :obj:`hidden_channels`.
        coords_agg_norm (float): Normalisation constant :math:`C`.
        update_coords (bool): If :obj:`False`, :math:`\mathbf{x}` is returned
            unchanged and :math:`\phi_x` is not created.
        update_features (bool): If :obj:`False`, :math:`\mathbf{h}` is
            returned unchanged and :math:`\phi_h` (and the :obj:`LayerNorm`)
            are not created.
        act (str or torch.nn.Module or callable): The MLPs' non-linearity.
        norm (bool): Whether to apply :class:`torch.nn.LayerNorm` to the
            updated node features.
        coord_mlp (bool): If :obj:`True`, :math:`\phi_x` is a two-layer MLP;
            if :obj:`False`, a single bias-free linear map (a lighter
            coordinate head: about half the per-edge work of a layer).
        symmetric (bool): If :obj:`True`, :math:`\phi_e` applies the same
            weights to :math:`\mathbf{h}_i` and :math:`\mathbf{h}_j`, so that
            :math:`\mathbf{m}_{ij} = \mathbf{m}_{ji}` for symmetric edge
            features; the dense path then computes each pair once.
        edge_mlp (bool): If :obj:`True`, :math:`\phi_e` is a two-layer MLP;
            if :obj:`False`, one linear map and its non-linearity,
            :math:`\mathbf{m}_{ij} = \sigma(W [\mathbf{h}_i, \mathbf{h}_j,
            \|\mathbf{x}_i - \mathbf{x}_j\|^2, \mathbf{a}_{ij}] + b)`, whose
            linear map splits into per-node parts (:func:`split_first_linear`):
            no per-edge matrix product is left in :math:`\phi_e`.
    """

    def __init__(
        self,
        channels: int,
        edge_dim: int = 0,
        hidden_channels: Optional[int] = None,
        message_channels: Optional[int] = None,
        coords_agg_norm: float = 1.0,
        update_coords: bool = True,
        update_features: bool = True,
        act: ActType = nn.SiLU,
        norm: bool = True,
        coord_mlp: bool = True,
        symmetric: bool = False,
        edge_mlp: bool = True,
    ) -> None:
        super().__init__(aggr="add")
        if channels <= 0:
            raise ValueError(f"'channels' must be positive (got {channels})")
        if edge_dim < 0:
            raise ValueError(f"'edge_dim' must be non-negative (got {edge_dim})")
        if message_channels is not None and message_channels <= 0:
            raise ValueError(
                f"'message_channels' must be positive (got {message_channels})")
        if coords_agg_norm <= 0:
            raise ValueError(
                f"'coords_agg_norm' must be positive (got {coords_agg_norm})")

        self.channels = channels
        self.edge_dim = edge_dim
        self.hidden_channels = hidden_channels or channels
        self.message_channels = message_channels or self.hidden_channels
        self.coords_agg_norm = float(coords_agg_norm)
        self.update_coords = update_coords
        self.update_features = update_features
        self.norm = norm
        self.coord_mlp = coord_mlp
        self.symmetric = symmetric
        self.edge_mlp = edge_mlp
        H, M = self.hidden_channels, self.message_channels

        self.build_edge_mlps(act)
        self.phi_x: Optional[nn.Sequential] = None
        if update_coords and coord_mlp:
            self.phi_x = nn.Sequential(
                nn.Linear(self.phi_x_in(), H),
                make_activation(act),
                nn.Linear(H, 1, bias=False),
            )
        elif update_coords:
            self.phi_x = nn.Sequential(nn.Linear(self.phi_x_in(), 1, bias=False))
        self.phi_h: Optional[nn.Sequential] = None
        if update_features:
            self.phi_h = nn.Sequential(
                nn.Linear(channels + M, H),
                make_activation(act),
                nn.Linear(H, channels),
            )
        self.layer_norm: Optional[nn.LayerNorm] = None
        if norm and update_features:
            self.layer_norm = nn.LayerNorm(channels)

        self.reset_parameters()

    def phi_x_in(self) -> int:
        r"""Input width of :math:`\phi_x` (the message :math:`\mathbf{m}_{ij}`)."""
        return self.message_channels

    def build_edge_mlps(self, act: ActType) -> None:
        r"""Creates :math:`\phi_e` on :math:`[\mathbf{h}_i, \mathbf{h}_j,
        \|\mathbf{x}_i - \mathbf{x}_j\|^2, \mathbf{a}_{ij}]`: two layers, or one
        when not :obj:`edge_mlp`."""
        n_in = self.edge_offset + 1 + self.edge_dim
        if not self.edge_mlp:
            self.phi_e = nn.Sequential(nn.Linear(n_in, self.message_channels), make_activation(act))
            return
        self.phi_e = nn.Sequential(
            nn.Linear(n_in, self.hidden_channels),
            make_activation(act),
            nn.Linear(self.hidden_channels, self.message_channels),
            make_activation(act),
        )

    def reset_edge_mlps(self) -> None:
        reset(self.phi_e)

    @property
    def edge_offset(self) -> int:
        r"""Column of :math:`\phi_e`'s first weight where the edge features start."""
        return self.channels if self.symmetric else 2 * self.channels

    def node_parts(self, h: Tensor) -> Tuple[Tensor, Tensor]:
        r"""The target and source parts of :math:`\phi_e`'s first linear map,
        :math:`(W_1 \mathbf{h} + b, W_2 \mathbf{h})`, with :math:`W_2 = W_1`
        when :obj:`symmetric` (:func:`split_first_linear`)."""
        if not self.symmetric:
            return split_first_linear(self.phi_e[0], h, self.channels)
        lin = self.phi_e[0]
        h_src = torch.nn.functional.linear(h, lin.weight[:, :self.channels])
        return h_src + lin.bias, h_src

    #: the fused CPU implementation bound to this layer (:meth:`use_kernels`), or ``None`` for
    #: the eager path
    fused: Optional[Callable[..., Tuple[Tensor, Tensor]]] = None

    #: the registered name (set by :func:`~ggik_core.model.layers.registry.register_layer`)
    layer_name: str = ""

    @classmethod
    def from_config(cls, cfg: Any, update_coords: bool = True, update_features: bool = True) -> "EquivariantConv":
        r"""A layer of the sizes and options of a
        :class:`~ggik_core.model.config.ModelConfig` (the CVAE builds its stacks with this);
        subclasses add their own options in :meth:`config_options`."""
        return cls(cfg.hidden, edge_dim=cfg.edge_dim, hidden_channels=cfg.hidden,
                   coords_agg_norm=cfg.coords_agg_norm, update_coords=update_coords,
                   update_features=update_features, coord_mlp=cfg.phi_x == "mlp",
                   edge_mlp=cfg.phi_e == "mlp", **cls.config_options(cfg))

    @classmethod
    def config_options(cls, cfg: Any) -> dict:
        r"""The constructor options this layer type reads from the model config (none here;
        ``ValueError`` for an option the layer does not support)."""
        if cfg.symmetric:
            raise ValueError(f"symmetric messages are for egnn layers, not {cls.layer_name or cls.__name__}")
        return {}

    def use_kernels(self, fused: Optional[Callable[..., Tuple[Tensor, Tensor]]]) -> None:
        r"""Run :meth:`forward_dense` on CPU tensors through ``fused`` (a fused implementation
        bound to this layer), or eagerly with ``None``."""
        self.fused = fused

    def reset_parameters(self) -> None:
        r"""Resets all learnable parameters of the module."""
        super().reset_parameters()
        self.reset_edge_mlps()
        if self.phi_h is not None:
            reset(self.phi_h)
        if self.phi_x is not None:
            reset(self.phi_x)
            nn.init.xavier_uniform_(self.phi_x[-1].weight, gain=0.001)
        if self.layer_norm is not None:
            self.layer_norm.reset_parameters()

    def edge_message(self, h_tgt_i: Tensor, h_src_j: Tensor, dist_sq: Tensor,
                     edge_attr: Optional[Tensor]) -> Tensor:
        r""":math:`\mathbf{m}_{ij} = \phi_e(\mathbf{h}_i, \mathbf{h}_j,
        \|\mathbf{x}_i - \mathbf{x}_j\|^2, \mathbf{a}_{ij})` from the per-node
        parts of its first linear map (:func:`split_first_linear`)."""
        e = dist_sq if edge_attr is None else torch.cat([dist_sq, edge_attr], dim=-1)
        pre = h_tgt_i + h_src_j + edge_linear(self.phi_e[0], e, self.edge_offset)
        return self.phi_e[1:](pre)

    def dense_edge_message(self, h: Tensor, x: Tensor, e: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
        r"""The dense form of :meth:`edge_message` on complete graphs of equal size.

        With :obj:`h` :math:`(B, N, C)`, :obj:`x` :math:`(B, N, D)` and edge features
        :obj:`e` :math:`(B, N, N, F_e)` indexed ``[b, j, i]`` (source :math:`j`, target
        :math:`i`), returns :math:`\mathbf{m}` :math:`(B, N, N, M)` and the damped relative
        positions :math:`(\mathbf{x}_i - \mathbf{x}_j)/(\|\cdot\| + 1)` :math:`(B, N, N, D)`,
        both ``[b, j, i]``. The diagonal ``j = i`` is computed too; callers drop it.
        """
        h_tgt, h_src = self.node_parts(h)
        # broadcast to [b, j, i]: target i along the last node axis, source j along the first
        dist_sq, rel_x = relative_coordinates(x[:, None, :, :], x[:, :, None, :])
        return self.edge_message(h_tgt[:, None, :, :], h_src[:, :, None, :], dist_sq, e), rel_x

    def coord_message(self, rel_x: Tensor, phi_x_input: Tensor) -> Tensor:
        r"""The coordinate message :math:`\mathrm{rel}_{ij}\, \phi_x(\cdot)`
        (zeros when the layer does not update coordinates); computed in the precision of the
        coordinates even under autocast."""
        if self.phi_x is None:
            return torch.zeros_like(rel_x)
        if torch.is_autocast_enabled(rel_x.device.type):
            # coordinates stay in full precision under autocast: the hidden layer of phi_x may run
            # in bf16, but its output layer and the products with rel_x do not (bf16 there would
            # limit positions to about 3 significant digits: millimetres on a metre)
            hidden = self.phi_x[:-1](phi_x_input)
            with torch.autocast(rel_x.device.type, enabled=False):
                return rel_x * self.phi_x[-1](hidden.to(rel_x.dtype))
        return rel_x * self.phi_x(phi_x_input)

    def split_aggregate(self, out: Tensor) -> Tuple[Tensor, Tensor]:
        r"""The aggregated :obj:`out = [sum_j w_ij m_ij, sum_j w_ij (coordinate message)_ij]` as
        its two parts :math:`(\mathbf{m}_i, \Delta\mathbf{x}_i)`."""
        return out[..., :self.message_channels], out[..., self.message_channels:]

    def node_update(self, h: Tensor, x: Tensor, m_i: Tensor, delta_x: Tensor) -> Tuple[Tensor, Tensor]:
        r"""Applies the feature and coordinate updates from the aggregated message
        :math:`\mathbf{m}_i` and coordinate update :math:`\Delta\mathbf{x}_i`."""
        h_out = h
        if self.phi_h is not None:
            h_out = h + self.phi_h(torch.cat([h, m_i], dim=-1))
            if self.layer_norm is not None:
                h_out = self.layer_norm(h_out)
        x_out = x
        if self.phi_x is not None:
            x_out = x + delta_x / self.coords_agg_norm
        return h_out, x_out

    def forward_dense(self, h: Tensor, x: Tensor, e: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
        r"""The layer on a batch of complete graphs without self-loops, all of
        :math:`N` nodes: :obj:`h` :math:`(B, N, C)`, :obj:`x` :math:`(B, N, D)`,
        :obj:`e` :math:`(B, N, N, F_e)` indexed ``[b, j, i]``. The same function
        as :meth:`forward` on the equivalent :obj:`edge_index` (tested), with
        dense tensors instead of gathers and scatters."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.channels}, "
                f"edge_dim={self.edge_dim}, "
                f"hidden_channels={self.hidden_channels}, "
                f"message_channels={self.message_channels}, "
                f"update_coords={self.update_coords})")
