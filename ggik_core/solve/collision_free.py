"""Collision-free solutions: filter candidates through a :class:`CollisionModel`, re-seed until enough.

:func:`check_candidates` checks candidate solutions ``(G, k, n)`` (only the ``valid`` ones, e.g.
those that reach their goal) and returns the free mask and the minimum distances.
:func:`collision_free_solutions` asks a callable for batches of candidates until each goal has
``k`` exact, collision-free and distinct solutions, or a time budget or a round limit runs out.
It does not know how candidates are made (LM multistart, analytic branches, a model's samples).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ggik_core.robots.collision import CollisionModel, Mode
from ggik_core.solve.multistart import wrap_angle

#: ``propose(goal_indices, round) -> (q (g, m, n), valid (g, m))``: candidates for the goals listed
Propose = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]


def check_candidates(model: CollisionModel, q: np.ndarray, valid: np.ndarray | None = None, mode: Mode = "all",
                     distance: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Free mask and minimum distances ``(G, k)`` of candidates ``q (G, k, n)``.

    Only ``valid (G, k)`` candidates are checked (one batch through the model); the others are
    reported not free with a NaN distance."""
    q = np.asarray(q, dtype=np.float64)
    shape = q.shape[:-1]
    valid = np.ones(shape, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    free = np.zeros(shape, dtype=bool)
    dist = np.full(shape, math.nan)
    if valid.any():
        f, d = model.check(q[valid], mode=mode, distance=distance)
        free[valid], dist[valid] = f, d
    return free, dist


@dataclass
class FreeSolutions:
    """Per goal, the collision-free distinct solutions found (``q[g]`` is ``(m_g, n)``, at most
    ``k``), their minimum distances, how many candidates were checked and the rounds run."""

    q: list[np.ndarray]
    min_distance: list[np.ndarray]
    checked: int
    rounds: int
    seconds: float

    @property
    def counts(self) -> np.ndarray:
        return np.array([len(x) for x in self.q])


def collision_free_solutions(model: CollisionModel, propose: Propose, goals: int, k: int | np.ndarray, time_budget_s: float = 10.0,
                             max_rounds: int = 50, distinct_tol: float = 0.05, mode: Mode = "all",
                             distance: bool = True) -> FreeSolutions:
    """Collect up to ``k`` collision-free, distinct solutions for each of ``goals`` goals.

    ``k`` is one count for every goal or one per goal ``(goals,)`` (e.g. the number of
    collision-free closed-form branches a 6R arm has). Each round calls ``propose`` for the goals
    still short of their ``k`` and keeps the valid candidates
    that are collision free and differ from every kept one by at least ``distinct_tol`` radians in
    some joint (on the circle). It stops when every goal has ``k``, after ``max_rounds`` rounds, or
    when ``time_budget_s`` has passed (checked between rounds).
    """
    t0 = time.perf_counter()
    ks = np.broadcast_to(np.asarray(k, dtype=int), (goals,))
    kept_q: list[list[np.ndarray]] = [[] for _ in range(goals)]
    checked, rounds = 0, 0
    while rounds < max_rounds and time.perf_counter() - t0 < time_budget_s:
        todo = np.array([g for g in range(goals) if len(kept_q[g]) < ks[g]], dtype=int)
        if todo.size == 0:
            break
        q, valid = propose(todo, rounds)
        rounds += 1
        valid = np.asarray(valid, dtype=bool)
        # distinct against kept ones and within the batch first, so that repeats cost no check
        fresh = np.zeros_like(valid)
        for r, g in enumerate(todo):
            seen = list(kept_q[g])
            for j in np.nonzero(valid[r])[0]:
                if len(seen) + int(fresh[r].sum()) >= 4 * ks[g]:
                    break
                if not seen or (np.abs(wrap_angle(np.stack(seen) - q[r, j])).max(-1) >= distinct_tol).all():
                    fresh[r, j] = True
                    seen.append(q[r, j])
        free, _ = check_candidates(model, q, fresh, mode=mode, distance=False)
        checked += int(fresh.sum())
        for r, g in enumerate(todo):
            for j in np.nonzero(free[r])[0]:
                if len(kept_q[g]) >= ks[g]:
                    break
                if kept_q[g] and (np.abs(wrap_angle(np.stack(kept_q[g]) - q[r, j])).max(-1) < distinct_tol).any():
                    continue
                kept_q[g].append(q[r, j])
    n = model.robot.dof
    out_q = [np.array(x).reshape(-1, n) for x in kept_q]
    # distances only for the solutions kept (the candidates were checked without them)
    counts = [len(x) for x in out_q]
    dist = model.check(np.concatenate(out_q), mode=mode, distance=True)[1] if distance and sum(counts) else np.full(sum(counts), math.nan)
    min_distance = np.split(dist, np.cumsum(counts)[:-1]) if counts else []
    return FreeSolutions(q=out_q, min_distance=min_distance, checked=checked, rounds=rounds, seconds=time.perf_counter() - t0)


def multistart_proposer(model: CollisionModel, goals: np.ndarray, m: int, seed: int = 0, max_iter: int = 200,
                        pos_tol: float = 1e-5, rot_tol: float = 1e-4) -> Propose:
    """A :data:`Propose` that runs the torch-free LM multistart (:mod:`ggik_core.solve.multistart`)
    from ``m`` fresh uniform seeds per goal and round; valid = within tolerances and limits."""
    from ggik_core.solve.config import RefineConfig
    from ggik_core.solve.multistart import forward_kinematics, pose_errors, random_configurations, refine_pools

    robot = model.robot
    lower, upper = robot.bounds_np()
    cfg = RefineConfig(max_iter=max_iter, pos_tol=pos_tol, rot_tol=rot_tol, extra_seeds=0.0)

    def propose(todo: np.ndarray, round_: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng((seed, round_))
        G, n = len(todo), robot.dof
        q0 = random_configurations(robot.lower_np, robot.upper_np, G * m, rng).reshape(G, m, n)
        q = refine_pools(robot.chain_np, q0, goals[todo], lower, upper, cfg, keep=m)
        pos, rot = pose_errors(forward_kinematics(robot.chain_np, q), goals[todo][:, None])
        return q, (pos < 10 * pos_tol) & (rot < 10 * rot_tol) & robot.within_limits_np(q)

    return propose
