"""`bench_seeds` on a tiny untrained model: rows, counts within bounds, equal-time accounting."""

from __future__ import annotations

import pytest
import torch

from ggik_core.errors import GGIKError
from ggik_core.model.cvae import GGIK, ModelConfig
from pipeline.bench_seeds import bench_seeds
from pipeline.train import save_model


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
    assert "# ggik bench seeds" in capsys.readouterr().out
    with pytest.raises(GGIKError):
        bench_seeds(tmp_path / "missing.pt", 2, 4, ["kuka"], 0)
