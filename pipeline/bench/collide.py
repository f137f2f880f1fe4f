"""Collision-aware IK benchmark: cost of a collision check and collision-free solutions per second.

:func:`bench_collide` measures, for arms of ``example-robot-data`` standing at a tabletop scene
(:func:`tabletop_scene`: a table plane and two boxes), the cost of one collision check per
candidate (self and scene, with and without distances), and how many distinct, exact,
collision-free solutions per second two methods find for the same goals:

* ggik: the torch-free LM multistart (:mod:`ggik_core.solve.multistart`), its candidates filtered
  by the :class:`~ggik_core.robots.collision.CollisionModel`, re-seeded until ``k`` per goal
  (:func:`ggik_core.solve.collision_free.collision_free_solutions`);
* TRAC-IK (``pytracik``) from random seeds, each solution checked the same way (rejection loop).

Every solution reported free is confirmed by an independent check, Pinocchio's collision
pipeline (:func:`pinocchio_check`: its own URDF parser and mesh loading, meshes as BVH, not
convex hulls) on the same link pairs and obstacles.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ggik_core.robots.collision import CollisionModel
from ggik_core.robots.scene import Scene, parse_scene
from pipeline.bench.robot_data import example_robot_data_dir



#: arm -> (URDF inside example-robot-data, base link, EE link, table height in the base frame)
ARMS = {
    "panda": ("panda_description/urdf/panda.urdf", "panda_link0", "panda_link8", -0.01),
    "ur5": ("ur_description/urdf/ur5_robot.urdf", "base_link", "tool0", -0.01),
    "xarm7": ("xarm_description/urdf/xarm7.urdf", "link_base", "link_eef", -0.01),
    "baxter_right": ("baxter_description/urdf/baxter.urdf", "base", "right_gripper", -0.15),
}


def tabletop_scene(table_z: float, reach: float) -> Scene:
    """A table plane at ``table_z`` and two boxes on it, in front of and beside the robot."""
    h = 0.25 * reach
    return parse_scene({"obstacles": [
        {"name": "table", "type": "plane", "xyz": [0.0, 0.0, table_z]},
        {"name": "box_front", "type": "box", "size": [0.15, 0.3, h], "xyz": [0.6 * reach, -0.2 * reach, table_z + h / 2]},
        {"name": "box_side", "type": "box", "size": [0.2, 0.2, h], "xyz": [0.1 * reach, 0.6 * reach, table_z + h / 2], "rpy": [0, 0, 0.4]},
    ]}, "tabletop")


class PinocchioCheck:
    """The independent check: Pinocchio's URDF parser, its geometry model (meshes as BVH) and
    ``computeCollisions`` on the link pairs and obstacles a :class:`CollisionModel` checks."""

    def __init__(self, urdf: str | Path, model: CollisionModel, package_dirs: Sequence[str | Path] = ()) -> None:
        import pinocchio as pin

        self.pin = pin
        dirs = [str(d) for d in package_dirs] or [str(p) for p in Path(urdf).resolve().parents]
        self.model, self.geom, _ = pin.buildModelsFromUrdf(str(urdf), package_dirs=dirs)
        self.data = self.model.createData()
        self.q_index = []
        for name in model.robot.joint_names:
            j = self.model.joints[self.model.getJointId(name)]
            self.q_index.append((j.idx_q, j.nq))
        q0 = pin.neutral(self.model)
        pin.framesForwardKinematics(self.model, self.data, q0)
        base = model.base_link
        T_root_base = self.data.oMf[self.model.getFrameId(base)].homogeneous
        links = {self.model.frames[g.parentFrame].name: [] for g in self.geom.geometryObjects}
        for i, g in enumerate(self.geom.geometryObjects):
            links[self.model.frames[g.parentFrame].name].append(i)
        scene_ids = []
        if model.scene is not None:
            for ob in model.scene.obstacles:
                placement = pin.SE3(T_root_base @ ob.pose)
                scene_ids.append(self.geom.addGeometryObject(pin.GeometryObject(f"scene:{ob.name}", 0, placement, ob.geometry())))
        pairs = set()
        for a, b in model.checked_link_pairs():
            pairs |= {(min(i, j), max(i, j)) for i in links.get(a, []) for j in links.get(b, [])}
        for i, j in model.scene_pairs:
            link = model.parts[i].link
            pairs |= {(k, scene_ids[j]) for k in links.get(link, [])}
        for i, j in sorted(pairs):
            self.geom.addCollisionPair(pin.CollisionPair(i, j))
        self.geom_data = pin.GeometryData(self.geom)

    def full_q(self, q: np.ndarray) -> np.ndarray:
        out = self.pin.neutral(self.model)
        for (idx, nq), v in zip(self.q_index, q):
            if nq == 2:
                out[idx:idx + 2] = np.cos(v), np.sin(v)
            else:
                out[idx] = v
        return out

    def free(self, q: np.ndarray) -> np.ndarray:
        """``(n,)`` bool: no checked pair collides at ``q (n, dof)``."""
        q = np.asarray(q, dtype=np.float64).reshape(-1, len(self.q_index))
        return np.array([not self.pin.computeCollisions(self.model, self.data, self.geom, self.geom_data, self.full_q(x), True)
                         for x in q], dtype=bool)


#: a solution is exact under these errors (metres, radians)
EXACT_M, EXACT_RAD = 1e-4, 1e-3


def arm_reach(model: CollisionModel) -> float:
    """Sum of the distances between consecutive axis origins at home (an upper bound on reach)."""
    from ggik_core.robots.reach import home_frames

    O = home_frames(model.robot.chain_np)[:, :3, 3]
    return float(np.linalg.norm(np.diff(O, axis=0), axis=-1).sum())


def check_cost_us(model: CollisionModel, q: np.ndarray, mode: str, distance: bool) -> float:
    """Microseconds per configuration of :meth:`CollisionModel.check`."""
    t0 = time.perf_counter()
    model.check(q, mode=mode, distance=distance)  # type: ignore[arg-type]
    return (time.perf_counter() - t0) / len(q) * 1e6


def cost_by_pairs(model: CollisionModel, q: np.ndarray, shares: Sequence[float] = (0.25, 0.5, 1.0)) -> dict[int, float]:
    """Microseconds per configuration of the self check with the first share of the checked
    element pairs (how the cost grows with the geometry checked)."""
    import copy

    out = {}
    for share in shares:
        part = copy.copy(model)
        part.self_pairs = model.self_pairs[: max(1, int(round(share * len(model.self_pairs))))]
        out[len(part.self_pairs)] = check_cost_us(part, q, "self", False)
    return out


def free_goals(model: CollisionModel, count: int, rng: np.random.Generator) -> np.ndarray:
    """Goal poses ``(count, 4, 4)`` reached by collision-free configurations drawn in the limits."""
    from ggik_core.solve.multistart import forward_kinematics

    robot, out = model.robot, []
    while len(out) < count:
        q = robot.lower_np + rng.random((4 * count, robot.dof)) * (robot.upper_np - robot.lower_np)
        out += list(q[model.check(q, distance=False)[0]])
    return forward_kinematics(robot.chain_np, np.array(out[:count]))


def trac_ik_free(model: CollisionModel, urdf: Path, base: str, ee: str, goals: np.ndarray, k: np.ndarray, budget_s: float,
                 distinct_tol: float, seed: int) -> tuple[list[np.ndarray], float, int]:
    """TRAC-IK from uniform random seeds with a rejection loop: per goal, keep exact solutions
    inside the limits that are distinct and collision free, until ``k`` or the budget.
    Returns the solutions per goal, the seconds spent and the TRAC-IK calls made."""
    import pytracik  # noqa: F401 - the compiled extension
    from trac_ik import TracIK

    from ggik_core.solve.multistart import forward_kinematics, pose_errors, wrap_angle

    robot = model.robot
    solver = TracIK(base, ee, str(urdf), timeout=0.005, epsilon=1e-5, solver_type="Speed")
    lower = np.where(robot.continuous_np, -2 * np.pi, robot.lower_np)
    upper = np.where(robot.continuous_np, 2 * np.pi, robot.upper_np)
    solver.joint_limits = (lower.tolist(), upper.tolist())
    rng = np.random.default_rng(seed)
    kept: list[list[np.ndarray]] = [[] for _ in goals]
    calls, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < budget_s:
        todo = [g for g in range(len(goals)) if len(kept[g]) < k[g]]
        if not todo:
            break
        for g in todo:
            seed_q = robot.lower_np + rng.random(robot.dof) * (robot.upper_np - robot.lower_np)
            out = solver.ik(goals[g, :3, 3].copy(), goals[g, :3, :3].copy(), seed_q)
            calls += 1
            if out is None:
                continue
            q = np.asarray(out, dtype=np.float64)
            pos, rot = pose_errors(forward_kinematics(robot.chain_np, q), goals[g])
            if pos > EXACT_M or rot > EXACT_RAD or not robot.within_limits_np(q):
                continue
            if kept[g] and (np.abs(wrap_angle(np.stack(kept[g]) - q)).max(-1) < distinct_tol).any():
                continue
            if model.check(q[None], distance=False)[0][0]:
                kept[g].append(q)
    return [np.array(x).reshape(-1, robot.dof) for x in kept], time.perf_counter() - t0, calls


def bench_arm(arm: str, goals: int = 5, k: int = 8, budget_s: float = 5.0, samples: int = 1000, seed: int = 0,
              check_configs: int = 200, erd: Path | None = None) -> dict[str, Any]:
    """One arm's row of :func:`bench_collide`."""
    from ggik_core.solve.collision_free import collision_free_solutions, multistart_proposer
    from ggik_core.solve.multistart import forward_kinematics, pose_errors

    erd = erd or example_robot_data_dir()
    if erd is None:
        raise RuntimeError("example-robot-data is not installed")
    rel, base, ee, table = ARMS[arm]
    urdf = erd / rel
    t0 = time.perf_counter()
    bare = CollisionModel.from_urdf(urdf, base, ee, samples=0)
    reach = arm_reach(bare)
    model = CollisionModel.from_urdf(urdf, base, ee, samples=samples, scene=tabletop_scene(table, reach), seed=seed)
    build_s = time.perf_counter() - t0
    robot = model.robot
    rng = np.random.default_rng(seed)
    q = robot.lower_np + rng.random((check_configs, robot.dof)) * (robot.upper_np - robot.lower_np)
    row: dict[str, Any] = {
        "arm": arm, "dof": robot.dof, "parts": len(model.parts), "meshes": sum(p.kind == "mesh" for p in model.parts),
        "self_pairs": len(model.self_pairs), "scene_pairs": len(model.scene_pairs), "build_s": build_s,
        "free_share": float(model.check(q, distance=False)[0].mean()),
        "us_self": check_cost_us(model, q, "self", False), "us_all": check_cost_us(model, q, "all", False),
        "us_all_distance": check_cost_us(model, q, "all", True),
    }
    row["us_per_pair"] = row["us_all"] / max(1, row["self_pairs"] + row["scene_pairs"])
    row["us_self_by_pairs"] = cost_by_pairs(model, q)
    G = free_goals(model, goals, rng)
    target = np.full(goals, k)
    from ggik_core.solve.analytic import AnalyticIK, analytic_support

    if analytic_support(robot)[0]:  # a 6R arm has finitely many branches: aim for the free ones
        available = np.array([int(model.check(Q, distance=False)[0].sum()) if len(Q) else 0
                              for Q in AnalyticIK(robot).solve(G, aliases=False)])
        target = np.minimum(target, available)
        row["analytic_free_branches"] = int(available.sum())
    row["target"] = int(target.sum())
    reference = PinocchioCheck(urdf, model)

    def confirmed(sols: list[np.ndarray]) -> tuple[int, int]:
        allq = np.concatenate([s for s in sols if len(s)] or [np.zeros((0, robot.dof))])
        ok = reference.free(allq) if len(allq) else np.zeros(0, dtype=bool)
        exact = 0
        for g, s in enumerate(sols):
            if len(s):
                pos, rot = pose_errors(forward_kinematics(robot.chain_np, s), G[g])
                exact += int(((pos < EXACT_M) & (rot < EXACT_RAD)).sum())
        return int(ok.sum()), exact

    multistart_proposer(model, G[:1], m=2)(np.array([0]), 0)  # compiles the LM kernel outside the timing
    out = collision_free_solutions(model, multistart_proposer(model, G, m=k, seed=seed), goals, target, time_budget_s=budget_s,
                                   max_rounds=10_000, distance=False)
    ok, exact = confirmed(out.q)
    row.update(ggik_found=int(out.counts.sum()), ggik_confirmed=ok, ggik_exact=exact, ggik_s=out.seconds,
               ggik_per_s=ok / out.seconds, ggik_rounds=out.rounds)
    try:
        sols, secs, calls = trac_ik_free(model, urdf, base, ee, G, target, budget_s, 0.05, seed)
    except ImportError as exc:
        row.update(trac_ik=f"unavailable: {exc}")
        return row
    ok, exact = confirmed(sols)
    row.update(trac_found=int(sum(len(s) for s in sols)), trac_confirmed=ok, trac_exact=exact, trac_s=secs,
               trac_per_s=ok / secs, trac_calls=calls)
    return row


def bench_collide(arms: Sequence[str] = tuple(ARMS), goals: int = 5, k: int = 8, budget_s: float = 5.0,
                  samples: int = 1000, seed: int = 0) -> list[dict[str, Any]]:
    """Rows of :func:`bench_arm` for the arms of :data:`ARMS` that example-robot-data ships."""
    erd = example_robot_data_dir()
    if erd is None:
        raise RuntimeError("example-robot-data is not installed (pip install -e '.[robots]')")
    return [bench_arm(a, goals, k, budget_s, samples, seed, erd=erd) for a in arms if (erd / ARMS[a][0]).is_file()]


def main() -> None:
    import argparse
    import json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--goals", type=int, default=5)
    parser.add_argument("-k", type=int, default=8)
    parser.add_argument("--budget-s", type=float, default=5.0)
    parser.add_argument("--samples", type=int, default=1000)
    args = parser.parse_args()
    for row in bench_collide(args.arms.split(","), args.goals, args.k, args.budget_s, args.samples):
        print(json.dumps({key: round(v, 3) if isinstance(v, float) else v for key, v in row.items()}))


if __name__ == "__main__":
    main()
