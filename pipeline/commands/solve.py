"""`ggik solve`: IK solutions for the user's robot and goals, every error checked by FK.

The work is :class:`ggik_core.api.Solver`'s; this module reads goals from the command line or a
file (with one-line messages for the usual mistakes), finds the model, prints notes and a summary
line on stderr and writes the solutions (and optionally a figure).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:  # pandas is imported where goal files are read: ggik solve's default path never needs it
    import pandas as pd

from ggik_core.api import Result, Solver
from ggik_core.robots.poses import poses_from_rows
from ggik_core.robots.reach import distance_from_first_axis
from ggik_core.solve.config import SOLVE
from ggik_core.solve.rank import parse_rank
from ggik_core.data.io import atomic_path, write_text
from ggik_core.errors import GGIKError
from pipeline.common.progress import stderr

GOAL_COLUMNS = ("x", "y", "z", "qw", "qx", "qy", "qz")
GOAL_SUFFIXES = (".csv", ".parquet")
OUT_SUFFIXES = (".csv", ".parquet", ".json")
#: At most this many per-goal warnings are printed; the rest are counted.
MAX_GOAL_LINES = 10

_EXPECTED = f"a header line {','.join(GOAL_COLUMNS)} and one comma-separated goal per line"


def parse_goal(text: str, index: int) -> list[float]:
    """``x y z qw qx qy qz`` (spaces or commas) as 7 floats."""
    parts = text.replace(",", " ").split()
    if len(parts) != 7:
        raise GGIKError(f"goal {index}: expected 7 numbers 'x y z qw qx qy qz', got {len(parts)} in {text!r}")
    try:
        return [float(p) for p in parts]
    except ValueError:
        raise GGIKError(f"goal {index}: {text!r} has a value that is not a number") from None


def read_goal_file(path: Path) -> np.ndarray:
    """Goals ``(G, 7)`` from a CSV (comma-separated, with a header) or Parquet file."""
    if not path.exists():
        raise GGIKError(f"goals file {path} not found")
    suffix = path.suffix.lower()
    if suffix not in GOAL_SUFFIXES:
        raise GGIKError(f"goals file {path}: unsupported extension {suffix or '(none)'}; supported: .csv ({_EXPECTED}) "
                        f"or .parquet (columns {','.join(GOAL_COLUMNS)})")
    import pandas as pd

    try:
        if suffix == ".parquet":
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except Exception as exc:  # noqa: BLE001 - any reader failure is a malformed file
        raise GGIKError(f"cannot read goals file {path}: {' '.join(str(exc).split())}") from None
    df.columns = [str(c).strip().lower() for c in df.columns]
    _check_header(path, list(df.columns))
    if len(df) == 0:
        raise GGIKError(f"goals file {path} has no rows")
    return np.stack([_column(path, df[c], c, suffix == ".csv") for c in GOAL_COLUMNS], 1)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _check_header(path: Path, cols: list[str]) -> None:
    """One clear line for a file that is not comma-separated, has no header, or lacks columns."""
    if len(cols) == 1 and any(sep in cols[0] for sep in (" ", "\t", ";")):
        raise GGIKError(f"goals file {path} is not comma-separated (its first line is {cols[0]!r}); expected {_EXPECTED}")
    if any(_is_number(c) for c in cols):
        raise GGIKError(f"goals file {path} has no header line (its first line holds numbers); expected {_EXPECTED}")
    missing = [c for c in GOAL_COLUMNS if c not in cols]
    if missing:
        raise GGIKError(f"goals file {path}: missing column(s) {', '.join(missing)} (found {', '.join(cols) or 'none'}); "
                        f"expected columns {','.join(GOAL_COLUMNS)}")


def _column(path: Path, raw: pd.Series, name: str, csv: bool) -> np.ndarray:
    """A goal column as floats; an empty or non-numeric cell is named by row (and CSV line) and column."""
    import pandas as pd

    text = raw.astype(str).str.strip()
    empty = raw.isna().to_numpy() | (text == "").to_numpy()
    values = pd.to_numeric(raw.where(~empty, np.nan), errors="coerce").to_numpy(dtype=np.float64)
    bad = empty | (np.isnan(values) & ~(text.str.lower() == "nan").to_numpy())
    if bad.any():
        r = int(np.nonzero(bad)[0][0])
        where = f"goals file {path}, row {r + 1}{f' (line {r + 2})' if csv else ''}, column {name}"
        raise GGIKError(f"{where}: empty cell" if empty[r] else f"{where}: {text.iloc[r]!r} is not a number")
    return values


def find_model(model_path: Path | None, robot_spec: str, refine: bool = True, seeds: str = "auto") -> Path | None:
    """The model to sample from, or None for random seeds.

    ``--model`` wins (the file must exist). Otherwise the model that ships in the package for this
    robot (:mod:`ggik_core.weights`) is used for raw samples and for ``--seeds model``; refinement
    with ``--seeds auto`` starts from random seeds, measured faster than learned seeds on a CPU
    (``ggik bench seeds``, README)."""
    if seeds not in ("auto", "model", "random"):
        raise GGIKError(f"--seeds must be auto, model or random, got {seeds!r}")
    if seeds == "random":
        if not refine:
            raise GGIKError("--seeds random needs refinement: raw samples come from a model (leave out --raw)")
        if model_path is not None:
            raise GGIKError("--seeds random does not use --model: leave out one of them")
        return None
    if model_path is not None:
        if not model_path.is_file():
            raise GGIKError(f"model {model_path} not found (leave out --model to use the model that ships with ggik)")
        return model_path
    if not refine or seeds == "model":
        from ggik_core.weights import model_name_for, shipped_path

        path = shipped_path(model_name_for(robot_spec))
        if not path.is_file():
            raise GGIKError(f"the shipped model {path.name} is missing from this install ({path.parent}); pass --model FILE")
        return path
    return None


def model_note(model: Path) -> str | None:
    """A one-line note naming the shipped model in use and its measured accuracy (None for other files)."""
    from ggik_core.weights import SHIPPED, WEIGHTS_DIR, shipped_card

    if model.resolve().parent != WEIGHTS_DIR or model.stem not in SHIPPED:
        return None
    try:
        card = shipped_card(model.stem)
        overall = card["eval"]["overall"]
        trained = card["trained_on"]
    except (OSError, ValueError, KeyError):
        return f"note: model: the shipped {model.stem} model"
    what = ", ".join(trained) if isinstance(trained, list) else trained
    return (f"note: model: the shipped {model.stem} model (trained on {what} for {card['training']['minutes']:.0f} min; raw median "
            f"{overall['raw_median_mm']:.0f} mm on the five arms, ggik_core/weights/{model.stem}.json; --model FILE overrides)")


def solve(
    robot_spec: str,
    goal_texts: Sequence[str],
    goals_file: Path | None,
    samples: int,
    model_path: Path | None,
    out: Path | None,
    refine: bool = True,
    seed: int = SOLVE.seed,
    base_link: str | None = None,
    ee_link: str | None = None,
    max_iter: int | None = None,
    pos_tol_mm: float = SOLVE.pos_tol_mm,
    rot_tol_deg: float = SOLVE.rot_tol_deg,
    solved_mm: float = SOLVE.solved_mm,
    solved_deg: float = SOLVE.solved_deg,
    distinct_tol: float = SOLVE.distinct_tol,
    plot: Path | None = None,
    plot_goal: int = 0,
    threads: int = SOLVE.threads,
    time_budget: float | None = None,
    seeds: str = "auto",
    passes: int | None = None,
    collision: str = SOLVE.collision,
    scene: Path | None = None,
    package_dirs: Sequence[Path] = (),
    exclude_pairs: str | None = None,
    rank: str | None = None,
    method: str = SOLVE.method,
) -> Result:
    """Solve, report on stderr, write ``out`` (and ``plot``); returns the solutions
    (``Result.to_csv()``/``to_frame()`` give them best first)."""
    if samples < 1:
        raise GGIKError("--samples must be at least 1")
    if passes is not None and passes < 0:
        raise GGIKError(f"--passes must not be negative (got {passes})")
    if out is not None and out.suffix.lower() not in OUT_SUFFIXES:
        raise GGIKError(f"--out {out}: use a {', '.join(OUT_SUFFIXES)} file name")
    if plot is not None:
        from pipeline.common.arm_figure import check_figure_path

        check_figure_path(plot)
    rows = [parse_goal(t, i) for i, t in enumerate(goal_texts)]
    if goals_file is not None:
        rows += read_goal_file(goals_file).tolist()
    if not rows:
        raise GGIKError("no goals: pass --goal 'x y z qw qx qy qz' (repeatable) or --goals FILE")
    if plot is not None and not 0 <= plot_goal < len(rows):
        raise GGIKError(f"--plot-goal {plot_goal}: there are {len(rows)} goals (ids 0..{len(rows) - 1})")
    poses_from_rows(rows)  # checked before a model loads
    if scene is not None and not scene.is_file():
        raise GGIKError(f"--scene {scene}: file not found")
    model = find_model(model_path, robot_spec, refine, seeds)
    solver = Solver(robot_spec, base_link=base_link, ee_link=ee_link, model=model, max_iter=max_iter, pos_tol_mm=pos_tol_mm,
                    rot_tol_deg=rot_tol_deg, solved_mm=solved_mm, solved_deg=solved_deg, distinct_tol=distinct_tol,
                    threads=threads, time_budget_s=time_budget, collision=collision, scene=scene, package_dirs=package_dirs,
                    exclude_pairs=exclude_pairs, method=method)
    if rank is not None:
        parse_rank(rank, solver.robot)  # a bad ranking is reported before any note
    if solver.collision.note:
        stderr.print(solver.collision.note, soft_wrap=True)
    if solver.analytic is not None:
        stderr.print(f"note: method: closed-form branches ({solver.analytic.family}), LM where a goal has none inside the limits "
                     f"(--method lm: the LM only)", soft_wrap=True)
    elif model is None:
        stderr.print(f"note: seeds: refining {samples} configurations per goal drawn uniformly inside the joint limits "
                     f"(faster than learned seeds on a CPU; --seeds model seeds from the shipped model)")
    elif (line := model_note(model)) is not None:
        stderr.print(line, soft_wrap=True)
    res = solver.solve(np.array(rows, dtype=np.float64), k=samples, refine=refine, seed=seed, passes=passes, rank=rank)
    for line in [*res.notes, *goal_lines(res, solver), summary(res, solver)]:
        stderr.print(line, soft_wrap=True)
    if out is not None:
        write_solutions(res, out)
    if plot is not None:
        from pipeline.common.arm_figure import plot_frame

        plot_frame(solver.robot, res.to_frame(), plot_goal, plot)
        stderr.print(f"wrote {plot}")
    return res


def goal_lines(res: Result, solver: Solver) -> list[str]:
    """One line per goal that is out of reach or, refined, not solved (at most :data:`MAX_GOAL_LINES`)."""
    dist = distance_from_first_axis(solver.robot, res.goals)
    best = res.order()[:, 0]
    g_idx = np.arange(len(best))
    pos, rot = res.pos_err_mm[g_idx, best], res.rot_err_deg[g_idx, best]
    flagged = np.nonzero(res.out_of_reach | res.failed)[0]
    lines = []
    for g in flagged[:MAX_GOAL_LINES]:
        if res.out_of_reach[g]:
            lines.append(f"goal {g}: unreachable: its position is {dist[g]:.3f} m from the first joint's axis origin, beyond the arm's "
                         f"reach of {solver.reach:.3f} m; its best candidates are reported with their true errors")
        else:
            lines.append(f"goal {g}: not solved: no refined candidate within {solver.solved_mm:g} mm & {solver.solved_deg:g} deg inside the "
                         f"joint limits (best {pos[g]:.3g} mm, {rot[g]:.3g} deg); try more samples (-k) or --max-iter, or the pose "
                         f"may be out of the arm's workspace")
    if len(flagged) > MAX_GOAL_LINES:
        lines.append(f"... and {len(flagged) - MAX_GOAL_LINES} more goals unreachable or not solved (see the solved column)")
    return lines


def summary(res: Result, solver: Solver) -> str:
    """The last stderr line: solved goals, distinct solutions, candidates and time."""
    G, k, _ = res.q.shape
    solved = int(res.solved_goals.sum())
    distinct = int(res.distinct.sum())
    source = {("ggik", True): "GGIK samples + refinement", ("random", True): "random seeds + refinement",
              ("ggik", False): "raw GGIK samples"}[(res.seeds, res.refined)]
    if res.passes:
        source = source.replace("samples", f"samples re-encoded {res.passes}x")
    if res.analytic is not None:
        a = int(res.analytic.sum())
        source = "closed-form branches" + ("" if a == G else f" ({a}/{G} goals; random seeds + refinement for the rest)")
    per = f"{distinct / solved:.1f} per solved goal" if solved else "none"
    free = "" if res.free is None else (f", {int(res.free_goals.sum())}/{G} with a collision-free one "
                                        f"({solver.collision.mode} checked)")
    return (f"{res.robot}: {solved}/{G} goals solved (<= {solver.solved_mm:g} mm & {solver.solved_deg:g} deg, inside the limits){free}, "
            f"{distinct} distinct solutions ({per}); {G} x {k} candidates from {source} in {res.seconds:.2f} s")


def write_solutions(res: Result, out: Path) -> None:
    """CSV, JSON (records) or Parquet by the file's extension, written atomically."""
    suffix = out.suffix.lower()
    if suffix == ".csv":
        write_text(out, res.to_csv())
    elif suffix == ".json":
        write_text(out, res.to_frame().to_json(orient="records", indent=1))
    else:
        with atomic_path(out) as tmp:
            res.to_frame().to_parquet(tmp, index=False)
