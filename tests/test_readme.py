"""The README's user examples run as written: every `ggik robots|solve|plot` line of its bash
blocks (through a shell function `ggik` = `python -m pipeline`) and its Python API example, in an
empty folder with no trained model, holding the `my_arm.urdf`, `my_arm.yaml` and `goals.csv` that
the examples name."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.image import imread

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)
TIMEOUT = 600

MY_ARM_URDF = """<?xml version="1.0"?>
<robot name="my_arm">
  <link name="base"/>
{links}
{joints}
</robot>
"""

MY_ARM_YAML = """\
name: my_arm_dh
convention: standard
joints:
  - {a: 0.0, alpha: 1.5707963268, d: 0.3}
  - {a: 0.4, alpha: 0.0, d: 0.0}
  - {a: 0.35, alpha: 0.0, d: 0.0}
  - {a: 0.0, alpha: 1.5707963268, d: 0.1}
  - {a: 0.0, alpha: -1.5707963268, d: 0.1}
  - {a: 0.0, alpha: 0.0, d: 0.08}
"""


def blocks(lang: str) -> list[str]:
    return [body for kind, body in BLOCK.findall(README) if kind == lang]


def cli_lines() -> list[str]:
    lines = [ln.strip() for body in blocks("bash") for ln in body.splitlines()]
    return [ln for ln in lines if re.match(r"ggik (robots|solve|plot)\b", ln)]


def api_examples() -> list[str]:
    return [body for body in blocks("python") if "ggik_core.api" in body]


def write_my_arm_urdf(path: Path) -> None:
    """A 6-DOF arm base -> l1..l6 -> tool0 (fixed), with alternating z/y axes."""
    origins = ["0 0 0.3", "0 0 0.1", "0 0 0.4", "0 0 0.35", "0 0 0.1", "0 0 0.1"]
    axes = ["0 0 1", "0 1 0", "0 1 0", "0 0 1", "0 1 0", "0 0 1"]
    links = "\n".join(f'  <link name="l{i}"/>' for i in range(1, 7)) + '\n  <link name="tool0"/>'
    joints = []
    for i, (xyz, axis) in enumerate(zip(origins, axes), start=1):
        parent = "base" if i == 1 else f"l{i - 1}"
        joints.append(f'  <joint name="j{i}" type="revolute"><parent link="{parent}"/><child link="l{i}"/>'
                      f'<origin xyz="{xyz}"/><axis xyz="{axis}"/><limit lower="-3" upper="3" effort="1" velocity="1"/></joint>')
    joints.append('  <joint name="tool" type="fixed"><parent link="l6"/><child link="tool0"/><origin xyz="0 0 0.08"/></joint>')
    path.write_text(MY_ARM_URDF.format(links=links, joints="\n".join(joints)))


def write_goals(folder: Path) -> None:
    from ggik_core.robots.poses import pose_to_xyz_quat
    from ggik_core.robots.urdf import load_urdf

    robot = load_urdf(folder / "my_arm.urdf", base_link="base", ee_link="tool0")
    T = robot.fk(robot.sample_q(3, torch.Generator().manual_seed(0))).numpy()
    rows = pose_to_xyz_quat(T)
    (folder / "goals.csv").write_text("x,y,z,qw,qx,qy,qz\n" + "\n".join(",".join(repr(float(v)) for v in r) for r in rows) + "\n")


@pytest.fixture()
def user_folder(tmp_path: Path) -> Path:
    write_my_arm_urdf(tmp_path / "my_arm.urdf")
    (tmp_path / "my_arm.yaml").write_text(MY_ARM_YAML)
    write_goals(tmp_path)
    return tmp_path


def test_the_readme_has_the_examples():
    lines = cli_lines()
    assert any(ln.startswith("ggik solve") and "--plot" in ln for ln in lines)
    assert any(ln.startswith("ggik plot") for ln in lines)
    assert sum(ln.startswith("ggik solve") for ln in lines) >= 3
    assert len(api_examples()) == 1


def test_readme_cli_examples_run_without_a_model(user_folder):
    script = "set -euo pipefail\nggik() { \"$PYTHON\" -m pipeline \"$@\"; }\n" + "\n".join(cli_lines()) + "\n"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "GGIK_THREADS": "1", "COLUMNS": "200",
           "PYTHONPATH": str(REPO) + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")}
    res = subprocess.run(["bash", "-c", script], cwd=user_folder, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    assert not (user_folder / "data").exists()  # no model was needed (nor created)
    notes = res.stderr.count("note: seeds: refining") + res.stderr.count("note: method: closed-form branches")  # 6R arms: closed form
    assert notes == sum(ln.startswith("ggik solve") for ln in cli_lines())
    import pandas as pd

    df = pd.read_csv(user_folder / "sols.csv")
    assert df["solved"].any() and df.loc[df["solved"], "pos_err_mm"].max() <= 1.0
    assert imread(user_folder / "sols.png").shape[0] > 500
    assert (user_folder / "panda.pdf").read_bytes()[:4] == b"%PDF"
    # the goals.csv example solves the reachable goals made by FK
    assert re.search(r"my_arm: 3/3 goals solved", res.stderr), res.stderr


def test_readme_python_example_runs(user_folder, monkeypatch, capsys):
    monkeypatch.chdir(user_folder)
    before = torch.get_num_threads()
    namespace: dict = {}
    try:
        exec(compile(api_examples()[0], "README.md", "exec"), namespace)
    finally:
        torch.set_num_threads(before)
    result = namespace["result"]
    assert result.q.shape == (2, 32, 7)
    assert result.solved_goals.all()
    assert np.all(result.pos_err_mm[result.solved] <= 1.0)
    assert "(2, 32, 7)" in capsys.readouterr().out
