r"""Batched graph inputs for the model, built vectorised from :class:`ProblemGraphs` tensors.

All graphs of one batch share a DOF, so one complete edge set is offset per graph (no Python
loop per graph). The edge attributes ``a_ij`` (edge ``j -> i``) are the named features of the
model's :class:`~ggik_core.data.edges.EdgeSpec` (:mod:`ggik_core.data.edges`), on the partial
graph :math:`\tilde G` and, with the answer, on the full graph :math:`G`.

The partial inputs are functions of the robot (home positions, known mask) and the goal only.

Edge attributes are stored dense, ``(B, N, N, F)`` indexed ``[b, j, i]`` (source ``j``, target
``i``; the diagonal is unused), which is what the dense layer path reads; the PyG path reads the
same values gathered at ``edge_index`` (:attr:`GraphBatch.edge_partial`). ``edge_index`` is cached
per (DOF, number of graphs, device).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

import torch
from torch import Tensor

from ggik_core.data.edges import EdgeInputs, EdgeSpec
from ggik_core.data.graph import ProblemGraphs, anchor_positions, layout, node_features, num_nodes, partial_distances


class BatchConfig(Protocol):
    """What :func:`make_batch` reads of a model config
    (:class:`~ggik_core.model.config.ModelConfig` has both)."""

    @property
    def edges(self) -> EdgeSpec: ...

    @property
    def home_init(self) -> bool: ...


@dataclass(frozen=True)
class BatchOptions:
    """A :class:`BatchConfig` of its own, for callers without a model config."""

    edges: EdgeSpec
    home_init: bool = False


@dataclass
class GraphBatch:
    dof: int
    num_graphs: int
    h: Tensor  # (B*N, F) node features
    x_partial: Tensor  # (B*N, 3): anchors placed, others zero
    e_partial: Tensor  # (B, N, N, F) partial-graph edge attributes (the features of ``edges``), [b, j, i]
    anchor: Tensor  # (B*N,) bool
    known: Tensor  # (B, N, N) bool: distance known in the partial graph
    d_known: Tensor  # (B, N, N): the known distances, 0 elsewhere
    edges: EdgeSpec  # the named edge features of e_partial and e_full
    x: Tensor | None = None  # (B*N, 3) true positions
    e_full: Tensor | None = None  # (B, N, N, F) full-graph edge attributes, [b, j, i]

    @property
    def nodes_per_graph(self) -> int:
        return num_nodes(self.dof)

    @property
    def edge_index(self) -> Tensor:
        """``(2, B*E)``: the complete directed graph of each problem, offset per graph (cached)."""
        return batched_edge_index(self.dof, self.num_graphs, self.h.device)

    @property
    def edge_partial(self) -> Tensor:
        """``(B*E, F)``: the partial-graph edge attributes in ``edge_index`` order."""
        return _edge_values(self.e_partial, self.dof)

    @property
    def edge_full(self) -> Tensor | None:
        """``(B*E, F)``: the full-graph edge attributes in ``edge_index`` order."""
        return None if self.e_full is None else _edge_values(self.e_full, self.dof)

    def to(self, device: torch.device | str) -> "GraphBatch":
        kw = {k: (v.to(device) if isinstance(v, Tensor) else v) for k, v in self.__dict__.items()}
        return GraphBatch(**kw)


@lru_cache(maxsize=64)
def batched_edge_index(dof: int, num_graphs: int, device: torch.device | str = "cpu") -> Tensor:
    N = num_nodes(dof)
    ei = layout(dof, device).edge_index
    offsets = (torch.arange(num_graphs, device=device) * N).repeat_interleave(ei.shape[1])
    return ei.repeat(1, num_graphs) + offsets


def _edge_values(m: Tensor, dof: int) -> Tensor:
    """Gather ``(B, N, N, ...)`` per-node-pair values at the edges: ``(B*E, ...)`` (row j, col i)."""
    ei = layout(dof, m.device).edge_index
    return m[:, ei[0], ei[1]].reshape(-1, *m.shape[3:])


def make_batch(g: ProblemGraphs, cfg: BatchConfig, with_answer: bool = True, dtype: torch.dtype = torch.float32) -> GraphBatch:
    """Model inputs for every graph of ``g`` (one DOF), with the edge features ``cfg.edges``.

    ``cfg.home_init``: start the unknown nodes of the partial graph at their home-configuration
    positions (a function of the robot only) instead of at the origin.
    """
    dof = g.dof
    B = g.goal.shape[0]
    N = num_nodes(dof)
    goal = g.goal.to(dtype)
    home = g.home.to(dtype)
    xa = anchor_positions(goal, dof)  # (B, N, 3)
    anchor = layout(dof, goal.device).anchor
    d_known = partial_distances(home, g.known, goal)
    e_partial = cfg.edges.build(EdgeInputs(known=g.known, d_known=d_known, pos=xa, anchor=anchor, full=False))
    batch = GraphBatch(
        dof=dof,
        num_graphs=B,
        h=node_features(goal, dof).reshape(B * N, -1),
        x_partial=(torch.where(anchor[None, :, None], xa, home) if cfg.home_init else xa).reshape(B * N, 3),
        e_partial=e_partial,
        anchor=anchor.repeat(B),
        known=g.known,
        d_known=d_known,
        edges=cfg.edges,
    )
    if with_answer:
        batch = with_answer_positions(batch, g.pos.to(dtype))
    return batch


def with_answer_positions(b: GraphBatch, pos: Tensor) -> GraphBatch:
    """``b`` with its full graph taken from node positions ``pos (B, N, 3)``: ``x`` and the
    full-graph edge features of ``b.edges``."""
    B, N = b.num_graphs, b.nodes_per_graph
    pos = pos.reshape(B, N, 3).to(b.e_partial.dtype)
    e_full = b.edges.build(EdgeInputs(known=b.known, d_known=b.d_known, pos=pos, anchor=b.anchor[:N], full=True))
    kw = dict(b.__dict__, x=pos.reshape(B * N, 3), e_full=e_full)
    return GraphBatch(**kw)


def repeat_batch_partial(b: GraphBatch, k: int) -> GraphBatch:
    """The partial inputs of ``b`` repeated ``k`` times (graph-major: graph g, copy c -> g*k + c)."""
    N, B = b.nodes_per_graph, b.num_graphs

    def rep_nodes(t: Tensor) -> Tensor:
        return t.reshape(B, 1, N, *t.shape[1:]).expand(B, k, N, *t.shape[1:]).reshape(B * k * N, *t.shape[1:])

    def rep_graphs(t: Tensor) -> Tensor:
        return t[:, None].expand(B, k, *t.shape[1:]).reshape(B * k, *t.shape[1:])

    return GraphBatch(
        dof=b.dof,
        num_graphs=B * k,
        h=rep_nodes(b.h),
        x_partial=rep_nodes(b.x_partial),
        e_partial=rep_graphs(b.e_partial),
        anchor=rep_nodes(b.anchor),
        known=rep_graphs(b.known),
        d_known=rep_graphs(b.d_known),
        edges=b.edges,
    )
