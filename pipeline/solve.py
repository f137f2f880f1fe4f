"""`ggik solve`: IK solutions for the user's robot and goals, every error checked by FK."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ggik_core.errors import GGIKError
from ggik_core.data.io import atomic_path, write_text
from ggik_core.solve.refine import RefineConfig
from ggik_core.robots.files import load_robot
from ggik_core.solve.solver import sample_solutions
from ggik_core.robots.transforms import pose_from_xyz_quat
from pipeline.progress import stderr
from pipeline.train import load_model

GOAL_COLUMNS = ("x", "y", "z", "qw", "qx", "qy", "qz")
QUAT_TOL = 1e-3


def parse_goal(text: str, index: int) -> list[float]:
    parts = text.replace(",", " ").split()
    if len(parts) != 7:
        raise GGIKError(f"goal {index}: expected 7 numbers 'x y z qw qx qy qz', got {len(parts)} in {text!r}")
    try:
        return [float(p) for p in parts]
    except ValueError:
        raise GGIKError(f"goal {index}: {text!r} has a value that is not a number") from None


def read_goal_file(path: Path) -> list[list[float]]:
    if not path.exists():
        raise GGIKError(f"goals file {path} not found")
    try:
        if path.suffix.lower() == ".parquet":
            df = pd.read_parquet(path)
        elif path.suffix.lower() in (".csv", ".txt"):
            df = pd.read_csv(path)
        else:
            raise GGIKError(f"goals file {path}: use .csv or .parquet")
    except GGIKError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader failure is a malformed file
        raise GGIKError(f"cannot read goals file {path}: {str(exc).splitlines()[0]}") from None
    cols = [str(c).strip().lower() for c in df.columns]
    missing = [c for c in GOAL_COLUMNS if c not in cols]
    if missing:
        raise GGIKError(f"goals file {path}: missing column(s) {', '.join(missing)}; expected columns {','.join(GOAL_COLUMNS)}")
    df.columns = cols
    try:
        values = df[list(GOAL_COLUMNS)].astype(float).to_numpy()
    except (TypeError, ValueError):
        raise GGIKError(f"goals file {path}: non-numeric values in columns {','.join(GOAL_COLUMNS)}") from None
    if values.shape[0] == 0:
        raise GGIKError(f"goals file {path} has no rows")
    return values.tolist()


def goals_tensor(rows: list[list[float]]) -> torch.Tensor:
    g = torch.tensor(rows, dtype=torch.float64)
    for i, row in enumerate(g):
        if not torch.isfinite(row).all():
            raise GGIKError(f"goal {i}: contains NaN or infinity")
        norm = float(row[3:].norm())
        if abs(norm - 1.0) > QUAT_TOL:
            raise GGIKError(f"goal {i}: quaternion (qw qx qy qz) has norm {norm:.4g}, expected a unit quaternion")
    g[:, 3:] = g[:, 3:] / g[:, 3:].norm(dim=-1, keepdim=True)
    return pose_from_xyz_quat(g)


def solve(
    robot_spec: str,
    goal_texts: list[str],
    goals_file: Path | None,
    samples: int,
    model_path: Path,
    out: Path | None,
    refine: bool,
    seed: int,
    base_link: str | None = None,
    ee_link: str | None = None,
    refine_cfg: RefineConfig = RefineConfig(),
) -> pd.DataFrame:
    if samples < 1:
        raise GGIKError("--samples must be at least 1")
    if out is not None and out.suffix.lower() not in (".csv", ".parquet", ".json"):
        raise GGIKError(f"--out {out}: use a .csv, .parquet or .json file name")
    robot = load_robot(robot_spec, base_link=base_link, ee_link=ee_link)
    rows = [parse_goal(t, i) for i, t in enumerate(goal_texts)]
    if goals_file is not None:
        rows += read_goal_file(goals_file)
    if not rows:
        raise GGIKError("no goals: pass --goal 'x y z qw qx qy qz' (repeatable) or --goals FILE")
    goals = goals_tensor(rows)
    if not model_path.exists():
        raise GGIKError(f"model {model_path} not found: run `dvc repro` first or pass --model")
    model = load_model(model_path)
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    sols = sample_solutions(model, robot, goals, samples, generator=gen, refine_cfg=refine_cfg if refine else None)
    pos_mm = sols.pos_err.numpy() * 1000.0
    rot_deg = np.degrees(sols.rot_err.numpy())
    order = np.argsort(pos_mm + rot_deg, axis=1, kind="stable")  # best candidates first
    take = lambda a: np.take_along_axis(a, order, 1)  # noqa: E731
    q = np.take_along_axis(sols.q.numpy(), order[..., None], 1)
    G, k, n = q.shape
    df = pd.DataFrame({"goal_id": np.repeat(np.arange(G), k), "sample_id": np.tile(np.arange(k), G)})
    for j in range(n):
        df[f"q_{j + 1}"] = q[..., j].reshape(-1)
    df["pos_err_mm"] = take(pos_mm).reshape(-1)
    df["rot_err_deg"] = take(rot_deg).reshape(-1)
    df["within_limits"] = take(sols.within_limits.numpy()).reshape(-1)
    best = take(pos_mm)[:, 0]
    for i in np.nonzero(best > 10.0)[0]:
        stderr.print(f"goal {i}: best candidate is {best[i]:.1f} mm away (the goal may be unreachable); its true errors are reported")
    stderr.print(f"{robot.name}: {G} goals x {k} samples in {sols.seconds * 1000:.1f} ms{' with refinement' if refine else ''}; "
                 f"median best error {np.median(best):.3g} mm")
    if out is not None:
        write_solutions(df, out)
    return df


def write_solutions(df: pd.DataFrame, out: Path) -> None:
    suffix = out.suffix.lower()
    if suffix == ".csv":
        write_text(out, df.to_csv(index=False))
    elif suffix == ".json":
        write_text(out, df.to_json(orient="records", indent=1))
    else:
        with atomic_path(out) as tmp:
            df.to_parquet(tmp, index=False)
