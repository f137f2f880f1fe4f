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


def example_robot_data_dir() -> Path | None:
    """The robots folder of the ``example-robot-data`` wheel, or None."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        root = Path(distribution("example-robot-data").locate_file("cmeel.prefix/share/example-robot-data/robots"))
    except PackageNotFoundError:
        return None
    return root if root.is_dir() else None


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
        base = model._fk.base
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
