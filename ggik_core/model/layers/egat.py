"""Attention-weighted E(n)-equivariant graph convolution (GGIK+ variant)."""

from __future__ import annotations

from typing import Any, Optional, Tuple, Union

import torch
from torch import Tensor, nn
from torch_geometric.nn.inits import reset
from torch_geometric.utils import softmax

from ggik_core.model.fused.edges import ALPHA_WEIGHTED
from ggik_core.model.layers.base import (
    ActType,
    EquivariantConv,
    check_edge_attr,
    edge_linear,
    make_activation,
    relative_coordinates,
    split_first_linear,
)
from ggik_core.model.layers.registry import register_layer


@register_layer("egat", edge_features=("distance", "known", "direction"), fused=ALPHA_WEIGHTED)
class EGATLayer(EquivariantConv):
    r"""The attention-weighted E(n)-equivariant graph convolutional layer used
    by GGIK+, extending the layer from the `"E(n) Equivariant Graph Neural
    Networks" <https://arxiv.org/abs/2102.09844>`_ paper with
    per-edge attention and edge-aware coordinate updates

    .. math::
        \mathbf{m}_{ij} &= \phi_e\left(\mathbf{h}_i, \mathbf{h}_j,
        \|\mathbf{x}_i - \mathbf{x}_j\|^2, \mathbf{a}_{ij}\right)

        \alpha_{ij} &= \frac{\exp\left(\phi_{att}(\mathbf{h}_i, \mathbf{h}_j,
        \mathbf{a}_{ij})\right)}{\sum_{k \in \mathcal{N}(i)}
        \exp\left(\phi_{att}(\mathbf{h}_i, \mathbf{h}_k,
        \mathbf{a}_{ik})\right)}

        \mathbf{x}_i^{\prime} &= \mathbf{x}_i + \frac{1}{C}
        \sum_{j \in \mathcal{N}(i)} \alpha_{ij}
        \frac{\mathbf{x}_i - \mathbf{x}_j}{\|\mathbf{x}_i - \mathbf{x}_j\| + 1}
        \, \phi_x(\mathbf{m}_{ij}, \mathbf{a}_{ij})

        \mathbf{h}_i^{\prime} &= \mathrm{LayerNorm}\left(\mathbf{h}_i +
        \phi_h\left(\mathbf{h}_i, \sum_{j \in \mathcal{N}(i)}
        \alpha_{ij} \mathbf{m}_{ij}\right)\right)

    where :math:`\phi_e`, :math:`\phi_{att}`, :math:`\phi_x` and
    :math:`\phi_h` are two-layer MLPs, :math:`C` is :obj:`coords_agg_norm`
    and the (invariant) :obj:`LayerNorm` is only applied if :obj:`norm=True`.
    The attention coefficients :math:`\alpha_{ij}` are normalised over the
    incoming edges of each target node :math:`i` (:obj:`edge_index[1]`) and
    scale both the feature and the coordinate messages.

    The edge features :math:`\mathbf{a}_{ij}` are used as given. In GGIK+ the
    caller stores the direction :math:`\mathbf{x}_j - \mathbf{x}_i` in them,
    which makes :math:`\phi_x` and :math:`\phi_{att}` direction-aware but
    breaks rotation equivariance with respect to :obj:`x` alone; if
    :obj:`edge_attr` only holds E(n)-invariant quantities, the layer is
    E(n)-equivariant like :class:`~ggik_core.model.EGNNLayer`.

    As in :class:`~ggik_core.model.EGNNLayer`, the relative position is divided
    by :math:`\|\mathbf{x}_i - \mathbf{x}_j\| + 1` (bounded, well defined for
    coincident nodes, equivariant) and the last layer of :math:`\phi_x` is
    bias-free with a tiny initial gain (:math:`10^{-3}`). The last layer of
    :math:`\phi_{att}` is bias-free as well, since a shared bias cancels in
    the softmax.

    Args:
        channels (int): Size of the node features :math:`\mathbf{h}`.
        edge_dim (int): Size of the edge features :math:`\mathbf{a}_{ij}`.
        hidden_channels (int, optional): Hidden size of the MLPs. Defaults to
            :obj:`channels`. (default: :obj:`None`)
        message_channels (int, optional): Size of the feature messages
            :math:`\mathbf{m}_{ij}`. (default: :obj:`64`)
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
        coord_mlp (bool, optional): If set to :obj:`False`, :math:`\phi_x` is
            a single linear map instead of a two-layer MLP. (default: :obj:`True`)
        edge_mlp (bool, optional): If set to :obj:`False`, :math:`\phi_e` is
            one linear map and its non-linearity instead of a two-layer MLP
            (its output width is then :obj:`message_channels`).
            (default: :obj:`True`)

    Shapes:
        - **input:**
          node features :math:`(|\mathcal{V}|, F)`,
          node coordinates :math:`(|\mathcal{V}|, D)`,
          edge indices :math:`(2, |\mathcal{E}|)`,
          edge features :math:`(|\mathcal{E}|, F_e)`
        - **output:** node features :math:`(|\mathcal{V}|, F)`,
          node coordinates :math:`(|\mathcal{V}|, D)` and, if
          :obj:`return_attention=True`, attention coefficients
          :math:`(|\mathcal{E}|)`
    """

    def __init__(
        self,
        channels: int,
        edge_dim: int,
        hidden_channels: Optional[int] = None,
        message_channels: int = 64,
        coords_agg_norm: float = 1.0,
        update_coords: bool = True,
        update_features: bool = True,
        act: ActType = nn.SiLU,
        norm: bool = True,
        coord_mlp: bool = True,
        edge_mlp: bool = True,
    ) -> None:
        super().__init__(channels, edge_dim, hidden_channels, message_channels, coords_agg_norm,
                         update_coords, update_features, act, norm, coord_mlp, edge_mlp=edge_mlp)
        self._alpha: Optional[Tensor] = None

    @classmethod
    def config_options(cls, cfg: Any) -> dict:
        if cfg.symmetric:
            raise ValueError("symmetric messages are for egnn layers (EGAT's direction features are antisymmetric)")
        return {"message_channels": cfg.message}

    def phi_x_in(self) -> int:
        r""":math:`\phi_x` sees :math:`[\mathbf{m}_{ij}, \mathbf{a}_{ij}]`."""
        return self.message_channels + self.edge_dim

    def build_edge_mlps(self, act: ActType) -> None:
        r""":math:`\phi_e` and the attention MLP :math:`\phi_{att}` on
        :math:`[\mathbf{h}_i, \mathbf{h}_j, \mathbf{a}_{ij}]`."""
        super().build_edge_mlps(act)
        self.phi_att = nn.Sequential(
            nn.Linear(2 * self.channels + self.edge_dim, self.hidden_channels),
            make_activation(act),
            nn.Linear(self.hidden_channels, 1, bias=False),
        )

    def reset_edge_mlps(self) -> None:
        super().reset_edge_mlps()
        reset(self.phi_att)

    def attention_score(self, a_tgt_i: Tensor, a_src_j: Tensor, edge_attr: Optional[Tensor]) -> Tensor:
        r"""The unnormalised score :math:`\phi_{att}(\mathbf{h}_i, \mathbf{h}_j,
        \mathbf{a}_{ij})` from the per-node parts of its first linear map; the
        softmax over each target's incoming edges is the caller's."""
        pre_a = a_tgt_i + a_src_j
        if edge_attr is not None:
            pre_a = pre_a + edge_linear(self.phi_att[0], edge_attr, 2 * self.channels)
        return self.phi_att[1:](pre_a).squeeze(-1)

    def coord_input(self, m_ij: Tensor, edge_attr: Optional[Tensor]) -> Tensor:
        r""":math:`\phi_x`'s input :math:`[\mathbf{m}_{ij}, \mathbf{a}_{ij}]`."""
        return m_ij if edge_attr is None else torch.cat([m_ij, edge_attr], dim=-1)

    def forward(
        self,
        h: Tensor,
        x: Tensor,
        edge_index: Tensor,
        edge_attr: Optional[Tensor],
        return_attention: bool = False,
    ) -> Union[Tuple[Tensor, Tensor], Tuple[Tensor, Tensor, Tensor]]:
        r"""Runs the forward pass of the module.

        Args:
            h (torch.Tensor): Node features of shape :obj:`[N, channels]`.
            x (torch.Tensor): Node coordinates of shape :obj:`[N, D]`.
            edge_index (torch.Tensor): Edge indices of shape :obj:`[2, E]`.
            edge_attr (torch.Tensor, optional): Edge features of shape
                :obj:`[E, edge_dim]` (may be :obj:`None` iff
                :obj:`edge_dim == 0`).
            return_attention (bool, optional): If set to :obj:`True`, also
                returns the attention coefficients :math:`\alpha_{ij}` of
                shape :obj:`[E]`, ordered like :obj:`edge_index`.
                (default: :obj:`False`)

        Returns:
            (torch.Tensor, torch.Tensor) or
            (torch.Tensor, torch.Tensor, torch.Tensor): The updated node
            features :obj:`[N, channels]`, coordinates :obj:`[N, D]` and,
            optionally, the attention coefficients :obj:`[E]`.
        """
        check_edge_attr(edge_attr, self.edge_dim)
        # One pass aggregates both, attention-weighted: out[:, :M] = sum_j alpha_ij m_ij,
        # out[:, M:] = sum_j alpha_ij (coordinate message)_ij.
        e_tgt, e_src = split_first_linear(self.phi_e[0], h, self.channels)
        a_tgt, a_src = split_first_linear(self.phi_att[0], h, self.channels)
        out = self.propagate(edge_index, e_tgt=e_tgt, e_src=e_src, a_tgt=a_tgt, a_src=a_src,
                             x=x, edge_attr=edge_attr)
        alpha, self._alpha = self._alpha, None
        assert alpha is not None
        h_out, x_out = self.node_update(h, x, *self.split_aggregate(out))
        if return_attention:
            return h_out, x_out, alpha
        return h_out, x_out

    def message(self, e_tgt_i: Tensor, e_src_j: Tensor, a_tgt_i: Tensor, a_src_j: Tensor,
                x_i: Tensor, x_j: Tensor, edge_attr: Optional[Tensor], index: Tensor,
                ptr: Optional[Tensor], size_i: Optional[int]) -> Tensor:
        dist_sq, rel_x = relative_coordinates(x_i, x_j)
        m_ij = self.edge_message(e_tgt_i, e_src_j, dist_sq, edge_attr)

        alpha = softmax(self.attention_score(a_tgt_i, a_src_j, edge_attr), index, ptr, size_i)
        self._alpha = alpha
        x_msg = self.coord_message(rel_x, self.coord_input(m_ij, edge_attr))
        return alpha.unsqueeze(-1) * torch.cat([m_ij, x_msg], dim=-1)

    def forward_dense(self, h: Tensor, x: Tensor, e: Optional[Tensor],
                      return_attention: bool = False) -> Union[Tuple[Tensor, Tensor], Tuple[Tensor, Tensor, Tensor]]:
        if self.fused is not None and h.device.type == "cpu" and not return_attention:
            return self.fused(h, x, e)
        m, rel_x = self.dense_edge_message(h, x, e)
        a_tgt, a_src = split_first_linear(self.phi_att[0], h, self.channels)
        score = self.attention_score(a_tgt[:, None, :, :], a_src[:, :, None, :], e)  # [b, j, i]
        self_loop = torch.eye(h.size(1), dtype=torch.bool, device=h.device)
        alpha = torch.softmax(score.masked_fill(self_loop, float("-inf")), dim=1)  # over sources j
        x_msg = self.coord_message(rel_x, self.coord_input(m, e))
        out = (alpha.unsqueeze(-1) * torch.cat([m, x_msg], dim=-1)).sum(dim=1)
        h_out, x_out = self.node_update(h, x, *self.split_aggregate(out))
        if return_attention:
            return h_out, x_out, alpha
        return h_out, x_out
