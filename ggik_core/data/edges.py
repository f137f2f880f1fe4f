r"""Edge features by name: what the message-passing layers read on each edge :math:`j \to i`.

Each feature of :data:`EDGE_FEATURES` has a width and one function that computes it, on the
partial graph :math:`\tilde G` (from the robot and the goal only) and on the full graph :math:`G`
(from node positions), as a ``(B, N, N, width)`` tensor indexed ``[b, j, i]`` (source ``j``,
target ``i``):

* ``distance``: :math:`d_{ij}` on known edges of :math:`\tilde G` (0 elsewhere), every
  :math:`\lVert x_j - x_i \rVert` on :math:`G`;
* ``known``: 1 where the distance is known in :math:`\tilde G` (the same flag on :math:`G`);
* ``direction``: :math:`x_j - x_i`, on :math:`\tilde G` only between two anchors (whose positions
  the goal fixes), on :math:`G` on every edge (GGIK+).

A layer lists the names it reads (:func:`~ggik_core.model.layers.registry.register_layer`);
:class:`EdgeSpec` puts their columns side by side in that order. A new feature is one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor


@dataclass(frozen=True)
class EdgeInputs:
    """What every edge feature is computed from, for ``B`` graphs of ``N`` nodes."""

    known: Tensor  # (B, N, N) bool: distance known in the partial graph
    d_known: Tensor  # (B, N, N): the known distances, 0 elsewhere (the features' dtype)
    pos: Tensor  # (B, N, 3): anchors placed, others zero (partial) or every node (full)
    anchor: Tensor  # (N,) bool
    full: bool  # the full graph G rather than the partial graph


@dataclass(frozen=True)
class EdgeFeature:
    """One named edge feature: its width and how it is computed (:class:`EdgeInputs` ->
    ``(B, N, N, width)``)."""

    width: int
    compute: Callable[[EdgeInputs], Tensor]


def _distance(g: EdgeInputs) -> Tensor:
    return (torch.cdist(g.pos, g.pos) if g.full else g.d_known)[..., None]


def _known(g: EdgeInputs) -> Tensor:
    return g.known.to(g.d_known.dtype)[..., None]


def _direction(g: EdgeInputs) -> Tensor:
    dvec = g.pos[:, :, None, :] - g.pos[:, None, :, :]  # [b, j, i] = x_j - x_i
    if g.full:
        return dvec
    both = (g.anchor[:, None] & g.anchor[None, :]).expand(g.known.shape)
    return torch.where(both[..., None], dvec, torch.zeros_like(dvec))


#: the edge features a layer may read, by name
EDGE_FEATURES: dict[str, EdgeFeature] = {
    "distance": EdgeFeature(1, _distance),
    "known": EdgeFeature(1, _known),
    "direction": EdgeFeature(3, _direction),
}


@dataclass(frozen=True)
class EdgeSpec:
    """The edge features of a layer type, by name, in the order of their columns."""

    names: tuple[str, ...]

    def __post_init__(self) -> None:
        unknown = [n for n in self.names if n not in EDGE_FEATURES]
        if unknown:
            raise ValueError(f"unknown edge feature {unknown[0]!r} ({', '.join(EDGE_FEATURES)})")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"edge features listed twice: {self.names}")

    @property
    def width(self) -> int:
        """The number of columns :math:`F` of :math:`\\mathbf{a}_{ij}`."""
        return sum(EDGE_FEATURES[n].width for n in self.names)

    def columns(self, name: str) -> slice:
        """The columns of feature ``name``."""
        start = 0
        for n in self.names:
            w = EDGE_FEATURES[n].width
            if n == name:
                return slice(start, start + w)
            start += w
        raise KeyError(f"edge feature {name!r} is not among {self.names}")

    def build(self, g: EdgeInputs) -> Tensor:
        """The ``(B, N, N, F)`` edge features of ``g``."""
        if not self.names:
            return g.d_known.new_zeros(*g.known.shape, 0)
        return torch.cat([EDGE_FEATURES[n].compute(g) for n in self.names], -1)
