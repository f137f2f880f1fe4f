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
from pipeline.common.arm_figure import _title, arm_figure, arm_points, panel_grid, plot_frame
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
    drawn = min(int(distinct[0]), 10)
    assert png.shape[:2] == (200 * (1.2 + 2.7 * panel_grid(drawn)[0]), 200 * max(8.0, 2.7 * panel_grid(drawn)[1] + 1.0))
    tab10 = colormaps["tab10"]
    # every drawn solution has its own colour on the canvas; the colours after them do not appear
    present = [colour_pixels(png, tab10(i)[:3]) > 50 for i in range(10)]
    assert all(present[:drawn]), present
    assert not any(present[drawn:]) or drawn == 10, present
    assert (np.abs(png[..., :3] - 1.0).max(-1) > 0.1).mean() > 0.02  # not a blank canvas


def rendered(fig) -> np.ndarray:
    """The figure's pixels ``(H, W, 3)`` in [0, 1], row 0 at the top."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3] / 255.0


def test_every_listed_solution_is_visible_even_where_two_share_a_polyline(panda_solutions):
    """On the Panda (q1 + pi, -q2, q3 + pi) draws the same polyline through the joint origins: each
    solution must still show its own colour inside the plotting area (legends left out)."""
    df, _ = panda_solutions
    robot = load_arm("panda")
    q = df[(df.goal_id == 0) & df.distinct][[f"q_{j}" for j in range(1, 8)]].to_numpy()[:5]
    twin = q[0] + np.array([np.pi, 0, np.pi, 0, 0, 0, 0])
    twin[1] = -q[0, 1]
    twin = (twin + np.pi) % (2 * np.pi) - np.pi
    np.testing.assert_allclose(arm_points(robot, twin[None]), arm_points(robot, q[:1]), atol=1e-9)
    q = np.concatenate([q, twin[None]])
    fig = arm_figure(robot, q, robot.fk(torch.from_numpy(q[:1])).numpy()[0], "title", [f"solution {i + 1}" for i in range(len(q))])
    px = rendered(fig)
    height = px.shape[0]
    inside = np.zeros(px.shape[:2], dtype=bool)
    for ax in fig.axes:
        x0, y0, x1, y1 = np.asarray(ax.get_window_extent().extents).round().astype(int)
        inside[max(0, height - y1):height - y0, max(0, x0):x1] = True
    tab10 = colormaps["tab10"]
    counts = [int((inside & (np.abs(px - np.asarray(tab10(i)[:3])) < 0.02).all(-1)).sum()) for i in range(len(q))]
    assert min(counts) > 40, counts


def test_the_title_and_all_text_fit_in_the_figure(panda_solutions):
    df, _ = panda_solutions
    rows = df[(df.goal_id == 0) & df.distinct].head(10)
    robot = load_arm("panda")
    title = _title(robot, 0, np.eye(4), 14, len(rows), (0.0081, 0.00013))
    for q in (rows[[f"q_{j}" for j in range(1, 8)]].to_numpy(), rows[[f"q_{j}" for j in range(1, 8)]].to_numpy()[:1]):
        fig = arm_figure(robot, q, np.eye(4), title, ["a"] * len(q))
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        box = fig.bbox
        texts = [*fig.texts, *[ax.title for ax in fig.axes], *[t for leg in fig.legends for t in leg.get_texts()]]
        assert any(t.get_text() == title for t in texts)
        for t in texts:
            ext = t.get_window_extent(renderer)
            assert ext.x0 >= box.x0 and ext.x1 <= box.x1 and ext.y0 >= box.y0 and ext.y1 <= box.y1, (t.get_text()[:30], ext, box)


def test_title_legend_and_equal_axes(panda_solutions):
    df, distinct = panda_solutions
    robot = load_arm("panda")
    rows = df[(df.goal_id == 0) & df.distinct].head(10)
    fig = arm_figure(robot, rows[[f"q_{j}" for j in range(1, 8)]].to_numpy(), np.eye(4), "title", ["a"] * len(rows))
    assert len(fig.axes) == len(rows)  # one panel per solution
    for ax in fig.axes:
        widths = [np.ptp(lim) for lim in (ax.get_xlim(), ax.get_ylim(), ax.get_zlim())]
        np.testing.assert_allclose(widths, widths[0])
        assert ax.get_xlim() == fig.axes[0].get_xlim()
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[-2:] == ["base", "goal frame (x red, y green, z blue)"]


def test_cli_plot_from_a_csv_and_an_unsolved_goal(tmp_path, panda_solutions):
    df, distinct = panda_solutions
    df.to_csv(tmp_path / "sols.csv", index=False)
    res = CliRunner().invoke(app, ["plot", str(tmp_path / "sols.csv"), "--robot", "panda"])
    assert res.exit_code == 0, res.output
    assert imread(tmp_path / "sols.png").shape[1] >= 1600
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
