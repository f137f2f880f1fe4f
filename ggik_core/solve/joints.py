r"""Joint angles from predicted node positions (spec §4), batched over samples and robots.

Walk from the base to the tip. With joint ``i``'s axis frame :math:`A_i` already placed, the
points of pair ``i`` (on axis ``i+1``) sit at :math:`u_k` in :math:`A_i` when :math:`q_i = 0`
and are predicted at :math:`v_k = A_i^{-1} \hat x_k`. The rotation about z that best aligns
them, in least squares, is

.. math::
    q_i = \operatorname{atan2}\Big(\sum_k (u_k^\perp \times v_k^\perp)_z,\ \sum_k u_k^\perp \cdot v_k^\perp\Big)

with :math:`\perp` the components perpendicular to the axis. The last joint aligns the EE frame
(origin and unit axes) with the goal the same way.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ggik_core.robots.transforms import broadcast_shape, invert, rot_z


def _best_angle(u: Tensor, v: Tensor) -> Tensor:
    """Angle about z aligning points ``u`` to ``v`` (``(..., P, 3)``) in least squares."""
    cross_z = u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]
    dot_xy = u[..., 0] * v[..., 0] + u[..., 1] * v[..., 1]
    return torch.atan2(cross_z.sum(-1), dot_xy.sum(-1))


def _apply(T: Tensor, p: Tensor) -> Tensor:
    """Transform points ``p (..., P, 3)`` by ``T (..., 4, 4)``."""
    return p @ T[..., :3, :3].transpose(-1, -2) + T[..., None, :3, 3]


def _frame_points(T: Tensor) -> Tensor:
    """Origin and origin + unit axes of frames ``(..., 4, 4)`` -> ``(..., 4, 3)``."""
    o = T[..., :3, 3]
    return torch.stack([o, o + T[..., :3, 0], o + T[..., :3, 1], o + T[..., :3, 2]], -2)


def recover_joints(chain_c: Tensor, x: Tensor, goal_c: Tensor) -> Tensor:
    """Joint angles ``(..., n)`` in [-pi, pi] (the range of atan2) from node positions.

    Args:
        chain_c: canonical chain ``(..., n+1, 4, 4)`` (:func:`ggik_core.graph.canonical_chain`).
        x: predicted node positions ``(..., N, 3)`` in the canonical frame.
        goal_c: canonical goal ``(..., 4, 4)``.
    """
    n = chain_c.shape[-3] - 1
    batch = broadcast_shape(chain_c.shape[:-3], x.shape[:-2], goal_c.shape[:-2])
    chain_c = chain_c.expand(*batch, n + 1, 4, 4)
    x = x.to(chain_c.dtype).expand(*batch, *x.shape[-2:])
    goal_c = goal_c.to(chain_c.dtype).expand(*batch, 4, 4)
    A = chain_c[..., 0, :, :]
    qs = []
    for i in range(n):  # joint i + 1
        L = chain_c[..., i + 1, :, :]
        if i < n - 1:
            u = torch.stack([L[..., :3, 3], L[..., :3, 3] + L[..., :3, 2]], -2)
            node = 2 * (i + 1) + 2  # p_{i+1}
            v = _apply(invert(A), x[..., node : node + 2, :])
        else:
            u = _frame_points(L)
            v = _frame_points(invert(A) @ goal_c)
        q = _best_angle(u, v)
        qs.append(q)
        A = A @ rot_z(q) @ L
    return torch.stack(qs, -1)


def fit_to_limits(q: Tensor, lower: Tensor, upper: Tensor) -> Tensor:
    """Shift each angle by a multiple of 2π into ``[lower, upper]`` where one fits (else keep it)."""
    out = q
    for k in (-2, -1, 1, 2):
        cand = q + 2 * math.pi * k
        ok_now = (out >= lower) & (out <= upper)
        ok_cand = (cand >= lower) & (cand <= upper)
        out = torch.where(~ok_now & ok_cand, cand, out)
    return out

