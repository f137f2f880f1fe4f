r"""Broad phase of the collision checks: axis-aligned boxes of the placed parts, for every
configuration at once (numpy), so that the exact test (coal) runs only on pairs whose boxes meet.

A part's box in its own frame has centre :math:`c` and half-extents :math:`e` (coal's local AABB of
its geometry). Placed by :math:`(R, t)`, its world box has

.. math::
    c_w = R c + t, \qquad e_w = |R|\, e

(:math:`|R|` element-wise), which contains the placed geometry. Two boxes are apart when
:math:`|c_{w,a} - c_{w,b}| > e_{w,a} + e_{w,b}` along some axis; then the parts cannot touch and
the exact test is skipped. The test is conservative: it never skips a pair that collides.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

#: metres added to every half-extent: rounding never hides a contact
SLACK = 1e-9


def local_boxes(objects: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Centres and half-extents ``(P, 3)`` of coal collision objects' geometries, in their own frames."""
    centre, half = np.zeros((len(objects), 3)), np.zeros((len(objects), 3))
    for i, obj in enumerate(objects):
        geometry = obj.collisionGeometry()
        geometry.computeLocalAABB()
        box = geometry.aabb_local
        lo, hi = np.asarray(box.min_, dtype=np.float64), np.asarray(box.max_, dtype=np.float64)
        centre[i], half[i] = (lo + hi) / 2, (hi - lo) / 2
    return centre, half


def world_boxes(poses: np.ndarray, centre: np.ndarray, half: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World centres and half-extents ``(n, P, 3)`` of parts placed at ``poses (n, P, 4, 4)``."""
    R, t = poses[..., :3, :3], poses[..., :3, 3]
    return np.einsum("npij,pj->npi", R, centre) + t, np.einsum("npij,pj->npi", np.abs(R), half) + SLACK


def fixed_boxes(objects: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper corners ``(O, 3)`` of placed coal objects (obstacles; a half-space's box is
    unbounded on its open sides)."""
    lo, hi = np.zeros((len(objects), 3)), np.zeros((len(objects), 3))
    for i, obj in enumerate(objects):
        obj.computeAABB()
        box = obj.getAABB()
        lo[i], hi[i] = box.min_, box.max_
    return lo, hi


def boxes_meet(c: np.ndarray, e: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(n, len(a))`` bool: the world boxes of parts ``a[p]`` and ``b[p]`` overlap."""
    return (np.abs(c[:, a] - c[:, b]) <= e[:, a] + e[:, b]).all(-1)


def boxes_meet_fixed(c: np.ndarray, e: np.ndarray, a: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``(n, len(a))`` bool: the world box of part ``a[p]`` overlaps the fixed box ``lo[p], hi[p]``."""
    return ((c[:, a] + e[:, a] >= lo) & (c[:, a] - e[:, a] <= hi)).all(-1)
