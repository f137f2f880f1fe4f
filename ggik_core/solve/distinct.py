"""Which candidates count: *solved* (inside the limits, within the thresholds) and *distinct*
(not within a tolerance of a better solved one)."""

from __future__ import annotations

import numpy as np

from ggik_core.solve.multistart import first_distinct


def solved_and_distinct(q: np.ndarray, pos_mm: np.ndarray, rot_deg: np.ndarray, within: np.ndarray, solved_mm: float,
                        solved_deg: float, distinct_tol: float) -> tuple[np.ndarray, np.ndarray]:
    """``(G, k)`` masks: candidates inside the limits and within ``solved_mm`` / ``solved_deg``,
    and the solved ones that count as distinct (:func:`distinct_mask`, best first)."""
    solved = within & (pos_mm <= solved_mm) & (rot_deg <= solved_deg)
    order = np.argsort(pos_mm + rot_deg, axis=1, kind="stable")
    return solved, distinct_mask(q, solved, order, distinct_tol)


def distinct_mask(q: np.ndarray, valid: np.ndarray, order: np.ndarray, tol: float, max_elements: int = 1 << 24) -> np.ndarray:
    """``(G, k)``: valid candidates not within ``tol`` (max joint difference on the circle) of a
    better counted one, candidates taken in ``order`` (best first)
    (:func:`~ggik_core.solve.multistart.first_distinct`, in chunks under ``max_elements``)."""
    qs = np.take_along_axis(q, order[..., None], 1)
    vs = np.take_along_axis(valid, order, 1)
    counted = first_distinct(qs, vs, tol, max_elements)
    out = np.zeros_like(counted)
    np.put_along_axis(out, order, counted, 1)
    return out
