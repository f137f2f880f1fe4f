"""The weight average (``train.ema``): its update, what a run saves, resumption, and that it leaves
training alone."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from ggik_core.errors import GGIKError
from ggik_core.model.cvae import GGIK, ModelConfig
from pipeline.stages.data_params import DataParams
from pipeline.stages.params import Params
from pipeline.stages.train.ema import WeightAverage
from pipeline.stages.train.loop import train
from pipeline.stages.train.params import ModelParams, TrainParams, train_params

TINY = Params(
    data=DataParams(n_problems=64, dofs=(6,)),
    model=ModelParams(hidden=16, layers=2, latent=4, components=3, message=16),
    train=TrainParams(epochs=2, batch_size=16, beta_warmup_epochs=1, num_threads=1, probes=0, lr_schedule="step", ema=0.9),
)


@pytest.fixture(scope="module")
def graphs(make_graphs) -> Path:
    return make_graphs(TINY.data)


def _states(root: Path) -> tuple[dict, dict]:
    """(model.pt's weights, the checkpoint)."""
    model = torch.load(root / "model" / "model.pt", weights_only=True)["model"]
    ckpt = torch.load(root / "model" / "checkpoint.pt", weights_only=False)
    return model, ckpt


def test_the_average_follows_its_formula():
    torch.manual_seed(0)
    model = GGIK(ModelConfig(hidden=8, layers=1, latent=2, components=2, message=8))
    avg = WeightAverage(model, 0.9, "eager")
    expected = {n: p.detach().clone() for n, p in model.named_parameters()}
    for t in (1, 2, 3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        avg.update()
        d = min(0.9, (1 + t) / (10 + t))
        for n, p in model.named_parameters():
            expected[n] = d * expected[n] + (1 - d) * p.detach()
    got = dict(avg.module.named_parameters())
    for n, e in expected.items():
        torch.testing.assert_close(got[n].detach(), e, rtol=1e-6, atol=1e-6)
    # the trained model is not touched, and the average is not the trained weights
    assert not all(torch.equal(got[n], p) for n, p in model.named_parameters())


def test_a_run_saves_the_average_keeps_the_trained_weights_and_trains_as_without_it(graphs, tmp_path):
    train(TINY, graphs, tmp_path / "ema" / "model", tmp_path / "ema" / "metrics")
    off = replace(TINY, train=replace(TINY.train, ema=0.0))
    train(off, graphs, tmp_path / "off" / "model", tmp_path / "off" / "metrics")
    shipped, ckpt = _states(tmp_path / "ema")
    assert all(torch.equal(shipped[k], ckpt["ema"]["model"][k]) for k in shipped)
    assert not all(torch.equal(shipped[k], ckpt["model"][k]) for k in shipped)
    # the average only watches: the trained weights are those of the same run without it
    plain, ckpt_off = _states(tmp_path / "off")
    assert "ema" not in ckpt_off
    assert all(torch.equal(ckpt["model"][k], plain[k]) for k in plain)


def test_a_resumed_run_ends_with_the_same_average(graphs, tmp_path):
    three = replace(TINY, train=replace(TINY.train, epochs=3))
    train(three, graphs, tmp_path / "straight" / "model", tmp_path / "straight" / "metrics")
    train(TINY, graphs, tmp_path / "chunked" / "model", tmp_path / "chunked" / "metrics")  # 2 epochs, then more
    train(three, graphs, tmp_path / "chunked" / "model", tmp_path / "chunked" / "metrics")
    a, ca = _states(tmp_path / "straight")
    b, cb = _states(tmp_path / "chunked")
    assert ca["ema"]["steps"] == cb["ema"]["steps"] > 0
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("value", [1.0, -0.1, float("nan")])
def test_an_average_decay_outside_0_1_is_refused(value):
    with pytest.raises(GGIKError, match=r"train\.ema must be in \[0, 1\)"):
        train_params({"ema": value})
