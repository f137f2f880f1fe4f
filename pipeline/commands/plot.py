"""``ggik plot``: the arm in each distinct solution of one goal, from a solutions file written by
``ggik solve --out`` (drawn by :mod:`pipeline.common.arm_figure`)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ggik_core.errors import GGIKError


def read_solutions(path: Path) -> pd.DataFrame:
    """A solutions table from ``.csv``, ``.parquet`` or ``.json`` (records)."""
    if not path.is_file():
        raise GGIKError(f"solutions file {path} not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path)
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix == ".json":
            return pd.read_json(path, orient="records")
    except Exception as exc:  # noqa: BLE001 - any reader failure is a malformed file
        raise GGIKError(f"cannot read solutions file {path}: {' '.join(str(exc).split())}") from None
    raise GGIKError(f"solutions file {path}: unsupported extension {suffix or '(none)'}; supported: .csv, .parquet, .json")


def plot(solutions: Path, robot: str, goal_id: int, out: Path | None, base_link: str | None, ee_link: str | None) -> Path:
    """Draws goal ``goal_id`` of the ``solutions`` file for ``robot`` to ``out`` (default: the
    solutions file as .png); returns the figure's path."""
    from ggik_core.robots.files import load_robot
    from pipeline.common.arm_figure import plot_frame

    path = out or solutions.with_suffix(".png")
    df = read_solutions(solutions)
    plot_frame(load_robot(robot, base_link=base_link, ee_link=ee_link), df, goal_id, path)
    return path
