r"""Ranking a goal's solutions: nearest to a configuration, joint-limit margin, manipulability.

A ranking is written as a short string (:func:`parse_rank`):

* ``near:q1,q2,...,qn`` — closest to the configuration ``q`` (radians, one value per joint) first.
  The distance is the Euclidean norm of the joint differences,
  :math:`d(q, t) = \sqrt{\sum_i \delta_i^2}`, with :math:`\delta_i = \mathrm{wrap}(q_i - t_i) \in
  [-\pi, \pi)` for a continuous joint (it has no limits, so ``q`` and ``q + 2π`` are one
  configuration) and :math:`\delta_i = q_i - t_i` for a limited joint (whose turns are distinct).
* ``margin`` — largest normalised joint-limit margin first:
  :math:`\min_i \min(q_i - l_i, u_i - q_i) / (u_i - l_i) \in [0, 1/2]` over the limited joints
  (continuous joints have no limit; with only those the margin is 1/2).
* ``manipulability`` — largest Yoshikawa measure first, :math:`\sqrt{\det(J J^\top)}` of the
  ``6 x n`` geometric Jacobian ``J`` (linear velocity of the end-effector origin over angular
  velocity, in the base frame; :func:`jacobian`). It is zero at singular configurations.

:func:`rank_order` sorts each goal's valid candidates by a ranking (invalid ones last).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ggik_core.errors import GGIKError
from ggik_core.robots.robot import Robot

Kind = Literal["near", "margin", "manipulability"]
KINDS = ("near", "margin", "manipulability")


@dataclass(frozen=True)
class Ranking:
    """A parsed ranking; ``target`` is the configuration of ``near`` (else None)."""

    kind: Kind
    target: np.ndarray | None = None


def parse_rank(text: str, robot: Robot) -> Ranking:
    """Parse ``near:q1,...,qn`` | ``margin`` | ``manipulability`` (module docstring).

    Raises:
        GGIKError: an unknown ranking, or ``near`` without one finite number per joint.
    """
    kind, sep, rest = text.strip().partition(":")
    kind = kind.strip()
    if kind not in KINDS:
        raise GGIKError(f"--rank {text!r}: unknown ranking {kind!r} (near:Q, margin or manipulability)")
    if kind != "near":
        if sep:
            raise GGIKError(f"--rank {text!r}: {kind} takes no value")
        return Ranking(kind)  # type: ignore[arg-type]
    items = [v for v in rest.replace(",", " ").split()]
    try:
        values = np.array([float(v) for v in items], dtype=np.float64)
    except ValueError:
        raise GGIKError(f"--rank {text!r}: near needs numbers (radians), separated by commas") from None
    if values.size != robot.dof:
        raise GGIKError(f"--rank near: expected {robot.dof} joint values for {robot.name}, got {values.size}")
    if not np.isfinite(values).all():
        raise GGIKError(f"--rank {text!r}: near needs finite numbers")
    return Ranking("near", values)


def joint_distance(q: np.ndarray, target: np.ndarray, continuous: np.ndarray) -> np.ndarray:
    """Distances ``(...,)`` from ``q (..., n)`` to ``target (n,)``; continuous joints wrap."""
    delta = np.asarray(q, dtype=np.float64) - target
    wrapped = np.mod(delta + math.pi, 2 * math.pi) - math.pi
    return np.linalg.norm(np.where(continuous, wrapped, delta), axis=-1)


def limit_margin(q: np.ndarray, lower: np.ndarray, upper: np.ndarray, continuous: np.ndarray) -> np.ndarray:
    """Normalised joint-limit margins ``(...,)`` of ``q (..., n)`` (module docstring)."""
    span = np.where(upper > lower, upper - lower, 1.0)
    m = np.minimum(q - lower, upper - q) / span
    return np.where(continuous, 0.5, m).min(-1)


def chain_frames_np(chain: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Axis frames and the end-effector frame ``(..., n + 1, 4, 4)`` of ``q (..., n)`` for one
    chain ``(n + 1, 4, 4)`` (NumPy form of :func:`ggik_core.robots.kinematics.chain_frames`)."""
    q = np.asarray(q, dtype=np.float64)
    c, s = np.cos(q), np.sin(q)
    T = np.broadcast_to(chain[0], (*q.shape[:-1], 4, 4))
    frames = [T]
    for i in range(q.shape[-1]):
        x, y = T[..., :, 0], T[..., :, 1]
        turned = np.stack([c[..., i, None] * x + s[..., i, None] * y, c[..., i, None] * y - s[..., i, None] * x,
                           T[..., :, 2], T[..., :, 3]], -1)
        T = turned @ chain[i + 1]
        frames.append(T)
    return np.stack(frames, -3)


def jacobian(chain: np.ndarray, q: np.ndarray) -> np.ndarray:
    r"""Geometric Jacobians ``(..., 6, n)``: column ``i`` is :math:`(z_i \times (p_e - p_i),\ z_i)`
    with :math:`z_i, p_i` the axis and origin of joint ``i`` and :math:`p_e` the end-effector origin,
    all in the base frame (rows: linear then angular velocity)."""
    F = chain_frames_np(chain, q)
    z, p, pe = F[..., :-1, :3, 2], F[..., :-1, :3, 3], F[..., -1:, :3, 3]
    lin = np.cross(z, pe - p)
    return np.concatenate([lin, z], -1).swapaxes(-1, -2)


def manipulability(chain: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Yoshikawa's measure :math:`\\sqrt{\\det(J J^\\top)}` ``(...,)`` of ``q (..., n)``."""
    J = jacobian(chain, q)
    det = np.linalg.det(J @ J.swapaxes(-1, -2))
    return np.sqrt(np.maximum(det, 0.0))


def scores(ranking: Ranking, robot: Robot, q: np.ndarray) -> np.ndarray:
    """Scores ``(...,)`` of ``q (..., n)``, larger is better (``near``: minus the distance)."""
    if ranking.kind == "near":
        return -joint_distance(q, ranking.target, robot.continuous_np)
    if ranking.kind == "margin":
        return limit_margin(q, robot.lower_np, robot.upper_np, robot.continuous_np)
    return manipulability(robot.chain_np, q)


def rank_order(ranking: Ranking, robot: Robot, q: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Indices ``(G, k)`` sorting each goal's candidates ``q (G, k, n)`` best first; candidates
    not ``valid (G, k)`` come last, in their order. Ties keep the candidates' order."""
    s = scores(ranking, robot, q)
    if valid is not None:
        s = np.where(valid, s, -np.inf)
    return np.argsort(-s, axis=-1, kind="stable")
