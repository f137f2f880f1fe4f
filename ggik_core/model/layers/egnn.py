"""E(n)-equivariant graph convolution (Satorras et al., 2021)."""

from __future__ import annotations

from typing import Any, Optional, Tuple

import torch
from torch import Tensor, nn

from ggik_core.model.fused.edges import ALPHA_WEIGHTED
from ggik_core.model.layers.base import (
    ActType,
    EquivariantConv,
    check_edge_attr,
    pair_incidence,
    relative_coordinates,
)
from ggik_core.model.layers.registry import register_layer


@register_layer("egnn", edge_features=("distance", "known"), fused=ALPHA_WEIGHTED)
class EGNNLayer(EquivariantConv):
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
        coord_mlp (bool, optional): If set to :obj:`False`, :math:`\phi_x` is
            a single linear map instead of a two-layer MLP. (default: :obj:`True`)
        symmetric (bool, optional): If set to :obj:`True`, :math:`\phi_e`
            shares its weights between :math:`\mathbf{h}_i` and
            :math:`\mathbf{h}_j`; with symmetric edge features the messages are
            symmetric and :meth:`forward_dense` computes each pair once (half
            the per-edge work). (default: :obj:`False`)
        edge_mlp (bool, optional): If set to :obj:`False`, :math:`\phi_e` is
            one linear map and its non-linearity instead of a two-layer MLP;
            its linear map is applied per node, so no per-edge matrix product
            is left in :math:`\phi_e`. (default: :obj:`True`)

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
        coord_mlp: bool = True,
        symmetric: bool = False,
        edge_mlp: bool = True,
    ) -> None:
        super().__init__(channels, edge_dim, hidden_channels, None, coords_agg_norm,
                         update_coords, update_features, act, norm, coord_mlp, symmetric, edge_mlp)

    @classmethod
    def config_options(cls, cfg: Any) -> dict:
        return {"symmetric": cfg.symmetric}

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
        # One pass aggregates both: out[:, :H] = sum_j m_ij, out[:, H:] = sum_j coordinate messages.
        h_tgt, h_src = self.node_parts(h)
        out = self.propagate(edge_index, h_tgt=h_tgt, h_src=h_src, x=x, edge_attr=edge_attr)
        return self.node_update(h, x, *self.split_aggregate(out))

    def message(self, h_tgt_i: Tensor, h_src_j: Tensor, x_i: Tensor, x_j: Tensor,
                edge_attr: Optional[Tensor]) -> Tensor:
        dist_sq, rel_x = relative_coordinates(x_i, x_j)
        m_ij = self.edge_message(h_tgt_i, h_src_j, dist_sq, edge_attr)
        return torch.cat([m_ij, self.coord_message(rel_x, m_ij)], dim=-1)

    def forward_dense(self, h: Tensor, x: Tensor, e: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
        if self.fused is not None and h.device.type == "cpu":
            return self.fused(h, x, e)
        if self.symmetric:
            return self._forward_pairs(h, x, e)
        m, rel_x = self.dense_edge_message(h, x, e)
        # sum over sources j != i: the full sum minus the diagonal (its coordinate message is 0)
        m_i = m.sum(dim=1) - m.diagonal(dim1=1, dim2=2).transpose(1, 2)
        delta_x = self.coord_message(rel_x, m).sum(dim=1)
        return self.node_update(h, x, m_i, delta_x)

    def _forward_pairs(self, h: Tensor, x: Tensor, e: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
        r"""Symmetric messages computed once per unordered pair :math:`(a, b)`:
        :math:`\mathbf{m}_{ab} = \mathbf{m}_{ba}`, and the coordinate message
        of :math:`b` is minus that of :math:`a`. Requires symmetric :obj:`e`
        (distances and known flags are)."""
        pairs, inc, signed = pair_incidence(h.size(1), h.device, h.dtype)
        a, b = pairs
        h_tgt, h_src = self.node_parts(h)
        dist_sq, rel_x = relative_coordinates(x[:, a], x[:, b])  # from x_a - x_b, (B, P, ·)
        m = self.edge_message(h_tgt[:, a], h_src[:, b], dist_sq, None if e is None else e[:, a, b])  # (B, P, M)
        m_i = torch.einsum("np,bpm->bnm", inc.to(m.dtype), m)
        x_msg = self.coord_message(rel_x, m)
        with torch.autocast(x.device.type, enabled=False):  # coordinates in full precision
            delta_x = torch.einsum("np,bpd->bnd", signed.to(x_msg.dtype), x_msg)
        return self.node_update(h, x, m_i, delta_x)
