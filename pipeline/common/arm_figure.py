"""The arm in each distinct IK solution for one goal, with the goal frame (`ggik solve --plot`,
`ggik plot`).

One 3-D panel per solution (small multiples, all with the same equal-scale limits and view), so no
solution hides another: on many arms two solutions trace the same polyline through the joint
origins (on the Panda, q1 + pi, -q2, q3 + pi). Links are drawn as straight lines between
consecutive joint-axis origins (from the base origin to the end effector), joints as dots, the goal
as an RGB frame (x red, y green, z blue). The title is the figure's, above the panels. Figures are
detached from pyplot (Agg canvas, no global state).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ggik_core.robots.poses import as_poses
from ggik_core.data.io import atomic_path
from ggik_core.errors import GGIKError
from ggik_core.robots.robot import Robot

FIGURE_SUFFIXES = (".png", ".pdf", ".svg")
#: At most this many solutions are drawn (the title says how many there are).
MAX_DRAWN = 10
GOAL_COLS = ("goal_x", "goal_y", "goal_z", "goal_qw", "goal_qx", "goal_qy", "goal_qz")


def check_figure_path(path: Path) -> None:
    """Reject a figure file name whose extension matplotlib is not asked to write."""
    if path.suffix.lower() not in FIGURE_SUFFIXES:
        raise GGIKError(f"figure {path}: unsupported extension {path.suffix or '(none)'}; supported: {', '.join(FIGURE_SUFFIXES)}")


def arm_points(robot: Robot, q: np.ndarray) -> np.ndarray:
    """``(m, n + 2, 3)``: the base origin, the n joint-axis origins and the EE origin for ``q (m, n)``."""
    frames = robot.frames(torch.from_numpy(np.array(q, dtype=np.float64))).numpy()  # (m, n + 1, 4, 4)
    base = np.zeros((frames.shape[0], 1, 3))
    return np.concatenate([base, frames[..., :3, 3]], 1)


#: Panels per row of the figure.
PANEL_COLUMNS = 5
#: Inches per panel.
PANEL_SIZE = 2.7
#: The goal frame's colours (pure, unlike the solutions' tab10 colours).
FRAME_COLORS = ("#ff0000", "#00b000", "#0000ff")


def panel_grid(m: int) -> tuple[int, int]:
    """``(rows, columns)`` of the panels for ``m`` solutions."""
    cols = max(1, min(m, PANEL_COLUMNS))
    return -(-max(m, 1) // cols), cols


def arm_figure(robot: Robot, q: np.ndarray, goal: np.ndarray, title: str, labels: list[str]) -> Figure:
    """The arm drawn in each configuration of ``q (m, n)``, one panel each (titled by ``labels``),
    with the goal frame ``goal (4, 4)``."""
    pts = arm_points(robot, q)
    rows, cols = panel_grid(len(pts))
    fig = Figure(figsize=(max(8.0, PANEL_SIZE * cols + 1.0), PANEL_SIZE * rows + 1.2), layout="constrained")
    FigureCanvasAgg(fig)
    everything = np.concatenate([pts.reshape(-1, 3), goal[None, :3, 3]])
    for i, p in enumerate(pts):
        ax = fig.add_subplot(rows, cols, i + 1, projection="3d")
        c = _color(i)
        ax.plot(p[:, 0], p[:, 1], p[:, 2], "-", color=c, lw=2.2, solid_capstyle="round")
        ax.plot(p[1:-1, 0], p[1:-1, 1], p[1:-1, 2], "o", color=c, ms=4.5, mec="black", mew=0.4)
        ax.plot([0], [0], [0], "s", color="black", ms=6)
        extent = _set_equal(ax, everything)
        _draw_frame(ax, goal, 0.2 * extent)
        ax.tick_params(labelsize=6, pad=0)
        ax.set_xlabel("x [m]", fontsize=7, labelpad=-4)
        ax.set_ylabel("y [m]", fontsize=7, labelpad=-4)
        ax.set_zlabel("z [m]", fontsize=7, labelpad=-4)
        ax.view_init(elev=22, azim=-55)
        ax.set_title(labels[i] if i < len(labels) else f"solution {i + 1}", fontsize=9, color=c, pad=0)
    fig.suptitle(title, fontsize=10)
    handles = [Line2D([], [], color="black", marker="s", ls="", ms=6, label="base"),
               Line2D([], [], color=FRAME_COLORS[0], lw=2.5, label="goal frame (x red, y green, z blue)")]
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    return fig


def plot_frame(robot: Robot, df: pd.DataFrame, goal_id: int, path: Path) -> Path:
    """Draw goal ``goal_id`` of a solutions table (as written by ``ggik solve``) to ``path``."""
    check_figure_path(path)
    qcols = [f"q_{j + 1}" for j in range(robot.dof)]
    found = [c for c in df.columns if str(c).startswith("q_") and str(c)[2:].isdigit()]
    if found and len(found) != robot.dof:
        raise GGIKError(f"the solutions table has {len(found)} joint columns but {robot.name} has {robot.dof} joints: "
                        f"pass the robot the table was solved for")
    needed = ["goal_id", *qcols, "pos_err_mm", "rot_err_deg", "solved", "distinct", *GOAL_COLS]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise GGIKError(f"solutions table lacks column(s) {', '.join(missing)}; write it with `ggik solve --out`")
    rows = df[df["goal_id"] == goal_id]
    if rows.empty:
        raise GGIKError(f"goal {goal_id} not in the solutions table (goal ids {int(df['goal_id'].min())}..{int(df['goal_id'].max())})")
    rows = rows.sort_values(["pos_err_mm", "rot_err_deg"], kind="stable")
    goal = as_poses(rows[list(GOAL_COLS)].to_numpy(dtype=np.float64)[0])[0]
    chosen = rows[rows["distinct"].astype(bool)]
    count = len(chosen)
    if count == 0:
        chosen = rows.head(1)
    drawn = chosen.head(MAX_DRAWN)
    labels = [f"solution {i + 1}" if count else "best candidate" for i in range(len(drawn))]
    worst = (float(drawn["pos_err_mm"].max()), float(drawn["rot_err_deg"].max()))
    fig = arm_figure(robot, drawn[qcols].to_numpy(dtype=np.float64), goal, _title(robot, goal_id, goal, count, len(drawn), worst), labels)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lower()[1:], dpi=200, metadata=_metadata(path))
    return path


def _title(robot: Robot, goal_id: int, goal: np.ndarray, count: int, drawn: int, worst: tuple[float, float]) -> str:
    from ggik_core.robots.poses import pose_to_xyz_quat

    x, y, z, qw, qx, qy, qz = pose_to_xyz_quat(goal[None])[0]
    errors = f"{_short(worst[0])} mm, {_short(worst[1])}°"
    what = (f"{count} distinct solution{'s' if count != 1 else ''}" + (f" ({drawn} drawn)" if drawn < count else "") + f", errors <= {errors}"
            if count else f"no solution; best candidate shown ({errors} off)")
    return (f"{robot.name}, goal {goal_id}: {what}\n"
            f"p = ({x:.3f}, {y:.3f}, {z:.3f}) m, quaternion (w, x, y, z) = ({qw:.3f}, {qx:.3f}, {qy:.3f}, {qz:.3f})")


def _short(x: float) -> str:
    """Two significant digits, without exponents for values of 1 and more."""
    return f"{x:.2g}" if x < 1 else f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def _color(i: int) -> tuple:
    from matplotlib import colormaps

    return colormaps["tab10"](i % 10)


def _set_equal(ax, pts: np.ndarray) -> float:
    """Equal scales on all three axes around ``pts``; returns the half-width used."""
    lo, hi = pts.min(0), pts.max(0)
    centre = (lo + hi) / 2
    half = max(float((hi - lo).max()) / 2 * 1.1, 0.05)
    ax.set_xlim(centre[0] - half, centre[0] + half)
    ax.set_ylim(centre[1] - half, centre[1] + half)
    ax.set_zlim(centre[2] - half, centre[2] + half)
    ax.set_box_aspect((1, 1, 1), zoom=0.85)  # zoom < 1 leaves room for the z label
    return half


def _draw_frame(ax, T: np.ndarray, length: float) -> None:
    o = T[:3, 3]
    for axis, color in zip(range(3), FRAME_COLORS):
        d = T[:3, axis] * length
        ax.quiver(o[0], o[1], o[2], d[0], d[1], d[2], color=color, lw=2.5, arrow_length_ratio=0.2)


def _metadata(path: Path) -> dict:
    return {"Software": None} if path.suffix.lower() == ".png" else {}
