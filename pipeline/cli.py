"""The `ggik` command line: one command per DVC stage (:mod:`pipeline.stages.cli`), the user
commands (:mod:`pipeline.commands.cli`) and ``ggik bench`` (:mod:`pipeline.bench.cli`)."""

from __future__ import annotations

import sys

import typer

from ggik_core.errors import GGIKError
from pipeline.bench.cli import bench_app
from pipeline.commands.cli import commands
from pipeline.stages.cli import stages

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True, help="Learned multi-solution inverse kinematics (GGIK).")

#: the commands in the order ``ggik --help`` lists them
ORDER = ("robots", "generate", "build-graphs", "train", "evaluate", "solve", "plot", "report", "compare", "ship")


def command_name(info: typer.models.CommandInfo) -> str:
    """The name a registered command is called by."""
    return info.name or info.callback.__name__.replace("_", "-")


_registered = {command_name(c): c for c in (*stages.registered_commands, *commands.registered_commands)}
assert set(_registered) == set(ORDER), sorted(_registered)
app.registered_commands.extend(_registered[name] for name in ORDER)
app.add_typer(bench_app, name="bench")


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
