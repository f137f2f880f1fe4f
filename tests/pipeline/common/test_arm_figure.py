"""The arm figure of `ggik solve --plot` and `ggik plot`: rendered to PNG and inspected."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib import colormaps
from matplotlib.image import imread
from typer.testing import CliRunner

from ggik_core.api import Solver
from ggik_core.errors import GGIKError
from ggik_core.robots.catalog import load_arm
from pipeline.common.arm_figure import _title, arm_figure, arm_points, plot_frame
from pipeline.cli import app


@pytest.fixture(scope="module")
def panda_solutions() -> tuple[pd.DataFrame, np.ndarray]:
    robot = load_arm("panda")
    goal = robot.fk(robot.sample_q(1, torch.Generator().manual_seed(4))).numpy()
    far = np.eye(4)
    far[0, 3] = 3.0
    res = Solver("panda", threads=None).solve(np.concatenate([goal, far[None]]), k=16, seed=0)
    return res.to_frame(), res.distinct_per_goal


def colour_pixels(png: np.ndarray, rgb: tuple[float, float, float], tol: float = 0.04) -> int:
    return int((np.abs(png[..., :3] - np.asarray(rgb)) < tol).all(-1).sum())


def test_arm_points_run_from_the_base_to_the_end_effector():
    robot = load_arm("kuka")
    q = robot.sample_q(3, torch.Generator().manual_seed(0))
    pts = arm_points(robot, q.numpy())
    assert pts.shape == (3, robot.dof + 2, 3)
    np.testing.assert_allclose(pts[:, 0], 0.0)
    np.testing.assert_allclose(pts[:, -1], robot.fk(q)[:, :3, 3].numpy(), atol=1e-12)
    # consecutive axis origins keep their distances (rigid links) whatever q
    home = arm_points(robot, np.zeros((1, robot.dof)))
    np.testing.assert_allclose(np.linalg.norm(np.diff(pts[:, 1:], axis=1), axis=-1),
                               np.repeat(np.linalg.norm(np.diff(home[:, 1:], axis=1), axis=-1), 3, 0), atol=1e-12)


def test_png_shows_each_distinct_solution_and_the_goal_frame(tmp_path, panda_solutions):
    df, distinct = panda_solutions
    assert distinct[0] >= 2
    out = plot_frame(load_arm("panda"), df, 0, tmp_path / "fig.png")
    png = imread(out)
    assert png.shape[:2] == (1200, 1600)
    drawn = min(int(distinct[0]), 10)
    tab10 = colormaps["tab10"]
    # every drawn solution has its own colour on the canvas; the colours after them do not appear
    present = [colour_pixels(png, tab10(i)[:3]) > 50 for i in range(10)]
    assert all(present[:drawn]), present
    assert not any(present[drawn:]) or drawn == 10, present
    assert (np.abs(png[..., :3] - 1.0).max(-1) > 0.1).mean() > 0.02  # not a blank canvas (about 5 % is drawn)


def test_title_legend_and_equal_axes(panda_solutions):
    df, distinct = panda_solutions
    robot = load_arm("panda")
    rows = df[(df.goal_id == 0) & df.distinct]
    fig = arm_figure(robot, rows[[f"q_{j}" for j in range(1, 8)]].to_numpy(), np.eye(4), "title", ["a"] * len(rows))
    ax = fig.axes[0]
    widths = [np.ptp(lim) for lim in (ax.get_xlim(), ax.get_ylim(), ax.get_zlim())]
    np.testing.assert_allclose(widths, widths[0])
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[-2:] == ["base", "goal frame (x red, y green, z blue)"]


def test_cli_plot_from_a_csv_and_an_unsolved_goal(tmp_path, panda_solutions):
    df, distinct = panda_solutions
    df.to_csv(tmp_path / "sols.csv", index=False)
    res = CliRunner().invoke(app, ["plot", str(tmp_path / "sols.csv"), "--robot", "panda"])
    assert res.exit_code == 0, res.output
    assert imread(tmp_path / "sols.png").shape[:2] == (1200, 1600)
    res = CliRunner().invoke(app, ["plot", str(tmp_path / "sols.csv"), "--robot", "panda", "--goal-id", "1", "--out", str(tmp_path / "far.svg")])
    assert res.exit_code == 0, res.output
    assert "<svg" in (tmp_path / "far.svg").read_text()


def test_titles_say_what_is_drawn():
    robot = load_arm("panda")
    assert _title(robot, 3, np.eye(4), 14, 10, (0.0081, 0.00013)).startswith(
        "panda, goal 3: 14 distinct solutions (10 drawn), errors <= 0.0081 mm, 0.00013°\np = (0.000, 0.000, 0.000) m, quaternion (w, x, y, z) = (1.000, 0.000")
    assert "goal 0: no solution; best candidate shown (2,231 mm, 31.2° off)" in _title(robot, 0, np.eye(4), 0, 1, (2231.4, 31.2))


def test_old_or_foreign_tables_get_one_clear_error(tmp_path, panda_solutions):
    df, _ = panda_solutions
    with pytest.raises(GGIKError, match="lacks column.*distinct"):
        plot_frame(load_arm("panda"), df.drop(columns=["distinct"]), 0, tmp_path / "x.png")
    with pytest.raises(GGIKError, match="7 joint columns but ur10 has 6 joints"):
        plot_frame(load_arm("ur10"), df, 0, tmp_path / "x.png")
    with pytest.raises(GGIKError, match="goal 7 not in"):
        plot_frame(load_arm("panda"), df, 7, tmp_path / "x.png")
    with pytest.raises(GGIKError, match="supported: .png, .pdf, .svg"):
        plot_frame(load_arm("panda"), df, 0, tmp_path / "x.jpg")
