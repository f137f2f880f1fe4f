r"""Batched graph inputs for the model, built vectorised from :class:`ProblemGraphs` tensors.

All graphs of one batch share a DOF, so one complete edge set is offset per graph (no Python
loop per graph). Edge attributes ``a_ij`` (edge ``j -> i``):

* partial graph :math:`\tilde G`: ``[d_ij · known_ij, known_ij]`` and, for EGAT, the direction
  :math:`x_j - x_i` only when both end points are anchors (known in :math:`\tilde G`);
* full graph :math:`G`: ``[d_ij, known_ij]`` and, for EGAT, :math:`x_j - x_i` on every edge.

The partial inputs are functions of the robot (home positions, known mask) and the goal only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ggik_core.data.graph import ProblemGraphs, anchor_positions, layout, node_features, num_nodes, partial_distances


@dataclass
class GraphBatch:
    dof: int
    num_graphs: int
    edge_index: Tensor  # (2, B*E)
    h: Tensor  # (B*N, F) node features
    x_partial: Tensor  # (B*N, 3): anchors placed, others zero
    edge_partial: Tensor  # (B*E, 2 [+3])
    anchor: Tensor  # (B*N,) bool
    x: Tensor | None = None  # (B*N, 3) true positions
    edge_full: Tensor | None = None  # (B*E, 2 [+3])

    @property
    def nodes_per_graph(self) -> int:
        return num_nodes(self.dof)

    def to(self, device: torch.device | str) -> "GraphBatch":
        kw = {k: (v.to(device) if isinstance(v, Tensor) else v) for k, v in self.__dict__.items()}
        return GraphBatch(**kw)


def batched_edge_index(dof: int, num_graphs: int, device: torch.device | str = "cpu") -> Tensor:
    lay = layout(dof)
    N = num_nodes(dof)
    ei = lay.edge_index.to(device)
    offsets = (torch.arange(num_graphs, device=device) * N).repeat_interleave(ei.shape[1])
    return ei.repeat(1, num_graphs) + offsets


def _edge_values(m: Tensor, dof: int) -> Tensor:
    """Gather ``(B, N, N, ...)`` per-node-pair values at the edges: ``(B*E, ...)`` (row j, col i)."""
    ei = layout(dof).edge_index.to(m.device)
    return m[:, ei[0], ei[1]].reshape(-1, *m.shape[3:])


def make_batch(g: ProblemGraphs, directions: bool, with_answer: bool = True, dtype: torch.dtype = torch.float32, home_init: bool = False) -> GraphBatch:
    """Model inputs for every graph of ``g`` (one DOF).

    ``home_init``: start the unknown nodes of the partial graph at their home-configuration
    positions (a function of the robot only) instead of at the origin.
    """
    dof = g.dof
    B = g.goal.shape[0]
    N = num_nodes(dof)
    goal = g.goal.to(dtype)
    home = g.home.to(dtype)
    xa = anchor_positions(goal, dof)  # (B, N, 3)
    anchor = layout(dof).anchor.to(goal.device)
    d_part = partial_distances(home, g.known, goal)
    known_e = _edge_values(g.known, dof).to(dtype)
    edge_partial = [_edge_values(d_part, dof)[:, None], known_e[:, None]]
    if directions:
        both = (anchor[:, None] & anchor[None, :]).expand(B, N, N)
        dvec = xa[:, :, None, :] - xa[:, None, :, :]  # [b, j, i] = x_j - x_i
        dvec = torch.where(both[..., None], dvec, torch.zeros_like(dvec))
        edge_partial.append(_edge_values(dvec, dof))
    batch = GraphBatch(
        dof=dof,
        num_graphs=B,
        edge_index=batched_edge_index(dof, B, goal.device),
        h=node_features(goal, dof).reshape(B * N, -1),
        x_partial=(torch.where(anchor[None, :, None], xa, home) if home_init else xa).reshape(B * N, 3),
        edge_partial=torch.cat(edge_partial, -1),
        anchor=anchor.repeat(B),
    )
    if with_answer:
        pos = g.pos.to(dtype)
        d_full = torch.cdist(pos, pos)
        edge_full = [_edge_values(d_full, dof)[:, None], known_e[:, None]]
        if directions:
            edge_full.append(_edge_values(pos[:, :, None, :] - pos[:, None, :, :], dof))
        batch.x = pos.reshape(B * N, 3)
        batch.edge_full = torch.cat(edge_full, -1)
    return batch


def repeat_batch_partial(b: GraphBatch, k: int) -> GraphBatch:
    """The partial inputs of ``b`` repeated ``k`` times (graph-major: graph g, copy c -> g*k + c)."""
    N = b.nodes_per_graph
    E = b.edge_index.shape[1] // b.num_graphs

    def rep(t: Tensor, per: int) -> Tensor:
        return t.reshape(b.num_graphs, 1, per, *t.shape[1:]).expand(b.num_graphs, k, per, *t.shape[1:]).reshape(b.num_graphs * k * per, *t.shape[1:])

    return GraphBatch(
        dof=b.dof,
        num_graphs=b.num_graphs * k,
        edge_index=batched_edge_index(b.dof, b.num_graphs * k, b.h.device),
        h=rep(b.h, N),
        x_partial=rep(b.x_partial, N),
        edge_partial=rep(b.edge_partial, E),
        anchor=rep(b.anchor, N),
    )
