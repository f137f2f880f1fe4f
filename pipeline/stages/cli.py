"""The commands of the DVC stages (``dvc.yaml`` runs ``python -m pipeline <stage>``); each reads
only its own sections of ``params.yaml``."""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.common.options import PARAMS

stages = typer.Typer()


@stages.command()
def generate(params: Path = PARAMS, out: Path = typer.Option(Path("data/problems.parquet"), help="Problem table.")) -> None:
    """Stage `generate`: random robots, configurations and goals to Parquet."""
    from pipeline.stages.data import generate as run
    from pipeline.stages.data_params import load_data_params

    n = run(load_data_params(params), out)
    typer.echo(f"wrote {n} problems to {out}", err=True)


@stages.command("build-graphs")
def build_graphs(
    params: Path = PARAMS,
    problems: Path = typer.Option(Path("data/problems.parquet")),
    out: Path = typer.Option(Path("data/graphs")),
) -> None:
    """Stage `build_graphs`: distance-graph tensors as checked .pt shards per DOF bucket."""
    from pipeline.stages.data import build_graphs as run
    from pipeline.stages.data_params import load_data_params

    entries = run(problems, out, load_data_params(params).shard_size)
    typer.echo(f"wrote {len(entries)} shards ({sum(e['count'] for e in entries)} graphs) to {out}", err=True)


@stages.command()
def train(
    params: Path = PARAMS,
    graphs: Path = typer.Option(Path("data/graphs")),
    out: Path = typer.Option(Path("data/model")),
    metrics: Path = typer.Option(Path("metrics")),
) -> None:
    """Stage `train`: fit the CVAE (resumes from out/checkpoint.pt when params and data match)."""
    from pipeline.stages.train.loop import train as run
    from pipeline.stages.train.params import load_training_params

    res = run(load_training_params(params), graphs, out, metrics)
    typer.echo(f"trained {res['epochs']} epochs{'' if res['complete'] else ' (incomplete: run again to resume)'}", err=True)


@stages.command()
def evaluate(
    params: Path = PARAMS,
    model: Path = typer.Option(Path("data/model/model.pt")),
    metrics: Path = typer.Option(Path("metrics")),
) -> None:
    """Stage `evaluate`: sample, recover, refine and score solutions on the five arms."""
    from pipeline.stages.eval_params import load_eval_params
    from pipeline.stages.evaluate import evaluate as run

    run(load_eval_params(params), model, metrics)


@stages.command()
def report(
    metrics: Path = typer.Option(Path("metrics"), help="Folder with the training record (train/, kept by DVCLive), eval_detail.json, eval_samples.parquet."),
    out: Path = typer.Option(Path("metrics/report")),
) -> None:
    """Stage `report`: Markdown/CSV tables, box plots and loss curves."""
    from pipeline.stages.report import report as run

    for path in run(metrics, out):
        typer.echo(f"wrote {path}", err=True)
