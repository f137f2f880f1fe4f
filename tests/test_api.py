"""`ggik_core.api.Solver` on the reference URDFs, checked by an independent FK (yourdfpy's own
scene-graph FK, not our chain), plus its inputs, masks and reach bound."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from ggik_core.api import Solver
from ggik_core.robots.poses import as_poses, pose_to_xyz_quat
from ggik_core.robots.reach import reach
from ggik_core.solve.distinct import distinct_mask
from ggik_core.errors import GGIKError
from ggik_core.model.cvae import GGIK, ModelConfig
from ggik_core.model.files import save_model
from ggik_core.robots.catalog import ARM_NAMES, load_arm, urdf_file, urdf_links
from pipeline.bench.robot_data import example_robot_data_dir

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GGIK_SHARED") or REPO.parent / "shared")
URDF_DIR = SHARED / "reference" / "urdf"
needs_urdfs = pytest.mark.skipif(not URDF_DIR.is_dir(), reason=f"reference URDFs not found in {URDF_DIR} (set GGIK_SHARED)")

GOALS_PER_ARM = 3
K = 8


class YourdfpyFK:
    """FK by yourdfpy's scene graph: an independent path from the URDF to the EE pose."""

    def __init__(self, path: Path, base: str, ee: str, joints: list[str]) -> None:
        import yourdfpy

        self.urdf = yourdfpy.URDF.load(str(path), build_scene_graph=True, load_meshes=False, build_collision_scene_graph=False,
                                       load_collision_meshes=False)
        self.base, self.ee, self.joints = base, ee, joints

    def __call__(self, q: np.ndarray) -> np.ndarray:
        out = []
        for row in np.atleast_2d(q):
            self.urdf.update_cfg(dict(zip(self.joints, row.tolist())))
            out.append(self.urdf.get_transform(frame_to=self.ee, frame_from=self.base))
        return np.stack(out)


def errors_here(T: np.ndarray, goal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Position error (mm) and rotation angle (deg), by scipy."""
    pos = np.linalg.norm(T[..., :3, 3] - goal[..., :3, 3], axis=-1) * 1000
    rel = np.swapaxes(goal[..., :3, :3], -1, -2) @ T[..., :3, :3]
    rot = np.degrees(Rotation.from_matrix(rel.reshape(-1, 3, 3)).magnitude()).reshape(pos.shape)
    return pos, rot


def check_solver_on_urdf(path: Path, base: str, ee: str, seed: int, k: int = K) -> None:
    """Goals made by yourdfpy's FK from random configurations inside the limits must all be solved,
    and the reported errors must be the true ones by yourdfpy's FK."""
    solver = Solver(path, base_link=base, ee_link=ee, threads=None)
    robot = solver.robot
    fk = YourdfpyFK(path, base, ee, robot.joint_names)
    q_true = robot.sample_q(GOALS_PER_ARM, torch.Generator().manual_seed(seed)).numpy()
    goals = fk(q_true)
    res = solver.solve(goals, k=k, seed=1)
    assert res.q.shape == (GOALS_PER_ARM, k, robot.dof) and res.seeds == "random" and res.refined
    T = fk(res.q.reshape(-1, robot.dof)).reshape(GOALS_PER_ARM, k, 4, 4)
    pos, rot = errors_here(T, goals[:, None])
    # the reported errors are the true ones (independent FK), to a micrometre
    np.testing.assert_allclose(res.pos_err_mm, pos, rtol=0, atol=1e-3)
    np.testing.assert_allclose(res.rot_err_deg, rot, rtol=0, atol=1e-4)
    # every goal is reachable (made by FK) and solved: within 1 mm and 1 deg, inside the URDF limits
    assert res.solved_goals.all(), (pos.min(1), rot.min(1))
    assert (pos[res.solved] <= 1.0).all() and (rot[res.solved] <= 1.0).all()
    assert ((res.q >= robot.lower.numpy() - 1e-9) & (res.q <= robot.upper.numpy() + 1e-9)).all()
    assert not res.out_of_reach.any() and not res.failed.any()
    assert (res.distinct_per_goal >= 1).all() and (res.distinct <= res.solved).all()


@needs_urdfs
@pytest.mark.parametrize("arm", ARM_NAMES)
def test_solver_on_reference_urdfs_checked_by_yourdfpy(arm):
    base, ee = urdf_links(arm)
    check_solver_on_urdf(URDF_DIR / urdf_file(arm), base, ee, seed=3)



ERD = example_robot_data_dir()
#: arm -> (URDF inside example-robot-data, base link, EE link). The wheel ships no KUKA iiwa: the
#: xArm 7 and Unitree Z1 take its place. Kinova's joints 1, 4 and 6 are continuous.
ERD_ARMS = {
    "ur5": ("ur_description/urdf/ur5_robot.urdf", "base_link", "tool0"),
    "ur10": ("ur_description/urdf/ur10_robot.urdf", "base_link", "tool0"),
    "panda": ("panda_description/urdf/panda.urdf", "panda_link0", "panda_hand_tcp"),
    "kinova": ("kinova_description/robots/kinova.urdf", "j2s6s200_link_base", "j2s6s200_end_effector"),
    "xarm7": ("xarm_description/urdf/xarm7.urdf", "link_base", "link_eef"),
    "z1": ("z1_description/urdf/z1.urdf", "link00", "link06"),
}


@pytest.mark.skipif(ERD is None, reason="example-robot-data is not installed (it is the optional extra: pip install -e '.[robots]')")
@pytest.mark.parametrize("arm", sorted(ERD_ARMS))
def test_solver_on_example_robot_data_arms_checked_by_yourdfpy(arm):
    rel, base, ee = ERD_ARMS[arm]
    # 16 random seeds: on 30 goals per arm, 8 solved 90-100 % of the goals, 16 solved all of them
    check_solver_on_urdf(ERD / rel, base, ee, seed=11, k=16)


def test_pose_formats_agree_and_bad_poses_are_refused():
    rng = np.random.default_rng(0)
    T = np.tile(np.eye(4), (5, 1, 1))
    T[:, :3, :3] = Rotation.random(5, random_state=1).as_matrix()
    T[:, :3, 3] = rng.normal(size=(5, 3))
    rows = pose_to_xyz_quat(T)
    np.testing.assert_allclose(as_poses(rows), T, atol=1e-12)
    np.testing.assert_allclose(as_poses(torch.from_numpy(T)), T, atol=0)
    np.testing.assert_allclose(as_poses(rows[0])[0], T[0], atol=1e-12)
    np.testing.assert_allclose(as_poses(T[0])[0], T[0], atol=0)
    with pytest.raises(GGIKError, match="unit quaternion"):
        as_poses([0.1, 0.2, 0.3, 2.0, 0, 0, 0])
    sheared = T[1].copy()
    sheared[0, 1] += 0.1
    with pytest.raises(GGIKError, match="goal 1: not a rigid transform"):
        as_poses(np.stack([T[0], sheared]))
    with pytest.raises(GGIKError, match="shape"):
        as_poses(np.zeros((2, 6)))
    with pytest.raises(GGIKError, match="NaN"):
        as_poses([[0.1, float("nan"), 0.3, 1.0, 0, 0, 0]])


def test_without_a_model_raw_samples_are_refused():
    with pytest.raises(GGIKError, match="raw samples need a trained model"):
        Solver("ur10", threads=None).solve([0.5, 0.2, 0.4, 1, 0, 0, 0], k=2, refine=False)


def _ur10_with_a_tiny_model(tmp_path, dofs: list[int]) -> tuple[Solver, np.ndarray]:
    """A UR10 solver with an untrained model saved as ``tmp_path/m.pt`` (trained DOFs ``dofs``) and two goals."""
    torch.manual_seed(0)
    m = GGIK(ModelConfig(hidden=16, layers=2, latent=4, components=3, message=16))
    save_model(m, m.cfg, [], tmp_path / "m.pt", dofs=dofs)
    robot = load_arm("ur10")
    goals = robot.fk(robot.sample_q(2, torch.Generator().manual_seed(0))).numpy()
    return Solver("ur10", model=tmp_path / "m.pt", threads=None, device="cpu"), goals


def test_with_a_model_raw_and_refined_and_the_dof_note(tmp_path):
    solver, goals = _ur10_with_a_tiny_model(tmp_path, [7])
    raw = solver.solve(goals, k=4, refine=False)
    refined = solver.solve(goals, k=4, refine=True)
    assert raw.seeds == refined.seeds == "ggik" and not raw.refined
    assert raw.pos_err_mm.min() > 1.0 and refined.pos_err_mm.min(1).max() < raw.pos_err_mm.min(1).min()
    assert not raw.failed.any()  # raw candidates are never called failures
    assert len(raw.notes) == 1 and "6 DOF" in raw.notes[0] and "7-DOF" in raw.notes[0]
    assert Solver("kuka", model=tmp_path / "m.pt", threads=None, device="cpu").dof_note() is None
    with pytest.raises(GGIKError, match="not found"):
        Solver("ur10", model=tmp_path / "missing.pt", threads=None)


def test_raw_samples_are_reencoded_unless_asked_otherwise(tmp_path):
    solver, goals = _ur10_with_a_tiny_model(tmp_path, [6])
    default = solver.solve(goals, k=3, refine=False)
    assert np.array_equal(default.q, solver.solve(goals, k=3, refine=False, passes=Solver.RAW_PASSES).q)
    assert not np.array_equal(default.q, solver.solve(goals, k=3, refine=False, passes=0).q)
    with pytest.raises(GGIKError, match="passes must not be negative"):
        solver.solve(goals, k=3, refine=False, passes=-1)
    assert np.array_equal(default.q, solver.solve(goals, k=3, refine=False, relax=Solver.RELAX).q)
    assert not np.array_equal(solver.solve(goals, k=3, refine=False, relax=Solver.RELAX + 1.0).q, default.q)
    with pytest.raises(GGIKError, match="relax must be a finite positive"):
        solver.solve(goals, k=3, refine=False, relax=0.0)


def test_refinement_options_change_the_result():
    robot = load_arm("panda")
    goals = robot.fk(robot.sample_q(4, torch.Generator().manual_seed(2))).numpy()
    one = Solver("panda", max_iter=1, threads=None).solve(goals, k=4)
    many = Solver("panda", max_iter=100, threads=None).solve(goals, k=4)
    assert np.median(many.pos_err_mm) < 0.01 < np.median(one.pos_err_mm)
    strict = Solver("panda", max_iter=100, solved_mm=1e-9, solved_deg=1e-9, threads=None).solve(goals, k=4)
    assert not strict.solved.any() and strict.failed.all()
    with pytest.raises(GGIKError, match="at least 1 iteration"):
        Solver("panda", max_iter=0, threads=None)


def test_to_frame_is_best_first_with_the_goal():
    robot = load_arm("kuka")
    goals = robot.fk(robot.sample_q(2, torch.Generator().manual_seed(5))).numpy()
    res = Solver("kuka", threads=None).solve(goals, k=5)
    df = res.to_frame()
    assert len(df) == 10 and list(df.columns[:2]) == ["goal_id", "sample_id"]
    score = (df["pos_err_mm"] + df["rot_err_deg"]).to_numpy().reshape(2, 5)
    assert (np.diff(score, axis=1) >= 0).all()
    back = as_poses(df[["goal_x", "goal_y", "goal_z", "goal_qw", "goal_qx", "goal_qy", "goal_qz"]].to_numpy())
    np.testing.assert_allclose(back, np.repeat(goals, 5, axis=0), atol=1e-12)
    assert df["distinct"].sum() == res.distinct.sum() and df["solved"].sum() == res.solved.sum()


def test_distinct_mask_keeps_the_best_of_each_cluster():
    q = np.zeros((1, 5, 2))
    q[0, :, 0] = [0.0, 0.01, 1.0, 2 * math.pi - 0.01, 1.02]  # 0, 1, 3 one cluster (on the circle); 2, 4 another
    valid = np.array([[True, True, True, True, True]])
    order = np.array([[1, 0, 3, 4, 2]])  # candidate 1 is the best, then 0, 3, 4, 2
    assert distinct_mask(q, valid, order, 0.05).tolist() == [[False, True, False, False, True]]
    valid[0, 1] = False  # the best of the first cluster is invalid: the next best counts
    assert distinct_mask(q, valid, order, 0.05).tolist() == [[True, False, False, False, True]]
    # chunking over goals (bounded memory) changes nothing
    rng = np.random.default_rng(0)
    q = rng.uniform(-0.2, 0.2, size=(7, 12, 3))
    valid = rng.random((7, 12)) < 0.8
    order = np.argsort(rng.random((7, 12)), axis=1)
    whole = distinct_mask(q, valid, order, 0.15)
    assert 0 < whole.sum() < valid.sum()
    np.testing.assert_array_equal(distinct_mask(q, valid, order, 0.15, max_elements=1), whole)


@pytest.mark.parametrize("arm", ARM_NAMES)
def test_reach_is_a_sound_bound_and_flags_far_goals(arm):
    robot = load_arm(arm)
    r = reach(robot)
    q = robot.sample_q(20000, torch.Generator().manual_seed(0))
    q = torch.cat([q, (torch.rand(20000, robot.dof, generator=torch.Generator().manual_seed(1), dtype=torch.float64) - 0.5) * 4 * math.pi])
    d = (robot.fk(q)[:, :3, 3] - robot.chain[0, :3, 3]).norm(dim=-1)
    assert float(d.max()) <= r + 1e-9  # sound for any configuration, limits or not
    assert float(d.max()) >= 0.6 * r  # and not vacuous
    far = np.eye(4)
    far[0, 3] = r * 1.01 + float(robot.chain[0, 0, 3])
    res = Solver(robot, threads=None).solve(np.stack([far, robot.fk(q[:1]).numpy()[0]]), k=2, refine=True)
    assert res.out_of_reach.tolist() == [True, False]


def test_dh_yaml_path(tmp_path):
    (tmp_path / "arm.yaml").write_text(
        "convention: standard\njoints:\n"
        "  - {a: 0.0, alpha: 1.5707963268, d: 0.3}\n  - {a: 0.4, alpha: 0.0, d: 0.0}\n  - {a: 0.3, alpha: 0.0, d: 0.0}\n"
        "  - {a: 0.0, alpha: 1.5707963268, d: 0.1}\n  - {a: 0.0, alpha: -1.5707963268, d: 0.1}\n  - {a: 0.0, alpha: 0.0, d: 0.08}\n")
    solver = Solver(str(tmp_path / "arm.yaml"), threads=None)
    goal = solver.robot.fk(torch.tensor([0.3, -0.5, 0.8, 0.1, 0.4, -0.2], dtype=torch.float64)).numpy()
    res = solver.solve(goal, k=8)
    assert res.robot == "arm" and res.solved_goals.all()
