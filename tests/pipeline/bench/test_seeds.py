"""`bench_seeds` on a tiny untrained model: rows, counts within bounds, equal-time accounting."""

from __future__ import annotations

import pytest
import torch

from ggik_core.errors import GGIKError
from ggik_core.model.cvae import GGIK, ModelConfig
from pipeline.bench.seeds import bench_seeds
from ggik_core.model.files import save_model


def test_bench_seeds_rows(tmp_path, capsys):
    torch.manual_seed(0)
    cfg = ModelConfig(hidden=16, layers=2, latent=4, components=3)
    path = tmp_path / "model.pt"
    save_model(GGIK(cfg), cfg, [], path)
    rows = bench_seeds(path, 2, 4, ["kuka"], 0)
    assert [r["arm"] for r in rows] == ["kuka"]
    r = rows[0]
    assert r["wall_s"] > 0 and r["random_batches"] >= 1
    assert 0 <= r["model_distinct"] <= r["model_exact"] <= 2 * 4
    assert r["random_exact"] <= r["random_batches"] * 2 * 4
    assert 0.0 <= r["model_seeds_one_pass"] <= 1.0 and 0.0 <= r["random_seeds_one_pass"] <= 1.0
    assert r["k_distinct"] == 4 and 0.0 <= r["model_goals_with_k"] <= 1.0 and r["random_goals_with_k"] == 1.0
    assert 0 < r["random_time_to_k_s"] < 10.0 and 0 < r["model_time_to_k_s"] < 15.0  # the iiwa has many solutions
    assert "time to 4 distinct" in capsys.readouterr().out
    with pytest.raises(GGIKError):
        bench_seeds(tmp_path / "missing.pt", 2, 4, ["kuka"], 0)


def test_time_to_k_distinct_accumulates_distinct_solutions_over_batches():
    from ggik_core.solve.solver import Solutions
    from pipeline.bench.seeds import time_to_k_distinct

    def batch(i: int) -> Solutions:  # goal 0 gets one new distinct exact solution per batch, goal 1 none
        q = torch.full((2, 1, 3), float(i))
        pos = torch.tensor([[0.0], [1.0]])
        return Solutions(q=q, pos_err=pos, rot_err=torch.zeros(2, 1), within_limits=torch.ones(2, 1, dtype=torch.bool), seconds=0.0)

    seconds, share, batches = time_to_k_distinct(batch, 3, limit_s=0.2)
    assert share == 0.5 and batches > 3 and seconds >= 0.2
    seconds, share, batches = time_to_k_distinct(batch, 1, limit_s=0.3)
    assert share == 0.5  # goal 1 never gets one: the limit ends it
