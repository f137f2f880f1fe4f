"""`python -m pipeline solve` on real URDFs with a chain mistake: one `ggik: error:` line each.

The URDFs are those of `example-robot-data` (see tests/robots/test_urdf_errors.py): written by
xacro, they keep its namespace declaration, yet only unexpanded xacro may be called xacro. Each
command runs as its own process, as a user runs it (without a model: the robot is read first).
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pipeline.bench.robot_data import example_robot_data_dir

REPO = Path(__file__).resolve().parents[3]
GOAL = "0.4 0.1 0.5 1 0 0 0"
TIMEOUT = 120
UR5 = "ur_description/urdf/ur5_robot.urdf"
XACRO_PROPERTIES = """<?xml version="1.0"?>
<robot name="arm" xmlns:xacro="http://www.ros.org/wiki/xacro">
  <xacro:property name="shoulder_height" value="0.089159"/>
  <link name="base_link"/>
  <link name="shoulder_link"/>
  <joint name="shoulder_pan_joint" type="revolute">
    <parent link="base_link"/>
    <child link="shoulder_link"/>
    <origin xyz="0.0 0.0 ${shoulder_height}" rpy="0.0 0.0 ${pi/2}"/>
    <axis xyz="0 0 1"/>
    <limit lower="${-2*pi}" upper="${2*pi}" effort="150.0" velocity="3.15"/>
  </joint>
</robot>
"""


def erd(rel: str) -> Path:
    """A URDF of the `example-robot-data` wheel; skips without it (fails under CI=true)."""
    root = example_robot_data_dir()
    if root is None:
        message = "example-robot-data is not installed (the optional extra: pip install -e '.[robots]')"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + "; CI=true needs it")
        pytest.skip(message)
    assert (root / rel).is_file(), f"{rel} is missing from example-robot-data"
    return root / rel


def run_solve(cwd: Path, args: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["OMP_NUM_THREADS"] = "1"
    env["COLUMNS"] = "200"
    cmd = [sys.executable, "-m", "pipeline", "solve", *args, "--goal", GOAL]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    base = tmp_path_factory.mktemp("urdf_errors")
    ur5, panda = erd(UR5), erd("panda_description/urdf/panda.urdf")
    floating = base / "ur5_floating.urdf"
    floating.write_text(ur5.read_text().replace(
        '<link name="world"/>',
        '<link name="odom"/><joint name="free_base" type="floating"><parent link="odom"/><child link="world"/></joint>'
        '<link name="world"/>'))
    (base / "arm.urdf").write_text(XACRO_PROPERTIES)
    cases = {
        "ee_link": ["--robot", str(ur5), "--ee-link", "bad"],
        "base_link": ["--robot", str(ur5), "--base-link", "bad", "--ee-link", "tool0"],
        "branching": ["--robot", str(erd("baxter_description/urdf/baxter.urdf"))],
        "prismatic": ["--robot", str(panda), "--ee-link", "panda_rightfinger"],
        "floating": ["--robot", str(floating), "--ee-link", "tool0"],
        "xacro": ["--robot", "arm.urdf"],
    }
    with ThreadPoolExecutor(2) as pool:
        done = {name: pool.submit(run_solve, base, args) for name, args in cases.items()}
        return {name: fut.result() for name, fut in done.items()}


EXPECTED = {
    "ee_link": "end-effector link 'bad' not found (links: base_link, shoulder_link,",
    "base_link": "base link 'bad' not found (links: base_link,",
    "branching": "several leaf links below 'base' (",
    "prismatic": "joint 'panda_finger_joint2' is prismatic",
    "floating": "joint 'free_base' is floating",
    "xacro": "arm.urdf is a xacro file: expand it to a URDF first with `xacro arm.urdf > arm_expanded.urdf`",
}


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_one_error_line_and_a_failing_exit_code(runs, case):
    res = runs[case]
    assert res.returncode not in (0, None), (res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("ggik: error: "), lines[0]
    assert EXPECTED[case] in lines[0], lines[0]
    assert (case == "xacro") == ("xacro" in lines[0]), lines[0]
    assert res.stdout == ""
