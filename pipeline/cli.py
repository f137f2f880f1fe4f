"""The `ggik` command line: one command per DVC stage, plus user commands."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from ggik_core.errors import GGIKError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True, help="Learned multi-solution inverse kinematics (GGIK).")
bench_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True, help="Speed benchmarks.")
app.add_typer(bench_app, name="bench")

PARAMS = typer.Option(Path("params.yaml"), "--params", help="Parameter file.")


@app.command()
def robots() -> None:
    """List the catalog arms: name, DOF, joint limits, whether consecutive axes are coplanar."""
    from rich.console import Console
    from rich.table import Table

    from ggik_core.catalog import ARM_NAMES, arm_description, load_arm

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
