"""The speed benchmarks run and print what they time (no timing is asserted)."""

from __future__ import annotations

import pytest

from ggik_core.errors import GGIKError
from pipeline.bench import _variant, bench_overfit, bench_train


def test_bench_train_times_variants_side_by_side(capsys):
    bench_train(["egnn", "egat"], ["pyg", "dense", "dense-bf16 symmetric=true phi_x=linear full_layers=1"],
                batch_size=4, steps=1, rounds=1, dof=5, hidden=8, depth=2, device="cpu")
    out = capsys.readouterr().out
    assert out.count("egnn pyg") == 1 and out.count("egat dense ") == 1 and "graphs/s" in out
    assert "egat dense-bf16 symmetric=true" in out and "not applicable" in out  # symmetric is EGNN-only
    assert "x 1.00 vs pyg" in out


def test_variant_parsing():
    assert _variant("dense-bf16 phi_x=linear symmetric=true full_layers=1") == (
        "dense-bf16", {"phi_x": "linear", "symmetric": True, "full_layers": 1})
    with pytest.raises(GGIKError, match="unknown path"):
        _variant("sparse")
    with pytest.raises(GGIKError, match="KEY=VALUE"):
        _variant("dense widthh=3")


def test_bench_overfit_reduces_the_error(capsys):
    rms = bench_overfit("kuka", problems=4, steps=60, lr=3e-3, layer="egnn", overrides=["hidden=16", "layers=2"],
                        precision="fp32", seed=0, every=30)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "RMS" in ln]
    first = float(lines[0].split("RMS")[1].split("mm")[0])
    assert len(lines) == 2 and rms < first
