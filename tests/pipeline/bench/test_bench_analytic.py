"""`bench analytic` on one arm with a few goals, and the bench commands' one-line errors."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

pytest.importorskip("eaik")

from pipeline.bench.analytic import bench_arm  # noqa: E402


def test_bench_arm_ur10_finds_every_branch_in_closed_form():
    row = bench_arm("ur10", goals=3, k=8)
    assert row["branches"] >= 3 and row["analytic_coverage"] == 1.0
    assert 0 < row["lm_coverage"] <= 1.0 and row["analytic_distinct"] >= row["branches"] - 1
    assert row["analytic_per_s"] > 0 and row["lm_per_s"] > 0


@pytest.mark.parametrize("command", ["analytic", "collide"])
def test_unknown_arm_is_a_user_error(command):
    from ggik_core.errors import GGIKError
    from pipeline.bench.cli import bench_app

    res = CliRunner().invoke(bench_app, [command, "--arm", "nope"])
    assert isinstance(res.exception, GGIKError) and "unknown arm 'nope'" in str(res.exception)
