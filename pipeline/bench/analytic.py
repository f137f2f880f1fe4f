"""Closed-form branches against the LM and TRAC-IK on 6R arms (``ggik bench analytic``).

For each arm, goals are the forward kinematics of configurations drawn uniformly inside the
limits. The reference is the set of closed-form branches inside the limits
(:meth:`ggik_core.solve.analytic.AnalyticIK.solve`, one per branch). Each method's exact
(FK within 1e-6 m and rad), distinct solutions inside the limits are counted, per second of wall
time and as branch coverage: the share of reference branches that one of them matches (largest
joint difference on the circle under ``distinct_tol``). Methods:

* ``analytic``: ``Solver(method="analytic")``;
* ``lm``: ``Solver(method="lm")``, ``k`` random seeds per goal;
* ``trac-ik``: ``pytracik`` from ``k`` random seeds per goal (one call each), when installed.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

#: arm -> (robot spec: catalog name or a URDF inside example-robot-data, base link, EE link)
ARMS = {
    "ur10": ("ur10", None, None),
    "lwa4p": ("lwa4p", None, None),
    "ur5_erd": ("ur_description/urdf/ur5_robot.urdf", "base_link", "tool0"),
    "ur10_erd": ("ur_description/urdf/ur10_robot.urdf", "base_link", "tool0"),
    "kinova_erd": ("kinova_description/robots/kinova.urdf", "j2s6s200_link_base", "j2s6s200_end_effector"),
    "z1_erd": ("z1_description/urdf/z1.urdf", "link00", "link06"),
}
EXACT = 1e-6


def _spec(arm: str) -> tuple[str, str | None, str | None, Path | None]:
    """Robot spec, links and the URDF TRAC-IK reads (None: none available)."""
    from pipeline.bench.baselines import catalog_chain
    from pipeline.bench.collide import example_robot_data_dir

    spec, base, ee = ARMS[arm]
    if base is None:
        chain = catalog_chain(spec)
        return spec, None, None, chain.path if chain.path.is_file() else None
    erd = example_robot_data_dir()
    if erd is None or not (erd / spec).is_file():
        raise FileNotFoundError(f"{spec} is not in example-robot-data")
    return str(erd / spec), base, ee, erd / spec


def _exact_distinct(robot: Any, goal: np.ndarray, Q: np.ndarray, tol: float) -> np.ndarray:
    from ggik_core.solve.multistart import forward_kinematics, pose_errors, wrap_angle

    if not len(Q):
        return Q
    pos, rot = pose_errors(forward_kinematics(robot.chain_np, Q), goal)
    Q = Q[(pos < EXACT) & (rot < EXACT) & robot.within_limits_np(Q)]
    keep: list[np.ndarray] = []
    for q in Q:
        if not keep or (np.abs(wrap_angle(np.stack(keep) - q)).max(-1) >= tol).all():
            keep.append(q)
    return np.array(keep).reshape(-1, robot.dof)


def _covered(branches: np.ndarray, sols: np.ndarray, tol: float) -> int:
    from ggik_core.solve.multistart import wrap_angle

    if not len(branches) or not len(sols):
        return 0
    d = np.abs(wrap_angle(branches[:, None] - sols[None])).max(-1)
    return int((d < tol).any(1).sum())


def bench_arm(arm: str, goals: int = 20, k: int = 32, seed: int = 0, tol: float = 0.05) -> dict[str, Any]:
    """One arm's row: per method, exact distinct solutions per second and branch coverage."""
    from ggik_core.api import Solver
    from ggik_core.solve.analytic import AnalyticIK
    from ggik_core.solve.multistart import forward_kinematics

    spec, base, ee, urdf = _spec(arm)
    solvers = {m: Solver(spec, base_link=base, ee_link=ee, collision="off", method=m, threads=1) for m in ("analytic", "lm")}
    robot = solvers["lm"].robot
    rng = np.random.default_rng(seed)
    G = forward_kinematics(robot.chain_np, robot.lower_np + rng.random((goals, robot.dof)) * (robot.upper_np - robot.lower_np))
    ref = AnalyticIK(robot).solve(G, aliases=False)
    total = sum(len(b) for b in ref)
    row: dict[str, Any] = {"arm": arm, "family": solvers["analytic"].analytic.family, "goals": goals, "branches": total}
    for name, solver in solvers.items():
        solver.solve(G[:1], k=k, seed=seed + 1)  # compiles the kernels outside the timing
        t0 = time.perf_counter()
        res = solver.solve(G, k=k, seed=seed)
        secs = time.perf_counter() - t0
        sols = [_exact_distinct(robot, G[g], res.q[g], tol) for g in range(goals)]
        _row(row, name, sols, ref, secs, tol)
    if urdf is not None:
        try:
            sols, secs = _trac_ik(robot, urdf, base or "", ee or "", arm, G, k, rng, tol)
            _row(row, "trac", sols, ref, secs, tol)
        except ImportError as exc:
            row["trac"] = f"unavailable: {exc}"
    return row


def _row(row: dict[str, Any], name: str, sols: list[np.ndarray], ref: list[np.ndarray], secs: float, tol: float) -> None:
    found = sum(len(s) for s in sols)
    covered = sum(_covered(b, s, tol) for b, s in zip(ref, sols))
    row.update({f"{name}_distinct": found, f"{name}_s": secs, f"{name}_per_s": found / secs,
                f"{name}_coverage": covered / max(1, sum(len(b) for b in ref))})


def _trac_ik(robot: Any, urdf: Path, base: str, ee: str, arm: str, G: np.ndarray, k: int, rng: np.random.Generator,
             tol: float) -> tuple[list[np.ndarray], float]:
    import pytracik  # noqa: F401 - the compiled extension
    from trac_ik import TracIK

    if not base:  # a catalog arm: its reference URDF's links
        from ggik_core.robots.catalog import urdf_links

        base, ee = urdf_links(arm)
    solver = TracIK(base, ee, str(urdf), timeout=0.005, epsilon=1e-5, solver_type="Speed")
    lower = np.where(robot.continuous_np, -2 * np.pi, robot.lower_np)
    upper = np.where(robot.continuous_np, 2 * np.pi, robot.upper_np)
    solver.joint_limits = (lower.tolist(), upper.tolist())
    out: list[np.ndarray] = []
    t0 = time.perf_counter()
    for goal in G:
        found = []
        for _ in range(k):
            seed_q = robot.lower_np + rng.random(robot.dof) * (robot.upper_np - robot.lower_np)
            q = solver.ik(goal[:3, 3].copy(), goal[:3, :3].copy(), seed_q)
            if q is not None:
                found.append(np.asarray(q, dtype=np.float64))
        out.append(np.array(found).reshape(-1, robot.dof))
    secs = time.perf_counter() - t0
    return [_exact_distinct(robot, G[g], out[g], tol) for g in range(len(G))], secs


def bench_analytic(arms: Sequence[str] = tuple(ARMS), goals: int = 20, k: int = 32, seed: int = 0) -> list[dict[str, Any]]:
    """Rows of :func:`bench_arm`; arms whose URDF is missing are skipped."""
    rows = []
    for arm in arms:
        try:
            rows.append(bench_arm(arm, goals, k, seed))
        except FileNotFoundError:
            continue
    return rows
