"""The user commands: the robot catalog, ``solve``, ``plot``, ``compare`` and ``ship``. Their
options take the solver's defaults from :data:`ggik_core.solve.config.SOLVE`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ggik_core.errors import GGIKError
from ggik_core.solve.config import SOLVE, RefineConfig
from pipeline.common.options import PARAMS

commands = typer.Typer()


@commands.command()
def robots() -> None:
    """List the catalog arms: name, DOF, joint limits, whether consecutive axes are coplanar."""
    from rich.console import Console
    from rich.table import Table

    from ggik_core.robots.catalog import ARM_NAMES, arm_description, load_arm

    table = Table(title="ggik robot catalog")
    for col in ("name", "DOF", "coplanar", "axes", "limits (rad)", "description"):
        table.add_column(col)
    for name in ARM_NAMES:
        r = load_arm(name)
        limits = " ".join(f"[{lo:.3f},{hi:.3f}]" for lo, hi in zip(r.lower.tolist(), r.upper.tolist()))
        rel = "".join({"intersect": "I", "parallel": "P", "skew": "S"}[x] for x in r.axis_relations())
        table.add_row(name, str(r.dof), "yes" if r.coplanar else "no", rel, limits, arm_description(name))
    Console(width=200).print(table)


THREADS = typer.Option(SOLVE.threads, "--threads", help="CPU threads: torch's when a model is used (0: GGIK_THREADS, else the free cores); without one, the LM kernel's when given (default one).")


@commands.command()
def solve(
    robot: str = typer.Option(..., "--robot", help="Catalog name (ur10, kuka, lwa4d, lwa4p, panda), URDF file or DH YAML file."),
    goal: list[str] = typer.Option([], "--goal", help="'x y z qw qx qy qz' in metres and a unit quaternion (w first), base frame; repeatable."),
    goals: Optional[Path] = typer.Option(None, "--goals", help="CSV (comma-separated, header x,y,z,qw,qx,qy,qz) or Parquet file of goals."),
    samples: int = typer.Option(SOLVE.samples, "--samples", "-k", help="Candidates per goal."),
    model: Optional[Path] = typer.Option(None, "--model", help="Trained model file, e.g. data/model/model.pt after dvc repro (default: the model that ships with ggik: all-arms for the catalog arms, the generalist for other robots)."),
    seeds: str = typer.Option("auto", "--seeds", help="Where refinement starts: auto (random seeds, or the model given by --model), model (samples of the model) or random (uniform inside the limits)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write solutions to .csv, .parquet or .json (default: CSV on stdout)."),
    raw: bool = typer.Option(False, "--raw", help="Raw GGIK samples, not refined (needs a model)."),
    passes: Optional[int] = typer.Option(None, "--passes", help="Re-encode the model's samples this many times (each pass: joints recovered, that configuration encoded, its posterior mean decoded; about 2x a sampling pass each). Default: 2 with --raw, 0 before refinement."),
    refine: bool = typer.Option(True, "--refine/--no-refine", hidden=True, help="Kept for compatibility: --refine is the default, --no-refine means --raw."),
    max_iter: Optional[int] = typer.Option(None, "--max-iter", help=f"Levenberg-Marquardt iterations per candidate, re-seeds included (default: the library's, {RefineConfig.max_iter})."),
    tol_mm: float = typer.Option(SOLVE.pos_tol_mm, "--tol-mm", help="Refinement stops for a candidate within this position error (mm) ..."),
    tol_deg: float = typer.Option(SOLVE.rot_tol_deg, "--tol-deg", help="... and this rotation error (degrees)."),
    solved_mm: float = typer.Option(SOLVE.solved_mm, "--solved-mm", help="A candidate counts as solved within this position error (mm) ..."),
    solved_deg: float = typer.Option(SOLVE.solved_deg, "--solved-deg", help="... and this rotation error (degrees), inside the joint limits."),
    distinct_tol: float = typer.Option(SOLVE.distinct_tol, "--distinct-tol", help="Solved candidates closer than this (rad, largest joint difference) count once."),
    seed: int = typer.Option(SOLVE.seed, "--seed"),
    base_link: Optional[str] = typer.Option(None, "--base-link", help="URDF base link (default: the root)."),
    ee_link: Optional[str] = typer.Option(None, "--ee-link", help="URDF end-effector link (default: the single leaf)."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Draw the distinct solutions of one goal to a .png, .pdf or .svg file."),
    plot_goal: int = typer.Option(0, "--plot-goal", help="The goal id --plot draws."),
    threads: int = THREADS,
    time_budget: Optional[float] = typer.Option(None, "--time-budget", help="Seconds for the refinement (default: no limit, the iteration budget only). On the CPU kernel the goals go in chunks of 4 on one thread: a chunk started before the deadline runs to its iteration budget; the candidates of chunks that would start after it are returned as seeded, unrefined (their goals usually show as not solved). The batched loop (GPU) stops at the deadline with the best so far."),
    collision: str = typer.Option(SOLVE.collision, "--collision", help="auto (self, plus --scene, when the URDF has <collision> geometry and coal is installed), self, scene, all or off; colliding candidates are re-seeded."),
    scene: Optional[Path] = typer.Option(None, "--scene", help="Obstacles in the base frame: a YAML file (docs/solver.md)."),
    package_dir: list[Path] = typer.Option([], "--package-dir", help="Folder where the URDF's package:// meshes are looked up; repeatable."),
    exclude_pairs: Optional[str] = typer.Option(None, "--exclude-pairs", help="Link pairs never checked: 'linkA:linkB,linkC:linkD'."),
    rank: Optional[str] = typer.Option(None, "--rank", help="Order each goal's solutions by near:Q (radians, one per joint), margin (joint limits) or manipulability; the score is a column."),
    method: str = typer.Option(SOLVE.method, "--method", help="auto (closed-form branches for 6R arms that allow them, else the LM), analytic or lm."),
) -> None:
    """IK solutions for your robot: one row per candidate, errors computed by forward kinematics."""
    from pipeline.commands.solve import solve as run

    if time_budget is not None and not time_budget >= 0:
        raise GGIKError(f"--time-budget must be a non-negative number of seconds (got {time_budget})")
    res = run(robot, goal, goals, samples, model, out, refine=refine and not raw, seed=seed, base_link=base_link, ee_link=ee_link,
              max_iter=max_iter, pos_tol_mm=tol_mm, rot_tol_deg=tol_deg, solved_mm=solved_mm, solved_deg=solved_deg,
              distinct_tol=distinct_tol, plot=plot, plot_goal=plot_goal, threads=threads, time_budget=time_budget, seeds=seeds,
              passes=passes, collision=collision, scene=scene, package_dirs=package_dir, exclude_pairs=exclude_pairs, rank=rank,
              method=method)
    if out is None:
        typer.echo(res.to_csv(), nl=False)
    else:
        typer.echo(f"wrote {res.q.shape[0] * res.q.shape[1]} rows to {out}", err=True)


@commands.command()
def plot(
    solutions: Path = typer.Argument(..., help="Solutions written by `ggik solve --out` (.csv, .parquet or .json)."),
    robot: str = typer.Option(..., "--robot", help="The robot the solutions are for (as given to `ggik solve`)."),
    goal_id: int = typer.Option(0, "--goal-id", help="Which goal to draw."),
    out: Optional[Path] = typer.Option(None, "--out", help="Figure file: .png, .pdf or .svg (default: the solutions file as .png)."),
    base_link: Optional[str] = typer.Option(None, "--base-link", help="URDF base link (default: the root)."),
    ee_link: Optional[str] = typer.Option(None, "--ee-link", help="URDF end-effector link (default: the single leaf)."),
) -> None:
    """Draw the arm in each distinct solution of one goal, with the goal frame."""
    from pipeline.commands.plot import plot as run

    path = run(solutions, robot, goal_id, out, base_link, ee_link)
    typer.echo(f"wrote {path}", err=True)


@commands.command()
def compare(
    rev: Optional[list[str]] = typer.Option(None, "--rev", help="Experiment names or git revisions (repeatable; default: baseline and every experiment)."),
    repo: Path = typer.Option(Path("."), help="The DVC repository."),
    out: Path = typer.Option(Path("metrics/compare")),
) -> None:
    """Cross-model table and box plot from DVC experiments (the four-model study)."""
    from pipeline.commands.compare import compare as run

    for path in run(out, rev, repo):
        typer.echo(f"wrote {path}", err=True)


@commands.command()
def ship(
    name: str = typer.Argument(..., help="all_arms (used for the catalog arms) or generalist (every other robot)."),
    model: Path = typer.Option(Path("data/model/model.pt"), help="The trained model file."),
    params: Path = PARAMS,
    metrics: Path = typer.Option(Path("metrics"), help="The run's metrics folder (train/, kept by DVCLive, and eval_detail.json)."),
    preset: str = typer.Option("dvc repro", help="The command that reproduces the model (stored in its card)."),
    out_dir: Optional[Path] = typer.Option(None, "--out-dir", help="Default: the package's ggik_core/weights."),
) -> None:
    """Put a trained model into the package (ggik_core/weights/NAME.pt) with its params, training time and metrics."""
    from ggik_core.weights import SHIPPED, WEIGHTS_DIR
    from pipeline.commands.ship import ship as run

    if name not in SHIPPED:
        raise GGIKError(f"ship: name must be {' or '.join(SHIPPED)}, got {name!r}")
    typer.echo(f"wrote {run(name, model, params, metrics, preset, out_dir or WEIGHTS_DIR)} and its .json card", err=True)
