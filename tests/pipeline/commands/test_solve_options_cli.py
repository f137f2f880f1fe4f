"""`python -m pipeline solve` with --collision, --scene, --rank and --method, run as a user runs it.

Every command is its own process, all started at once by one module fixture. The Panda of
example-robot-data at a tabletop solves with --collision all: every row it calls free is confirmed
collision free by Pinocchio's own check; the UR10 gets its closed-form branches; bad options give
one `ggik: error:` line each.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.pipeline.commands.test_solve_cli_urdf_errors import erd

REPO = Path(__file__).resolve().parents[3]
TIMEOUT = 300
PANDA = "panda_description/urdf/panda.urdf"
SCENE = """obstacles:
  - {name: table, type: plane, xyz: [0, 0, -0.01]}
  - {name: box, type: box, size: [0.2, 0.3, 0.3], xyz: [0.45, -0.2, 0.15]}
"""
TWO_LINKS = """<?xml version="1.0"?>
<robot name="two">
  <link name="base"/>
  <link name="l1">{collision}</link>
  <link name="l2"/>
  <joint name="j1" type="revolute"><parent link="base"/><child link="l1"/><axis xyz="0 0 1"/>
    <limit lower="-1" upper="1" effort="1" velocity="1"/></joint>
  <joint name="j2" type="revolute"><parent link="l1"/><child link="l2"/><origin xyz="0.3 0 0"/><axis xyz="0 0 1"/>
    <limit lower="-1" upper="1" effort="1" velocity="1"/></joint>
</robot>
"""
MISSING_MESH = '<collision><geometry><mesh filename="package://nowhere/meshes/l1.stl"/></geometry></collision>'
PANDA_GOALS = ("0.3 0.3 0.4 0 1 0 0", "0.45 -0.2 0.35 0 1 0 0")  # the second just above the box
UR10_Q = np.array([[0.3, -1.2, 1.1, -0.5, 0.8, 0.2], [-1.0, -0.7, -1.4, 1.0, -0.6, 2.0]])


def goal_text(T: np.ndarray, flip: bool = False) -> str:
    from ggik_core.robots.poses import pose_to_xyz_quat

    row = pose_to_xyz_quat(T[None])[0]
    if flip:
        row[3:] *= -1
    return " ".join(repr(float(v)) for v in row)


def run(cwd: Path, args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "GGIK_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "pipeline", "solve", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT)


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    from ggik_core.robots.catalog import load_arm
    from ggik_core.solve.multistart import forward_kinematics

    base = tmp_path_factory.mktemp("solve_options")
    (base / "scene.yaml").write_text(SCENE)
    (base / "bad_shape.yaml").write_text("obstacles:\n  - {type: cone, radius: 0.1}\n")
    (base / "negative.yaml").write_text("obstacles:\n  - {type: sphere, radius: -0.1}\n")
    (base / "bare.urdf").write_text(TWO_LINKS.format(collision=""))
    (base / "missing_mesh.urdf").write_text(TWO_LINKS.format(collision=MISSING_MESH))
    T = forward_kinematics(load_arm("ur10").chain_np, UR10_Q)
    return {"base": base, "panda": erd(PANDA), "ur10_goals": [goal_text(T[0]), goal_text(T[1])], "flipped": goal_text(T[0], True),
            "ur10_T": T}


@pytest.fixture(scope="module")
def runs(setup) -> dict:
    b, panda, ur = setup["base"], str(setup["panda"]), setup["ur10_goals"]
    links = ["--base-link", "panda_link0", "--ee-link", "panda_link8"]
    jobs = {
        "panda_free": ["--robot", panda, *links, "--goal", PANDA_GOALS[0], "--goal", PANDA_GOALS[1], "-k", "6", "--collision", "all",
                       "--scene", "scene.yaml", "--out", "panda.csv"],
        "ur10_auto": ["--robot", "ur10", "--goal", ur[0], "--goal", ur[1], "-k", "4", "--out", "ur10.csv"],
        "ur10_rank": ["--robot", "ur10", "--goal", ur[0], "--goal", ur[1], "-k", "12", "--method", "lm", "--rank", "manipulability",
                      "--out", "rank.csv"],
        "flipped": ["--robot", "ur10", "--goal", setup["flipped"], "-k", "2", "--method", "lm"],
        "bare_note": ["--robot", "bare.urdf", "--goal", "0.2 0.1 0 1 0 0 0", "-k", "2"],
        "missing_mesh": ["--robot", "missing_mesh.urdf", "--goal", "0.2 0.1 0 1 0 0 0", "--collision", "all"],
        "bad_shape": ["--robot", panda, *links, "--goal", PANDA_GOALS[0], "--scene", "bad_shape.yaml"],
        "negative_size": ["--robot", panda, *links, "--goal", PANDA_GOALS[0], "--scene", "negative.yaml"],
        "near_count": ["--robot", "ur10", "--goal", ur[0], "--rank", "near:0.1,0.2"],
        "analytic_7dof": ["--robot", "panda", "--goal", PANDA_GOALS[0], "--method", "analytic"],
        "scene_bare": ["--robot", "bare.urdf", "--goal", "0.2 0.1 0 1 0 0 0", "--scene", "scene.yaml"],
        "catalog_collision": ["--robot", "panda", "--goal", PANDA_GOALS[0], "--collision", "self"],
    }
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(run, b, args) for name, args in jobs.items()}
        return {name: f.result() for name, f in futures.items()}


def assert_ok(res) -> None:
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr


def test_panda_tabletop_rows_called_free_are_free_for_pinocchio(setup, runs) -> None:
    from ggik_core.robots.collision import CollisionModel
    from ggik_core.robots.scene import load_scene
    from pipeline.bench.collide import PinocchioCheck

    res = runs["panda_free"]
    assert_ok(res)
    summary = res.stderr.strip().splitlines()[-2]  # the last line says where the rows went
    assert "with a collision-free one (all checked)" in summary, res.stderr
    df = pd.read_csv(setup["base"] / "panda.csv")
    assert {"free", "min_distance_mm"} <= set(df.columns)
    free = df[df["free"]]
    assert len(free) >= 2 and (free["solved"]).all() and (free["min_distance_mm"] > 0).all()
    assert (free.groupby("goal_id").size() >= 1).all()
    model = CollisionModel.from_urdf(setup["panda"], "panda_link0", "panda_link8", scene=load_scene(setup["base"] / "scene.yaml"))
    q = free[[f"q_{i}" for i in range(1, 8)]].to_numpy()
    assert PinocchioCheck(setup["panda"], model).free(q).all()
    colliding = df[df["solved"] & ~df["free"]]
    if len(colliding):
        assert not PinocchioCheck(setup["panda"], model).free(colliding[[f"q_{i}" for i in range(1, 8)]].to_numpy()).all()
    # free rows come first within each goal
    for _, g in df.groupby("goal_id"):
        flags = g.sort_values("sample_id")["free"].to_numpy()
        assert (np.diff(flags.astype(int)) <= 0).all()


def test_ur10_auto_returns_every_closed_form_branch(setup, runs) -> None:
    from ggik_core.robots.catalog import load_arm
    from ggik_core.solve.analytic import AnalyticIK

    res = runs["ur10_auto"]
    assert_ok(res)
    assert "closed-form branches" in res.stderr
    df = pd.read_csv(setup["base"] / "ur10.csv")
    branches = [len(b) for b in AnalyticIK(load_arm("ur10")).solve(setup["ur10_T"], aliases=False)]
    assert df.groupby("goal_id")["distinct"].sum().tolist() == branches
    assert max(branches) >= 4 and (df[df["distinct"]]["pos_err_mm"] < 1e-3).all()


def test_rank_orders_rows_by_the_score_column(setup, runs) -> None:
    res = runs["ur10_rank"]
    assert_ok(res)
    df = pd.read_csv(setup["base"] / "rank.csv")
    for _, g in df.groupby("goal_id"):
        solved = g[g["solved"]].sort_values("sample_id")
        assert len(solved) >= 2
        assert (np.diff(solved["manipulability"].to_numpy()) <= 1e-12).all()
        assert solved.index.max() < g[~g["solved"]].index.min() if (~g["solved"]).any() else True


def test_goal_with_negative_qw_is_echoed_as_given(setup, runs) -> None:
    res = runs["flipped"]
    assert_ok(res)
    df = pd.read_csv(io.StringIO(res.stdout))
    given = [float(v) for v in setup["flipped"].split()]
    assert given[3] < 0
    cols = ["goal_x", "goal_y", "goal_z", "goal_qw", "goal_qx", "goal_qy", "goal_qz"]
    assert (df[cols].to_numpy() == np.array(given)).all()
    assert (df["solved"]).any()


def test_urdf_without_collision_geometry_gets_a_note(runs) -> None:
    res = runs["bare_note"]
    assert_ok(res)
    assert "note: self-collision unchecked: bare.urdf has no <collision> geometry" in res.stderr


@pytest.mark.parametrize("case, words", [
    ("missing_mesh", ["mesh 'package://nowhere/meshes/l1.stl'", "not found"]),
    ("bad_shape", ["unknown type 'cone'"]),
    ("negative_size", ["sizes must be positive"]),
    ("near_count", ["--rank near: expected 6 joint values for ur10, got 2"]),
    ("analytic_7dof", ["--method analytic: panda has 7 joints"]),
    ("scene_bare", ["--scene: bare.urdf has no <collision> geometry"]),
    ("catalog_collision", ["--collision self: panda has no collision geometry"]),
])
def test_bad_input_is_one_error_line(runs, case: str, words: list[str]) -> None:
    res = runs[case]
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ggik: error: "), res.stderr
    for w in words:
        assert w in lines[0], lines[0]
