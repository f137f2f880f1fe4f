"""E(n)-equivariant graph convolution (Satorras et al., 2021)."""

from __future__ import annotations

import copy
from typing import Callable, Optional, Tuple, Union

import torch
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing
from torch_geometric.nn.inits import reset
from torch_geometric.nn.resolver import activation_resolver

ActType = Union[str, nn.Module, Callable[[], nn.Module]]

#: Squared distances below this value are clamped before the square root, so
#: that coincident nodes (e.g. self-loops) do not produce ``NaN`` gradients.
_DIST_SQ_EPS = 1e-12


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
    dist = dist_sq.clamp_min(_DIST_SQ_EPS).sqrt()
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


class EGNNLayer(MessagePassing):
    r"""The E(n)-equivariant graph convolutional layer from the
    `"E(n) Equivariant Graph Neural Networks"
    <https://arxiv.org/abs/2102.09844>`_ paper

    .. math::
        \mathbf{m}_{ij} &= \phi_e\left(\mathbf{h}_i, \mathbf{h}_j,
        \|\mathbf{x}_i - \mathbf{x}_j\|^2, \mathbf{a}_{ij}\right)

        \mathbf{x}_i^{\prime} &= \mathbf{x}_i + \frac{1}{C}
        \sum_{j \in \mathcal{N}(i)}
        \frac{\mathbf{x}_i - \mathbf{x}_j}{\|\mathbf{x}_i - \mathbf{x}_j\| + 1}
        \, \phi_x(\mathbf{m}_{ij})

        \mathbf{h}_i^{\prime} &= \mathrm{LayerNorm}\left(\mathbf{h}_i +
        \phi_h\left(\mathbf{h}_i, \sum_{j \in \mathcal{N}(i)}
        \mathbf{m}_{ij}\right)\right)

    where :math:`\phi_e`, :math:`\phi_x` and :math:`\phi_h` are two-layer
    MLPs, :math:`C` is :obj:`coords_agg_norm` and the (invariant)
    :obj:`LayerNorm` is only applied if :obj:`norm=True`.
    Messages flow from source nodes :math:`j` (:obj:`edge_index[0]`) to
    target nodes :math:`i` (:obj:`edge_index[1]`).

    Compared to the original paper, the relative position is divided by
    :math:`\|\mathbf{x}_i - \mathbf{x}_j\| + 1`, which bounds the coordinate
    update, avoids a division by zero for coincident nodes and keeps the
    layer E(n)-equivariant. The last layer of :math:`\phi_x` has no bias and is
    initialised with a tiny gain (:math:`10^{-3}`), so that coordinates barely
    move at initialisation.

    If :obj:`edge_attr` only holds E(n)-invariant quantities, :math:`\mathbf{h}`
    is E(n)-invariant and :math:`\mathbf{x}` is E(n)-equivariant.

    Args:
        channels (int): Size of the node features :math:`\mathbf{h}`.
        edge_dim (int, optional): Size of the edge features
            :math:`\mathbf{a}_{ij}` (:obj:`0` for none). (default: :obj:`0`)
        hidden_channels (int, optional): Hidden (and message) size of the
            MLPs. Defaults to :obj:`channels`. (default: :obj:`None`)
        coords_agg_norm (float, optional): Normalisation constant :math:`C`
            of the coordinate aggregation. (default: :obj:`1.0`)
        update_features (bool, optional): If set to :obj:`False`, node
            features are returned unchanged and :math:`\phi_h` (and the
            :obj:`LayerNorm`) are not created, e.g. for a last layer whose
            features nobody reads. (default: :obj:`True`)
        update_coords (bool, optional): If set to :obj:`False`, coordinates
            are returned unchanged and :math:`\phi_x` is not created.
            (default: :obj:`True`)
        act (str or torch.nn.Module or callable, optional): The non-linearity
            used in all MLPs. (default: :class:`torch.nn.SiLU`)
        norm (bool, optional): If set to :obj:`True`, applies
            :class:`torch.nn.LayerNorm` to the updated node features.
            (default: :obj:`True`)

    Shapes:
        - **input:**
          node features :math:`(|\mathcal{V}|, F)`,
          node coordinates :math:`(|\mathcal{V}|, D)`,
          edge indices :math:`(2, |\mathcal{E}|)`,
          edge features :math:`(|\mathcal{E}|, F_e)` *(optional)*
        - **output:** node features :math:`(|\mathcal{V}|, F)`,
          node coordinates :math:`(|\mathcal{V}|, D)`
    """

    def __init__(
        self,
        channels: int,
        edge_dim: int = 0,
        hidden_channels: Optional[int] = None,
        coords_agg_norm: float = 1.0,
        update_coords: bool = True,
        update_features: bool = True,
        act: ActType = nn.SiLU,
        norm: bool = True,
    ) -> None:
        super().__init__(aggr="add")
        if channels <= 0:
            raise ValueError(f"'channels' must be positive (got {channels})")
        if edge_dim < 0:
            raise ValueError(f"'edge_dim' must be non-negative (got {edge_dim})")
        if coords_agg_norm <= 0:
            raise ValueError(
                f"'coords_agg_norm' must be positive (got {coords_agg_norm})")

        self.channels = channels
        self.edge_dim = edge_dim
        self.hidden_channels = hidden_channels or channels
        self.coords_agg_norm = float(coords_agg_norm)
        self.update_coords = update_coords
        self.update_features = update_features
        self.norm = norm
        H = self.hidden_channels

        self.phi_e = nn.Sequential(
            nn.Linear(2 * channels + 1 + edge_dim, H),
            make_activation(act),
            nn.Linear(H, H),
            make_activation(act),
        )
        self.phi_x: Optional[nn.Sequential] = None
        if update_coords:
            self.phi_x = nn.Sequential(
                nn.Linear(H, H),
                make_activation(act),
                nn.Linear(H, 1, bias=False),
            )
        self.phi_h: Optional[nn.Sequential] = None
        if update_features:
            self.phi_h = nn.Sequential(
                nn.Linear(channels + H, H),
                make_activation(act),
                nn.Linear(H, channels),
            )
        self.layer_norm: Optional[nn.LayerNorm] = None
        if norm and update_features:
            self.layer_norm = nn.LayerNorm(channels)

        self.reset_parameters()

    def reset_parameters(self) -> None:
        r"""Resets all learnable parameters of the module."""
        super().reset_parameters()
        reset(self.phi_e)
        if self.phi_h is not None:
            reset(self.phi_h)
        if self.phi_x is not None:
            reset(self.phi_x)
            nn.init.xavier_uniform_(self.phi_x[-1].weight, gain=0.001)
        if self.layer_norm is not None:
            self.layer_norm.reset_parameters()

    def forward(
        self,
        h: Tensor,
        x: Tensor,
        edge_index: Tensor,
        edge_attr: Optional[Tensor] = None,
    ) -> Tuple[Tensor, Tensor]:
        r"""Runs the forward pass of the module.

        Args:
            h (torch.Tensor): Node features of shape :obj:`[N, channels]`.
            x (torch.Tensor): Node coordinates of shape :obj:`[N, D]`.
            edge_index (torch.Tensor): Edge indices of shape :obj:`[2, E]`.
            edge_attr (torch.Tensor, optional): Edge features of shape
                :obj:`[E, edge_dim]`. Required iff :obj:`edge_dim > 0`.

        Returns:
            (torch.Tensor, torch.Tensor): The updated node features
            :obj:`[N, channels]` and coordinates :obj:`[N, D]`.
        """
        check_edge_attr(edge_attr, self.edge_dim)

        # Messages and coordinate messages are aggregated in one pass:
        # out[:, :H] = sum_j m_ij, out[:, H:] = sum_j coordinate messages.
        h_tgt, h_src = split_first_linear(self.phi_e[0], h, self.channels)
        out = self.propagate(edge_index, h_tgt=h_tgt, h_src=h_src, x=x,
                             edge_attr=edge_attr)
        m_i, delta_x = out.split([self.hidden_channels, x.size(-1)], dim=-1)

        h_out = h
        if self.phi_h is not None:
            h_out = h + self.phi_h(torch.cat([h, m_i], dim=-1))
            if self.layer_norm is not None:
                h_out = self.layer_norm(h_out)

        x_out = x
        if self.phi_x is not None:
            x_out = x + delta_x / self.coords_agg_norm

        return h_out, x_out

    def message(
        self,
        h_tgt_i: Tensor,
        h_src_j: Tensor,
        x_i: Tensor,
        x_j: Tensor,
        edge_attr: Optional[Tensor],
    ) -> Tensor:
        dist_sq, rel_x = relative_coordinates(x_i, x_j)

        edge_feats = dist_sq if edge_attr is None else torch.cat(
            [dist_sq, edge_attr], dim=-1)
        pre = h_tgt_i + h_src_j + edge_linear(self.phi_e[0], edge_feats,
                                               2 * self.channels)
        m_ij = self.phi_e[1:](pre)

        if self.phi_x is not None:
            x_msg = rel_x * self.phi_x(m_ij)
        else:
            x_msg = torch.zeros_like(rel_x)

        return torch.cat([m_ij, x_msg], dim=-1)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.channels}, "
                f"edge_dim={self.edge_dim}, "
                f"hidden_channels={self.hidden_channels}, "
                f"update_coords={self.update_coords})")

