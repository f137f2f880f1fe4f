"""The `ggik` command line: one command per DVC stage, plus user commands."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Optional

import typer

from ggik_core.errors import GGIKError
from ggik_core.solve.config import SOLVE

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True, help="Learned multi-solution inverse kinematics (GGIK).")
bench_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True, help="Speed benchmarks.")
app.add_typer(bench_app, name="bench")

PARAMS = typer.Option(Path("params.yaml"), "--params", help="Parameter file.")


@app.command()
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


@app.command()
def generate(params: Path = PARAMS, out: Path = typer.Option(Path("data/problems.parquet"), help="Problem table.")) -> None:
    """Stage `generate`: random robots, configurations and goals to Parquet."""
    from pipeline.data import generate as run
    from pipeline.params import load_params

    n = run(load_params(params).data, out)
    typer.echo(f"wrote {n} problems to {out}", err=True)


@app.command("build-graphs")
def build_graphs(
    params: Path = PARAMS,
    problems: Path = typer.Option(Path("data/problems.parquet")),
    out: Path = typer.Option(Path("data/graphs")),
) -> None:
    """Stage `build_graphs`: distance-graph tensors as checked .pt shards per DOF bucket."""
    from pipeline.data import build_graphs as run
    from pipeline.params import load_params

    entries = run(problems, out, load_params(params).data.shard_size)
    typer.echo(f"wrote {len(entries)} shards ({sum(e['count'] for e in entries)} graphs) to {out}", err=True)


@app.command()
def train(
    params: Path = PARAMS,
    graphs: Path = typer.Option(Path("data/graphs")),
    out: Path = typer.Option(Path("data/model")),
    metrics: Path = typer.Option(Path("metrics")),
) -> None:
    """Stage `train`: fit the CVAE (resumes from out/checkpoint.pt when params and data match)."""
    from pipeline.params import load_params
    from pipeline.train import train as run

    res = run(load_params(params), graphs, out, metrics)
    typer.echo(f"trained {res['epochs']} epochs{'' if res['complete'] else ' (incomplete: run again to resume)'}", err=True)


@app.command()
def evaluate(
    params: Path = PARAMS,
    model: Path = typer.Option(Path("data/model/model.pt")),
    metrics: Path = typer.Option(Path("metrics")),
) -> None:
    """Stage `evaluate`: sample, recover, refine and score solutions on the five arms."""
    from pipeline.evaluate import evaluate as run
    from pipeline.params import load_params

    run(load_params(params).eval, model, metrics)


THREADS = typer.Option(SOLVE.threads, "--threads", help="CPU threads: torch's when a model is used (0: GGIK_THREADS, else the free cores); without one, the LM kernel's when given (default one).")


@app.command()
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
    max_iter: Optional[int] = typer.Option(None, "--max-iter", help="Levenberg-Marquardt iterations per candidate, re-seeds included (default: the library's, 200)."),
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
    time_budget: Optional[float] = typer.Option(None, "--time-budget", help="Stop re-seeding unconverged candidates after this many seconds and return the best so far (default: the iteration budget only)."),
) -> None:
    """IK solutions for your robot: one row per candidate, errors computed by forward kinematics."""
    from pipeline.solve import solve as run

    if time_budget is not None and not time_budget >= 0:
        raise GGIKError(f"--time-budget must be a non-negative number of seconds (got {time_budget})")
    res = run(robot, goal, goals, samples, model, out, refine=refine and not raw, seed=seed, base_link=base_link, ee_link=ee_link,
              max_iter=max_iter, pos_tol_mm=tol_mm, rot_tol_deg=tol_deg, solved_mm=solved_mm, solved_deg=solved_deg,
              distinct_tol=distinct_tol, plot=plot, plot_goal=plot_goal, threads=threads, time_budget=time_budget, seeds=seeds,
              passes=passes)
    if out is None:
        typer.echo(res.to_csv(), nl=False)
    else:
        typer.echo(f"wrote {res.q.shape[0] * res.q.shape[1]} rows to {out}", err=True)


@app.command()
def plot(
    solutions: Path = typer.Argument(..., help="Solutions written by `ggik solve --out` (.csv, .parquet or .json)."),
    robot: str = typer.Option(..., "--robot", help="The robot the solutions are for (as given to `ggik solve`)."),
    goal_id: int = typer.Option(0, "--goal-id", help="Which goal to draw."),
    out: Optional[Path] = typer.Option(None, "--out", help="Figure file: .png, .pdf or .svg (default: the solutions file as .png)."),
    base_link: Optional[str] = typer.Option(None, "--base-link", help="URDF base link (default: the root)."),
    ee_link: Optional[str] = typer.Option(None, "--ee-link", help="URDF end-effector link (default: the single leaf)."),
) -> None:
    """Draw the arm in each distinct solution of one goal, with the goal frame."""
    from ggik_core.robots.files import load_robot
    from pipeline.arm_figure import plot_frame, read_solutions

    path = out or solutions.with_suffix(".png")
    df = read_solutions(solutions)
    plot_frame(load_robot(robot, base_link=base_link, ee_link=ee_link), df, goal_id, path)
    typer.echo(f"wrote {path}", err=True)


@app.command()
def report(
    metrics: Path = typer.Option(Path("metrics"), help="Folder with train.json, train_loss.csv, eval.json, eval_samples.parquet."),
    out: Path = typer.Option(Path("metrics/report")),
) -> None:
    """Stage `report`: Markdown/CSV tables, box plots and loss curves."""
    from pipeline.report import report as run

    for path in run(metrics, out):
        typer.echo(f"wrote {path}", err=True)


@app.command()
def compare(
    rev: Optional[list[str]] = typer.Option(None, "--rev", help="Experiment names or git revisions (repeatable; default: baseline and every experiment)."),
    repo: Path = typer.Option(Path("."), help="The DVC repository."),
    out: Path = typer.Option(Path("metrics/compare")),
) -> None:
    """Cross-model table and box plot from DVC experiments (the four-model study)."""
    from pipeline.compare import compare as run

    for path in run(out, rev, repo):
        typer.echo(f"wrote {path}", err=True)


@app.command()
def ship(
    name: str = typer.Argument(..., help="all_arms (used for the catalog arms) or generalist (every other robot)."),
    model: Path = typer.Option(Path("data/model/model.pt"), help="The trained model file."),
    params: Path = PARAMS,
    metrics: Path = typer.Option(Path("metrics"), help="The run's train.json, train_loss.csv and eval.json."),
    preset: str = typer.Option("dvc repro", help="The command that reproduces the model (stored in its card)."),
    out_dir: Optional[Path] = typer.Option(None, "--out-dir", help="Default: the package's ggik_core/weights."),
) -> None:
    """Put a trained model into the package (ggik_core/weights/NAME.pt) with its params, training time and metrics."""
    from ggik_core.weights import SHIPPED, WEIGHTS_DIR
    from pipeline.ship import ship as run

    if name not in SHIPPED:
        raise GGIKError(f"ship: name must be {' or '.join(SHIPPED)}, got {name!r}")
    typer.echo(f"wrote {run(name, model, params, metrics, preset, out_dir or WEIGHTS_DIR)} and its .json card", err=True)


@bench_app.callback()
def bench_threads(threads: int = typer.Option(0, "--threads", help="Torch threads for every benchmark (0: GGIK_THREADS, else the free cores).")) -> None:
    """Speed benchmarks. They run with the thread count of training and solve (ggik_core.runtime), so
    a benchmark next to another process does not oversubscribe the cores."""
    from ggik_core.runtime import set_threads

    set_threads(threads)


@bench_app.command("data")
def bench_data(
    n: int = typer.Option(1_000_000, help="Problems to generate and build."),
    dof: int = typer.Option(7),
    chunk: int = typer.Option(100_000, help="Problems per vectorised batch."),
    write: Optional[Path] = typer.Option(None, help="Also write Parquet and shards under this folder."),
) -> None:
    """Problems per second for generate + graph build on this machine."""
    from pipeline.bench import bench_data as run

    run(n, dof, chunk, write)


@bench_app.command("train")
def bench_train(
    layer: list[str] = typer.Option(["egnn", "egat"], "--layer"),
    path: list[str] = typer.Option(["pyg", "dense"], "--path", help="A path (pyg | dense | dense-bf16 | dense-tf32 | dense-compile | dense-bf16-compile | dense-cudagraphs | dense-fused | dense-bf16-fused: the layers' fused CPU kernels, train.kernels=fused), optionally followed by model KEY=VALUE overrides, e.g. 'dense-bf16 phi_x=linear', and by procs=N (N data-parallel processes sharing the threads, CPU) and malloc=default (glibc's own allocator policy, as before ggik kept freed memory; in a process of its own); the first is the baseline."),
    batch_size: int = typer.Option(128),
    steps: int = typer.Option(5),
    rounds: int = typer.Option(3, help="Interleaved timing rounds; the median is reported."),
    dof: int = typer.Option(7),
    hidden: int = typer.Option(64),
    layers: int = typer.Option(3),
    device: Optional[str] = typer.Option(None, help="cpu or cuda (default: cuda when present)."),
    profile: bool = typer.Option(False, "--profile", help="Also each path's step time by operator family (matrix products, elementwise, ...) on the CPU."),
) -> None:
    """Training graphs per second for EGNN and EGAT, paths side by side (default sizes; the
    reference sizes are --hidden 128 --layers 5 --batch-size 512)."""
    from pipeline.bench import bench_train as run

    run(layer, path, batch_size, steps, rounds, dof, hidden, layers, device, profile)


@bench_app.command("sample")
def bench_sample(
    model: Optional[Path] = typer.Option(Path("data/model/model.pt"), help="Trained model (an untrained reference-size one when absent)."),
    robot: str = typer.Option("panda"),
    device: Optional[str] = typer.Option(None),
    repeats: int = typer.Option(3),
) -> None:
    """Wall time for 1, 32 and 1000 solutions of one goal, and 1000 goals x 32 solutions."""
    from pipeline.bench import bench_sample as run

    run(model, robot, device, repeats)


@bench_app.command("ik")
def bench_ik(
    model: Optional[Path] = typer.Option(Path("data/model/model.pt"), help="Trained model; when absent only the baselines run."),
    goals: int = typer.Option(100, help="Goals per arm."),
    samples: int = typer.Option(32, help="Candidates per goal, every method."),
    seed: int = typer.Option(0),
    out: Path = typer.Option(Path("metrics"), help="Folder for bench.json and bench.md."),
    max_iter: int = typer.Option(200, help="Iteration budget per candidate of our LM (re-seeds included) and iterations of pytorch-kinematics."),
    arm: Optional[list[str]] = typer.Option(None, "--arm", help="Repeat to choose arms (default: all five; 'none' for none)."),
    device: Optional[str] = typer.Option(None, help="cpu or cuda (default: cuda when present)."),
    urdf: list[str] = typer.Option([], "--urdf", help="Also bench a URDF chain: PATH:BASE_LINK:EE_LINK (repeat for more)."),
    rounds: int = typer.Option(1, help="Time the seeded methods (LM, pytorch-kinematics, TRAC-IK) this many times per robot and keep the median run."),
    lm_backend: str = typer.Option("auto", "--lm-backend", help="Our LM: auto (the compiled kernel on a CPU), kernel, or torch (the batched loop it replaced)."),
) -> None:
    """GGIK raw / + LM vs random-seed LM, pytorch-kinematics and TRAC-IK on the five arms (and URDF chains)."""
    from pipeline.bench_ik import bench_ik as run

    arms = [] if arm and [a.lower() for a in arm] == ["none"] else arm
    run(model if model is not None and model.exists() else None, goals, samples, seed, out, max_iter, arms, device, urdf, rounds,
        lm_backend)


@bench_app.command("overfit")
def bench_overfit(
    robot: str = typer.Option("kuka", help="Catalog name, URDF or DH file."),
    problems: int = typer.Option(64),
    steps: int = typer.Option(3000),
    lr: float = typer.Option(3e-3, help="Peak of the one-cycle schedule."),
    layer: str = typer.Option("egnn"),
    set_: list[str] = typer.Option([], "--set", help="Model KEY=VALUE overrides, e.g. --set symmetric=true."),
    precision: str = typer.Option("fp32", help="fp32 | tf32 | bf16"),
    seed: int = typer.Option(0),
    every: int = typer.Option(250, help="Steps between reports."),
    batch: int = typer.Option(0, help="Problems per step (0: all of them)."),
    mean: bool = typer.Option(False, "--mean/--sample", help="Train on the posterior mean (--mean) or on reparameterised samples."),
) -> None:
    """Memorise a batch of one arm's problems through the posterior; prints the unknown-node RMS in mm."""
    from pipeline.bench import bench_overfit as run

    run(robot, problems, steps, lr, layer, set_, precision, seed, every, batch, mean)


@bench_app.command("learn")
def bench_learn(
    robot: str = typer.Option("kuka", help="Catalog name, URDF or DH file."),
    problems: int = typer.Option(100_000, help="Problems generated; the last 256 are held out of training."),
    steps: int = typer.Option(1500),
    batch: int = typer.Option(128, help="Graphs per step."),
    lr: float = typer.Option(2e-3, help="Peak lr (5 % warm-up, then cosine to 0)."),
    beta: float = typer.Option(1.0),
    beta_start: float = typer.Option(0.0, help=">0: beta rises geometrically from this value (0: linearly from 0)."),
    warm: float = typer.Option(0.2, help="Share of the steps over which beta reaches its value."),
    set_: list[str] = typer.Option([], "--set", help="Model KEY=VALUE overrides, e.g. --set latent_scope=graph."),
    every: int = typer.Option(300, help="Steps between reports."),
    consistency: float = typer.Option(0.0, help="Weight of the prior-consistency term (train.consistency)."),
) -> None:
    """A learning lever at a fixed budget on one arm: raw and best-of-32 accuracy as it trains."""
    from pipeline.bench_learn import bench_learn as run

    run(robot, problems, steps, batch, lr, beta, beta_start, warm, set_, every, consistency=consistency)


@bench_app.command("gap")
def bench_gap(
    model: Path = typer.Option(..., help="Trained model file."),
    robot: str = typer.Option("kuka", help="Catalog name, URDF or DH file."),
    goals: int = typer.Option(200),
    samples: int = typer.Option(32),
    seed: int = typer.Option(7),
    passes: int = typer.Option(2, help="Re-encoding passes for the last line."),
    relax: float = typer.Option(1.0, help="Over-relaxation of the passes after the first (1: the plain chain)."),
) -> None:
    """Raw error from the prior against the posterior mean (what limits the raw samples), and the
    same prior samples re-encoded."""
    from pipeline.bench import bench_gap as run

    if not model.is_file():
        raise GGIKError(f"model {model} not found")
    if goals < 1 or samples < 1 or passes < 0 or not (math.isfinite(relax) and relax > 0):
        raise GGIKError("--goals and --samples must be at least 1, --passes at least 0, --relax positive")
    run(model, robot, goals, samples, seed, passes, relax)


@bench_app.command("startup")
def bench_startup(
    runs: int = typer.Option(5, help="Interleaved rounds; medians are reported."),
    robot: str = typer.Option("kuka"),
    goal: str = typer.Option("0.4 0.1 0.5 0 1 0 0", help="'x y z qw qx qy qz'."),
) -> None:
    """Start-up of `ggik solve`: whole processes timed next to a bare `import torch`."""
    from pipeline.bench import bench_startup as run

    if runs < 1:
        raise GGIKError("--runs must be at least 1")
    run(runs, robot, goal)


@bench_app.command("seeds")
def bench_seeds(
    model: Path = typer.Option(Path("data/model/model.pt"), help="Trained model."),
    goals: int = typer.Option(20, help="Goals per arm."),
    samples: int = typer.Option(32, help="Candidates per goal."),
    arm: Optional[list[str]] = typer.Option(None, "--arm", help="Repeat to choose arms (default: all five)."),
    seed: int = typer.Option(0),
    distinct_k: int = typer.Option(4, "--distinct-k", help="K of the time-to-K-distinct-solutions column."),
    limit: float = typer.Option(10.0, "--limit", help="Seconds per arm and seed kind at most for the time to K distinct."),
) -> None:
    """Model-seeded vs random-seeded refinement at equal wall time (CPU), and the time to K distinct solutions."""
    from pipeline.bench_seeds import bench_seeds as run

    if distinct_k < 1 or not limit > 0:
        raise GGIKError("--distinct-k must be at least 1 and --limit positive")
    run(model, goals, samples, arm, seed, distinct_k, limit)


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2."""
    try:
        app()
    except GGIKError as exc:
        typer.echo(f"ggik: error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("ggik: interrupted", err=True)
        sys.exit(130)
