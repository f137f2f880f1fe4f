r"""Multi-start IK without torch: random seeds, the compiled LM kernel, and FK checks, in NumPy.

This is what ``ggik solve`` runs when no model proposes the seeds (its default on a CPU), so that
it starts without importing torch (about 1.5 s of start-up on the project's machine): the
configurations are drawn uniformly inside the joint limits, refined by
:func:`ggik_core.solve.lm_kernel.refine_pools` in pools (:func:`refine_pools`), and every error is
recomputed by float64 forward kinematics (:func:`forward_kinematics`, :func:`pose_errors`). The
torch refinement (:func:`ggik_core.solve.refine.refine`) calls :func:`refine_pools` on the CPU.

A chain is ``n + 1`` link transforms ``L (n+1, 4, 4)``:
:math:`T = L_0 R_z(q_1) L_1 \cdots R_z(q_n) L_n` (see :mod:`ggik_core.robots.kinematics`).
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import numpy as np

from ggik_core.solve.config import RefineConfig

if TYPE_CHECKING:
    from ggik_core.robots.robot import Robot

#: goals per kernel call when a time budget is checked between calls
KERNEL_CHUNK_GOALS = 4


def extra_count(k: int, goals: int, cfg: RefineConfig) -> int:
    """Seeds added to each goal's ``k`` for the refinement pool: ``k * extra_seeds``, and on small
    batches up to ``k`` more, towards ``min_pool_rows`` rows in all (:class:`RefineConfig`)."""
    if cfg.extra_seeds <= 0:
        return 0
    small = min(k, int(math.ceil(cfg.min_pool_rows / max(goals, 1))) - k)
    return max(int(math.ceil(k * cfg.extra_seeds)), small)


def random_configurations(lower: np.ndarray, upper: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` configurations ``(count, n)`` uniform in ``[lower, upper]`` (continuous joints:
    give their nominal full turn)."""
    return lower + rng.random((count, lower.shape[0])) * (upper - lower)


def wrap_angle(q: np.ndarray) -> np.ndarray:
    """Angles wrapped as :func:`ggik_core.robots.transforms.wrap_angle` wraps them."""
    return np.mod(q + math.pi, 2 * math.pi) - math.pi


def fit_to_limits(q: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Shift each angle by a multiple of 2π into ``[lower, upper]`` where one fits, then clamp."""
    out = q
    for k in (-2, -1, 1, 2):
        cand = q + 2 * math.pi * k
        out = np.where(((out < lower) | (out > upper)) & (cand >= lower) & (cand <= upper), cand, out)
    return np.clip(out, lower, upper)


def forward_kinematics(chain: np.ndarray, q: np.ndarray) -> np.ndarray:
    """End-effector poses ``(..., 4, 4)`` of ``q (..., n)`` for one chain ``(n+1, 4, 4)``."""
    c, s = np.cos(q), np.sin(q)
    T = np.broadcast_to(chain[0], (*q.shape[:-1], 4, 4))
    for i in range(q.shape[-1]):
        x, y = T[..., :, 0], T[..., :, 1]
        turned = np.stack([c[..., i, None] * x + s[..., i, None] * y, c[..., i, None] * y - s[..., i, None] * x,
                           T[..., :, 2], T[..., :, 3]], -1)  # T R_z(q_i)
        T = turned @ chain[i + 1]
    return T


def pose_errors(T: np.ndarray, goal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Position (m) and rotation (rad) errors between poses ``(..., 4, 4)``, broadcast."""
    pos = np.linalg.norm(T[..., :3, 3] - goal[..., :3, 3], axis=-1)
    R = np.swapaxes(goal[..., :3, :3], -1, -2) @ T[..., :3, :3]
    skew = np.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1)
    # atan2(2 sin, 2 cos): exact near 0 and pi, where an arccos of the trace loses digits
    return pos, np.arctan2(np.linalg.norm(skew, axis=-1), R[..., 0, 0] + R[..., 1, 1] + R[..., 2, 2] - 1.0)


def first_distinct(q: np.ndarray, valid: np.ndarray, tol: float, max_elements: int = 1 << 24) -> np.ndarray:
    r"""``(G, m)`` bool: valid candidates of ``q (G, m, n)`` not within ``tol`` of an earlier kept
    one — two candidates are within ``tol`` when every joint differs by less than ``tol`` on the
    circle (:func:`wrap_angle`) — greedy in candidate order, every goal at once, in chunks of goals
    whose ``(chunk, m, m, n)`` size stays under ``max_elements``.

    For ``tol < π``, :math:`|{\rm wrap}(a - b)| < t \Rightarrow \cos a \cos b + \sin a \sin b >
    \cos t`, so pairs close in every joint have :math:`\sum_k \cos(a_k - b_k) > n \cos t`: one
    batched product finds those pairs, and only they are checked joint by joint.
    """
    G, m, n = q.shape
    kept = np.zeros((G, m), dtype=bool)
    step = max(1, max_elements // max(1, m * m * n))
    for a in range(0, G, step):
        qc = q[a:a + step]
        if tol < math.pi:
            c, s = np.cos(qc), np.sin(qc)
            emb = np.concatenate([c, s], -1)
            cand = (emb @ emb.transpose(0, 2, 1)) > n * math.cos(tol) - 1e-9  # a superset (rounding slack)
            g, i, j = np.nonzero(cand)
        else:  # every pair is a candidate
            g, i, j = (x.reshape(-1) for x in np.indices((len(qc), m, m)))
        exact = (np.abs(wrap_angle(qc[g, i] - qc[g, j])) < tol).all(-1)
        close = np.zeros((len(qc), m, m), dtype=bool)
        close[g[exact], i[exact], j[exact]] = True
        part = kept[a:a + step]
        for j in range(m):  # over candidate slots, not goals
            part[:, j] = valid[a:a + step, j] & ~(close[:, j, :] & part).any(-1)
    return kept


def pick(q: np.ndarray, done: np.ndarray, err: np.ndarray, keep: int, tol: float) -> np.ndarray:
    """Indices ``(G, keep)`` of the candidates a pool returns: converged ones unlike every earlier
    one first, then converged repeats (each in seed order), then the best of the rest."""
    fresh = first_distinct(q, done, tol)
    key = np.where(done, np.where(fresh, -2.0, -1.0), err)
    return np.argsort(key, axis=1, kind="stable")[:, :keep]


def refine_rows(chain: np.ndarray, q0: np.ndarray, goals: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                cfg: RefineConfig, keep: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The compiled LM on pools ``q0 (G, m, n)`` (inside the bounds) towards ``goals (G, 4, 4)``.

    Returns every row's configuration ``(G, m, n)`` (converged, or the best over its seeds; rows a
    goal did not need keep their seed), whether it converged ``(G, m)`` and its squared weighted
    error ``(G, m)``. Infinite bounds make a joint continuous. With ``cfg.time_budget_s`` goals go
    in chunks and those left when it runs out are not refined; with ``cfg.threads`` > 1 the goals
    are split over that many threads (the kernel releases the GIL). A goal's re-seeds do not
    depend on either.
    """
    from ggik_core.solve import lm_kernel

    G, m, n = q0.shape
    seeds = np.ascontiguousarray(q0, dtype=np.float64)
    Rg, pg = np.ascontiguousarray(goals[:, :3, :3], dtype=np.float64), np.ascontiguousarray(goals[:, :3, 3], dtype=np.float64)
    lo, hi = np.ascontiguousarray(lower, dtype=np.float64), np.ascontiguousarray(upper, dtype=np.float64)
    lo_s = np.where(np.isfinite(lo), lo, -math.pi)  # where re-seeds are drawn
    hi_s = np.where(np.isfinite(hi), hi, math.pi)
    turn = np.where(np.isfinite(lo) & np.isfinite(hi) & (hi - lo >= 2 * math.pi), 2 * math.pi, 0.0)
    L = np.ascontiguousarray(chain, dtype=np.float64)
    out, out_err, out_done = np.empty((G, m, n)), np.empty((G, m)), np.zeros((G, m), dtype=bool)
    w = cfg.rot_weight
    args = (cfg.max_iter, cfg.pos_tol ** 2, (cfg.rot_tol * w) ** 2, w, cfg.damping, cfg.restart_after, cfg.stall_ratio,
            cfg.stall_age, max(1, cfg.check_every), cfg.seed)

    def run(a: int, b: int, max_iter: int | None = None) -> None:
        it = args if max_iter is None else (max_iter, *args[1:])
        lm_kernel.refine_pools(L, seeds[a:b], Rg[a:b], pg[a:b], lo, hi, lo_s, hi_s, turn, keep, *it, a, out[a:b],
                               out_err[a:b], out_done[a:b])

    threads = max(1, cfg.threads or 1)
    if cfg.time_budget_s is not None:
        t0, chunk = time.perf_counter(), max(1, min(KERNEL_CHUNK_GOALS, G))
        for a in range(0, G, chunk):
            late = time.perf_counter() - t0 > cfg.time_budget_s
            run(a, min(G, a + chunk), 0 if late else None)
    elif threads > 1 and G > 1:
        from concurrent.futures import ThreadPoolExecutor

        edges = np.linspace(0, G, min(threads, G) + 1).astype(int)
        with ThreadPoolExecutor(len(edges) - 1) as pool:
            list(pool.map(lambda ab: run(*ab), zip(edges[:-1], edges[1:])))
    else:
        run(0, G)
    return out, out_done, out_err


def refine_pools(chain: np.ndarray, q: np.ndarray, goals: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                 cfg: RefineConfig, keep: int) -> np.ndarray:
    """``keep`` refined candidates per goal ``(G, keep, n)`` from pools of seeds ``q (G, m, n)``
    (see :func:`ggik_core.solve.refine.refine` with ``keep``): whole turns are shifted into the
    bounds, the pools refined (:func:`refine_rows`), continuous joints (infinite bounds) wrapped to
    :math:`[-\\pi, \\pi)`, and the candidates picked (:func:`pick`)."""
    q0 = fit_to_limits(np.asarray(q, dtype=np.float64), lower, upper)
    out, done, err = refine_rows(chain, q0, goals, lower, upper, cfg, keep)
    continuous = np.isinf(lower) & np.isinf(upper)
    out = np.where(continuous, wrap_angle(out), out)
    order = pick(out, done, err, keep, cfg.distinct_tol)
    return np.take_along_axis(out, order[..., None], 1)


def random_candidates(robot: Robot, goals: np.ndarray, k: int, cfg: RefineConfig, seed: int) -> tuple[np.ndarray, ...]:
    """Multi-start IK without torch (:mod:`ggik_core.solve.multistart`): ``k`` refined candidates per
    goal from pools of configurations drawn uniformly inside the limits (``k`` plus
    :func:`~ggik_core.solve.multistart.extra_count` per goal), with their FK-checked errors and
    limit flags."""
    G, n = goals.shape[0], robot.dof
    m = k + extra_count(k, G, cfg)
    q0 = random_configurations(robot.lower_np, robot.upper_np, G * m, np.random.default_rng(seed)).reshape(G, m, n)
    lower, upper = robot.bounds_np()
    q = refine_pools(robot.chain_np, q0, goals, lower, upper, cfg, keep=k)
    pos, rot = pose_errors(forward_kinematics(robot.chain_np, q), goals[:, None])
    return q, pos, rot, robot.within_limits_np(q)
