"""``ggik bench``: the speed benchmarks and baselines (no DVC stage runs them)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer

from ggik_core.errors import GGIKError

bench_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True, help="Speed benchmarks.")


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
    from pipeline.bench.speed import bench_data as run

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
    from pipeline.bench.speed import bench_train as run

    run(layer, path, batch_size, steps, rounds, dof, hidden, layers, device, profile)


@bench_app.command("sample")
def bench_sample(
    model: Optional[Path] = typer.Option(Path("data/model/model.pt"), help="Trained model (an untrained reference-size one when absent)."),
    robot: str = typer.Option("panda"),
    device: Optional[str] = typer.Option(None),
    repeats: int = typer.Option(3),
    shape: list[str] = typer.Option(["1x1", "1x32", "1x1000", "1000x32"], "--shape", help="GOALSxSOLUTIONS (repeatable)."),
    set_: list[str] = typer.Option([], "--set", help="Time an untrained model of the default config with these KEY=VALUE overrides instead (timing does not depend on the weights), e.g. --set full_layers=1."),
) -> None:
    """Wall time of one-pass and re-encoded sampling, today's eager path beside the fused inference kernels."""
    from ggik_core.errors import GGIKError
    from pipeline.bench.speed import bench_sample as run
    from pipeline.bench.train_paths import variant

    try:
        shapes = [tuple(int(v) for v in s.lower().split("x")) for s in shape]
    except ValueError:
        raise GGIKError(f"--shape takes GOALSxSOLUTIONS, e.g. 1x1000 (got {' '.join(shape)})") from None
    if any(len(s) != 2 or min(s) < 1 for s in shapes):
        raise GGIKError(f"--shape takes GOALSxSOLUTIONS of positive counts (got {' '.join(shape)})")
    overrides = variant(" ".join(["dense", *set_]), "--set")[1] if set_ else None
    run(model, robot, device, repeats, shapes, overrides)


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
    from pipeline.bench.ik import bench_ik as run

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
    from pipeline.bench.speed import bench_overfit as run

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
    from pipeline.bench.learn import bench_learn as run

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
    from pipeline.bench.speed import bench_gap as run

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
    from pipeline.bench.speed import bench_startup as run

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
    from pipeline.bench.seeds import bench_seeds as run

    if distinct_k < 1 or not limit > 0:
        raise GGIKError("--distinct-k must be at least 1 and --limit positive")
    run(model, goals, samples, arm, seed, distinct_k, limit)


@bench_app.command("curve")
def bench_curve(
    run: Path = typer.Argument(..., help="A long run's folder (docs/runs/<name>): probes and stamped chunk evaluations."),
    model_dir: Optional[Path] = typer.Option(None, "--record", help="First record a finished chunk: the training --out folder (checkpoint.pt, model.pt) ..."),
    eval_dir: Optional[Path] = typer.Option(None, "--eval", help="... and the `ggik evaluate --metrics` folder of its model.pt."),
    out: Optional[Path] = typer.Option(None, help="Figure path (default <run>/curve.png)."),
) -> None:
    """A long run against training hours: raw and re-encoded medians per arm on log-log axes beside
    the extrapolation and 2× GGIK (<run>/curve.png), and every chunk against the targets (<run>/chunks.md)."""
    from pipeline.bench.curve import record_chunk, report

    if (model_dir is None) != (eval_dir is None):
        raise GGIKError("--record and --eval go together: the chunk's training folder and its evaluation folder")
    if not run.is_dir():
        raise GGIKError(f"{run} is not a folder")
    if model_dir is not None:
        for path in (model_dir / "checkpoint.pt", model_dir / "model.pt", eval_dir / "eval_detail.json"):
            if not path.is_file():
                raise GGIKError(f"missing file {path}")
        typer.echo(f"recorded chunk {record_chunk(run, model_dir, eval_dir)} in {run}", err=True)
    typer.echo(report(run, out), nl=False)


def _print_rows(rows: list) -> None:
    import json

    for row in rows:
        typer.echo(json.dumps({key: round(v, 3) if isinstance(v, float) else v for key, v in row.items()}))


@bench_app.command("collide")
def bench_collide(
    arm: list[str] = typer.Option(["panda", "ur5", "xarm7", "baxter_right"], "--arm", help="example-robot-data arms (pipeline/bench/collide.py ARMS); repeatable."),
    goals: int = typer.Option(5, help="Goals per arm."),
    k: int = typer.Option(8, "-k", help="Collision-free solutions wanted per goal."),
    budget_s: float = typer.Option(5.0, "--budget-s", help="Seconds per method and arm."),
    samples: int = typer.Option(1000, help="Random configurations that select the checked link pairs."),
) -> None:
    """Collision check cost and collision-free solutions per second (ggik vs TRAC-IK), tabletop scene,
    every free solution confirmed by Pinocchio; one JSON line per arm."""
    from pipeline.bench.collide import ARMS, bench_collide as run

    unknown = [a for a in arm if a not in ARMS]
    if unknown:
        raise GGIKError(f"bench collide: unknown arm {unknown[0]!r} (one of {', '.join(ARMS)})")
    try:
        _print_rows(run(arm, goals, k, budget_s, samples))
    except RuntimeError as exc:
        raise GGIKError(f"bench collide: {exc}") from None


@bench_app.command("analytic")
def bench_analytic(
    arm: list[str] = typer.Option(["ur10", "lwa4p", "ur5_erd", "ur10_erd", "kinova_erd", "z1_erd"], "--arm", help="Arms of pipeline/bench/analytic.py ARMS; repeatable."),
    goals: int = typer.Option(20, help="Goals per arm (FK of random configurations)."),
    k: int = typer.Option(32, "-k", help="Seeds per goal for the LM and TRAC-IK."),
    seed: int = typer.Option(0),
) -> None:
    """Closed-form branches vs the LM vs TRAC-IK on 6R arms: exact distinct solutions per second and
    branch coverage; one JSON line per arm."""
    from pipeline.bench.analytic import ARMS, bench_analytic as run

    unknown = [a for a in arm if a not in ARMS]
    if unknown:
        raise GGIKError(f"bench analytic: unknown arm {unknown[0]!r} (one of {', '.join(ARMS)})")
    _print_rows(run(arm, goals, k, seed))
