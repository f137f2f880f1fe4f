"""Solution-branch coverage on 6R arms, with an analytic IK package (``eaik``) as the oracle.

A 6R arm has finitely many IK solutions per goal (at most 16, 8 for the usual wrist families).
For each goal the oracle lists them; the *coverage* of a method is the share of a goal's analytic
solutions (inside the joint limits, angles compared on the circle, so ``q`` and ``q ± 2π`` are one
branch) that at least one of the method's exact candidates reaches within ``tol`` radians on every
joint, averaged over the goals that have any.

The oracle works on the robot's own kinematics: joint axes ``H`` and offsets ``P`` at the home
pose, read from the chain. An arm whose exact geometry has no known subproblem decomposition (the
LWA 4P's URDF puts its 6th axis 5.3 mm beside its 4th, and its angles are written with 5 digits)
is solved on an *idealised* twin (axis components within 1e-4 of a coordinate axis snapped to
it, offsets under 1 cm dropped); each of those solutions is then polished by Levenberg–Marquardt
on the real arm and kept when it is exact there (1e-6 m, 1e-6 rad) and distinct.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ggik_core.robots.kinematics import home_frames
from ggik_core.robots.robot import Robot
from ggik_core.robots.transforms import wrap_angle
from ggik_core.solve.refine import RefineConfig

EXACT_M, EXACT_RAD = 1e-6, 1e-6
SNAP_AXIS, DROP_OFFSET_M = 1e-4, 1e-2
#: polishing an idealised twin's solution on the real arm: no re-seeds, no pool
POLISH = RefineConfig(max_iter=50, pos_tol=1e-9, rot_tol=1e-9, restart_after=0, extra_seeds=0.0)


def import_eaik():
    import eaik.pybindings.EAIK as EAIK

    return EAIK


def _axes_offsets(robot: Robot) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``H (n, 3)`` joint axes, ``P (n + 1, 3)`` offsets between axis origins, ``R (3, 3)`` the
    end effector's rotation, all at the home pose in the base frame."""
    F = home_frames(robot.chain).numpy()
    n = robot.dof
    H = F[:n, :3, 2]
    O = F[:, :3, 3]
    P = np.concatenate([O[:1], np.diff(O, axis=0)])
    return H, P, F[n, :3, :3]


class AnalyticIK:
    """The oracle for one 6R robot (``exact``: whether it solves the real geometry)."""

    def __init__(self, EAIK, robot: Robot) -> None:
        if robot.dof != 6:
            raise ValueError(f"{robot.name}: the analytic oracle is for 6R arms, not {robot.dof} DOF")
        self.robot = robot
        H, P, R = _axes_offsets(robot)
        self.exact = True
        try:
            self._ik = EAIK.Robot(H.T, P.T, R, [], True)
            if "Unknown" in self._ik.get_kinematic_family():
                raise RuntimeError(self._ik.get_kinematic_family())
        except RuntimeError:
            self.exact = False
            Hs = np.where(np.abs(H - np.round(H)) < SNAP_AXIS, np.round(H), H)
            Ps = np.where(np.abs(P) < DROP_OFFSET_M, 0.0, P)
            Rs = np.where(np.abs(R - np.round(R)) < SNAP_AXIS, np.round(R), R)
            self._ik = EAIK.Robot(Hs.T, Ps.T, Rs, [], True)
        self.family = self._ik.get_kinematic_family()

    def solve(self, goals: Tensor, tol: float) -> list[Tensor]:
        """Per goal ``(m, 6)``: its distinct exact solutions inside the joint limits."""
        from ggik_core.solve.solver import errors, refine_solutions

        out = []
        T = goals.to(torch.float64).numpy()
        for g in range(T.shape[0]):
            sol = self._ik.calculate_IK(T[g])
            Q = np.array(sol.Q, dtype=np.float64).reshape(-1, 6)
            q = torch.from_numpy(Q)
            if not self.exact and len(q):
                q = refine_solutions(self.robot, q[None], goals[g:g + 1], POLISH).q[0]
            if len(q):
                pos, rot, _ = errors(self.robot, q[None], goals[g:g + 1])
                q = q[(pos[0] < EXACT_M) & (rot[0] < EXACT_RAD)]
                q = _on_circle_within_limits(self.robot, q)
            out.append(_distinct(q, tol))
        return out


def _on_circle_within_limits(robot: Robot, q: Tensor) -> Tensor:
    """The solutions with an alias ``q + 2πm`` inside the limits, as that alias (limits narrower
    than a turn have at most one)."""
    lo, hi = robot.lower.to(q), robot.upper.to(q)
    alias = wrap_angle(q)
    alias = torch.where(alias < lo, alias + 2 * np.pi, alias)
    alias = torch.where(alias > hi, alias - 2 * np.pi, alias)
    return alias[robot.within_limits(alias)]


def _distinct(q: Tensor, tol: float) -> Tensor:
    """The rows of ``q (m, n)`` that the solver's distinct rule counts, in their order."""
    from ggik_core.solve.distinct import distinct_mask

    m = q.shape[0]
    keep = distinct_mask(q[None].numpy(), np.ones((1, m), dtype=bool), np.arange(m)[None], tol)[0]
    return q[torch.from_numpy(keep)]


def coverage(q: Tensor, ok: Tensor, analytic: list[Tensor], tol: float) -> float | None:
    """Mean over goals (with at least one analytic solution) of the share of analytic solutions
    reached by an ``ok`` candidate of ``q (G, k, 6)`` within ``tol`` rad on every joint."""
    shares = []
    for g, A in enumerate(analytic):
        if len(A) == 0:
            continue
        cand = q[g][ok[g]].to(torch.float64)
        if len(cand) == 0:
            shares.append(0.0)
            continue
        close = wrap_angle(A[:, None, :] - cand[None, :, :]).abs().amax(-1) < tol  # (m, c)
        shares.append(float(close.any(-1).double().mean()))
    return float(np.mean(shares)) if shares else None
