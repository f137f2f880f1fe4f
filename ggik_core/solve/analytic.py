r"""Closed-form IK branches for 6R arms, with the ``eaik`` package (subproblem decomposition).

For a 6R arm whose axes admit a known decomposition (spherical wrist, three parallel axes, ...),
``eaik`` lists every IK branch of a goal. :class:`AnalyticIK` reads the robot's axes ``H`` and the
offsets ``P`` between axis origins at the home configuration from the chain, hands them to
``eaik``, keeps its exact (not least-squares) branches and maps each to the joint limits: a branch
is an angle vector modulo :math:`2\pi`; every alias :math:`q + 2\pi m` inside the limits is
returned (joints with a range over a full turn, like a UR's :math:`\pm 2\pi`, give several;
continuous joints give their alias in :math:`[-\pi, \pi)`), and a branch with no alias inside the
limits is dropped.

An arm whose exact geometry has no decomposition but comes within :data:`SNAP_AXIS` (axis
components) and :data:`DROP_OFFSET_M` (offsets) of one, as URDFs rounded to a few digits do, is
solved on that idealised twin (``exact`` is then False) and every branch is polished with the
project's Levenberg–Marquardt kernel on the real chain; branches that do not converge are dropped.
:func:`analytic_support` says whether (and why not) a robot can be solved this way.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ggik_core.robots.robot import Robot
from ggik_core.robots.reach import home_frames
from ggik_core.solve.multistart import forward_kinematics, pose_errors

SNAP_AXIS, DROP_OFFSET_M = 1e-4, 1e-2
#: position (m) and rotation (rad) errors under which a branch counts as reaching its goal
EXACT_M, EXACT_RAD = 1e-6, 1e-6


def _import_eaik() -> Any:
    import eaik.pybindings.EAIK as EAIK

    return EAIK


def _geometry(robot: Robot) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``H (6, 3)`` axes, ``P (7, 3)`` offsets between consecutive axis origins (base to first,
    ..., last to end effector) and ``R (3, 3)`` the end effector's rotation, at home."""
    F = home_frames(robot.chain_np)
    O = F[:, :3, 3]
    return F[:-1, :3, 2], np.concatenate([O[:1], np.diff(O, axis=0)]), F[-1, :3, :3]


def _eaik_robot(EAIK: Any, H: np.ndarray, P: np.ndarray, R: np.ndarray) -> Any | None:
    """An eaik robot, or None when it knows no decomposition."""
    try:
        ik = EAIK.Robot(H.T.copy(), P.T.copy(), R.copy(), [], True)
    except RuntimeError:
        return None
    return None if "Unknown" in ik.get_kinematic_family() else ik


def _idealised(H: np.ndarray, P: np.ndarray, R: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    snap = lambda A: np.where(np.abs(A - np.round(A)) < SNAP_AXIS, np.round(A), A)  # noqa: E731
    return snap(H), np.where(np.abs(P) < DROP_OFFSET_M, 0.0, P), snap(R)


def analytic_support(robot: Robot) -> tuple[bool, str]:
    """``(True, family)`` when :class:`AnalyticIK` can solve ``robot``, else ``(False, reason)``
    (one line: not 6 DOF, eaik missing, no known decomposition)."""
    if robot.dof != 6:
        return False, f"{robot.name} has {robot.dof} joints; closed-form branches are for 6R arms"
    try:
        EAIK = _import_eaik()
    except ImportError:
        return False, "the eaik package is not installed (pip install eaik)"
    H, P, R = _geometry(robot)
    ik = _eaik_robot(EAIK, H, P, R)
    if ik is not None:
        return True, ik.get_kinematic_family()
    ik = _eaik_robot(EAIK, *_idealised(H, P, R))
    if ik is not None:
        return True, f"{ik.get_kinematic_family()} (idealised geometry, branches polished numerically)"
    return False, f"{robot.name}: its axes have no known subproblem decomposition (eaik)"


class AnalyticIK:
    """Closed-form branches of one 6R robot (raises ``ValueError`` when :func:`analytic_support`
    says no). ``exact``: solved on the real geometry; ``family``: eaik's kinematic family."""

    def __init__(self, robot: Robot) -> None:
        ok, why = analytic_support(robot)
        if not ok:
            raise ValueError(why)
        EAIK = _import_eaik()
        self.robot = robot
        H, P, R = _geometry(robot)
        self._ik = _eaik_robot(EAIK, H, P, R)
        self.exact = self._ik is not None
        if self._ik is None:
            self._ik = _eaik_robot(EAIK, *_idealised(H, P, R))
        self.family = self._ik.get_kinematic_family()

    def raw_branches(self, goal: np.ndarray) -> np.ndarray:
        """eaik's exact branches ``(m, 6)`` for one goal ``(4, 4)``, as it returns them (on the
        idealised twin when not ``exact``; least-squares ones dropped)."""
        sol = self._ik.calculate_IK(np.ascontiguousarray(goal, dtype=np.float64))
        Q = np.array(sol.Q, dtype=np.float64).reshape(-1, 6)
        ls = np.array(sol.is_LS, dtype=bool).reshape(-1)
        return Q[~ls] if ls.size == Q.shape[0] else Q

    def solve(self, goals: np.ndarray, aliases: bool = True) -> list[np.ndarray]:
        """Per goal ``(G, 4, 4)``: its branches inside the joint limits ``(m, 6)`` that reach it
        (FK within :data:`EXACT_M`, :data:`EXACT_RAD`). ``aliases``: every alias ``q + 2πm``
        inside the limits; else one per branch (the one nearest zero)."""
        goals = np.asarray(goals, dtype=np.float64).reshape(-1, 4, 4)
        out = []
        for goal in goals:
            Q = self.raw_branches(goal)
            if len(Q) and not self.exact:
                Q = self._polish(Q, goal)
            if len(Q):
                pos, rot = pose_errors(forward_kinematics(self.robot.chain_np, Q), goal)
                Q = Q[(pos < EXACT_M) & (rot < EXACT_RAD)]
            out.append(limit_aliases(self.robot, _unique_on_circle(Q), every=aliases))
        return out

    def _polish(self, Q: np.ndarray, goal: np.ndarray) -> np.ndarray:
        from ggik_core.solve.config import RefineConfig
        from ggik_core.solve.multistart import refine_rows, wrap_angle

        cfg = RefineConfig(max_iter=50, pos_tol=1e-9, rot_tol=1e-9, restart_after=0, extra_seeds=0.0)
        inf = np.full(6, np.inf)
        q, done, _ = refine_rows(self.robot.chain_np, wrap_angle(Q)[None], goal[None], -inf, inf, cfg, keep=Q.shape[0])
        return q[0][done[0]]


def _unique_on_circle(Q: np.ndarray, tol: float = 1e-6) -> np.ndarray:
    """Rows of ``Q`` wrapped to :math:`[-\\pi, \\pi)`, repeats (on the circle) dropped."""
    W = np.mod(Q + math.pi, 2 * math.pi) - math.pi
    keep: list[int] = []
    for i in range(len(W)):
        d = np.abs(np.mod(W[keep] - W[i] + math.pi, 2 * math.pi) - math.pi) if keep else np.zeros((0, 6))
        if not (d.max(-1) < tol).any():
            keep.append(i)
    return W[keep]


def limit_aliases(robot: Robot, Q: np.ndarray, every: bool = True) -> np.ndarray:
    """For wrapped rows ``Q (m, n)``: the aliases :math:`Q + 2\\pi k` inside the joint limits
    (continuous joints: the row's own angle). ``every``: all combinations of every joint's
    aliases, else each joint's alias nearest zero. Rows with a joint without alias are dropped."""
    lo, hi, cont = robot.lower_np, robot.upper_np, robot.continuous_np
    shifts = 2 * math.pi * np.arange(-3, 4)
    rows = []
    for q in Q:
        cand = q[:, None] + shifts[None]  # (n, 7)
        inside = (cand >= lo[:, None] - 1e-9) & (cand <= hi[:, None] + 1e-9)
        inside[cont] = shifts[None] == 0
        if not inside.any(1).all():
            continue
        options = [cand[j][inside[j]] for j in range(len(q))]
        if not every:
            options = [o[np.argsort(np.abs(o))[:1]] for o in options]
        grids = np.meshgrid(*options, indexing="ij")
        rows.append(np.stack([g.reshape(-1) for g in grids], -1))
    return np.concatenate(rows) if rows else np.zeros((0, robot.dof))


def analytic_candidates(ik: AnalyticIK, goals: np.ndarray, k: int, cfg: Any, seed: int) -> tuple[np.ndarray, ...]:
    """Candidates ``q (G, K, 6)``, their FK position (m) and rotation (rad) errors, limit flags and
    ``ok (G,)``: the goal got closed-form branches.

    Each goal gets its branches inside the limits (one row each, ``K = max(k, most branches)``),
    repeated to fill its rows (the repeats are not distinct); a goal without any branch inside the
    limits gets ``K`` LM multistart candidates instead."""
    from ggik_core.solve.multistart import random_candidates

    robot = ik.robot
    goals = np.asarray(goals, dtype=np.float64).reshape(-1, 4, 4)
    branches = ik.solve(goals, aliases=False)
    ok = np.array([len(b) > 0 for b in branches], dtype=bool)
    K = max([k] + [len(b) for b in branches])
    q = np.zeros((len(goals), K, robot.dof))
    for g, b in enumerate(branches):
        if len(b):
            q[g] = b[np.arange(K) % len(b)]
    if (~ok).any():
        q[~ok] = random_candidates(robot, goals[~ok], K, cfg, seed)[0]
    pos, rot = pose_errors(forward_kinematics(robot.chain_np, q), goals[:, None])
    return q, pos, rot, robot.within_limits_np(q), ok


#: ``Solver(method=...)`` / ``ggik solve --method`` values
METHODS = ("auto", "analytic", "lm")


def pick_method(method: str, robot: Robot, has_model: bool) -> AnalyticIK | None:
    """The closed-form solver for ``method`` (None: the LM): ``auto`` takes it where
    :func:`analytic_support` allows and no model is given; ``analytic`` insists (a one-line
    :class:`~ggik_core.errors.GGIKError` naming why not); ``lm`` never does."""
    from ggik_core.errors import GGIKError

    if method not in METHODS:
        raise GGIKError(f"--method {method!r}: expected one of {', '.join(METHODS)}")
    if method == "lm" or (method == "auto" and has_model):
        return None
    ok, why = analytic_support(robot)
    if method == "analytic":
        if not ok:
            raise GGIKError(f"--method analytic: {why}")
        if has_model:
            raise GGIKError("--method analytic does not use a model: leave out the model, or use --method lm")
    return AnalyticIK(robot) if ok else None
