"""`bench collide` on one arm with a tiny budget: every reported solution is exact and confirmed
collision free by Pinocchio."""

from __future__ import annotations

import pytest

pytest.importorskip("coal")
pytest.importorskip("pinocchio")

from pipeline.bench.collide import bench_arm, example_robot_data_dir  # noqa: E402


@pytest.mark.skipif(example_robot_data_dir() is None, reason="example-robot-data is not installed")
def test_bench_arm_ur5_smoke():
    pytest.importorskip("eaik")
    row = bench_arm("ur5", goals=2, k=4, budget_s=2.0, samples=200, check_configs=20)
    assert row["parts"] == 8 and row["self_pairs"] > 0 and row["scene_pairs"] > 0
    assert row["ggik_found"] == row["ggik_confirmed"] == row["ggik_exact"] <= row["target"]
    assert row["us_all"] > 0 and sorted(row["us_self_by_pairs"]) == list(row["us_self_by_pairs"])
    if "trac_found" in row:
        assert row["trac_found"] == row["trac_confirmed"] == row["trac_exact"]
