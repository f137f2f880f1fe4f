"""Accuracy probes: which robots they sample, and their schedule."""

from __future__ import annotations

import pytest
import torch

from ggik_core.model.config import ModelConfig
from ggik_core.model.cvae import GGIK
from pipeline.stages.probe import Probe, probe_steps


def test_probe_steps_are_evenly_spaced_and_end_at_the_last_step():
    assert probe_steps(100, 4) == {25, 50, 75, 100}
    assert probe_steps(3, 10) == {1, 2, 3}
    assert probe_steps(100, 0) == set() and probe_steps(0, 3) == set()


def test_probes_sample_the_training_robots_else_the_arms_of_the_trained_dofs():
    assert list(Probe.on_robots(2, ["kuka"]).goals) == ["kuka"]
    assert list(Probe.on_robots(2, (), {6}).goals) == ["ur10", "lwa4p"]
    probe = Probe.on_robots(3, ("KUKA", "panda"), {7})
    assert list(probe.goals) == ["kuka", "panda"]
    assert probe.columns[-4:] == ["kuka_raw_mm", "panda_raw_mm", "kuka_best_mm", "panda_best_mm"]
    torch.manual_seed(0)
    row = probe(GGIK(ModelConfig(hidden=16, layers=2, latent=4, components=3)))
    assert set(row) == set(probe.columns[4:]) and all(v > 0 for v in row.values())
    assert row["best_of_k_mm"] <= row["raw_median_mm"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_probes_run_on_a_cuda_model():
    """The probe's sampling generator lives on the model's device (a CPU one stopped the first GPU run)."""
    probe = Probe.on_robots(40, ["kuka"])
    torch.manual_seed(0)
    model = GGIK(ModelConfig(hidden=16, layers=2, latent=4, components=3))
    cpu = probe(model)
    row = probe(model.cuda())
    assert row["kuka_best_mm"] <= row["kuka_raw_mm"]
    # the same weights on either device: the same error distribution (the random streams differ,
    # so medians of 40 goals' samples agree to within sampling noise, not exactly)
    for key in ("kuka_raw_mm", "kuka_best_mm", "raw_median_mm", "best_of_k_mm"):
        assert 0.75 < row[key] / cpu[key] < 1.33, (key, row[key], cpu[key])
