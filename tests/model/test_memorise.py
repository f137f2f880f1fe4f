"""Gate a of the learning issue: the CVAE memorises 64 KUKA iiwa problems through the posterior to
under 2 mm RMS on the unknown nodes, with EGNN layers. (EGAT layers do not get there in CI time
yet: 3.2 mm after 5,000 steps at width 64, 3.5 mm after 6,000 at width 32; docs/ablation.md.)

The setting is the one ``docs/ablation.md`` ("Memorising a batch") found cheapest: the default
width (64), the depth spent on the decoder (partial-graph encoder 2 layers, full-graph encoder 1,
decoder 6), minibatches of 16 of the 64 problems, the posterior mean decoded (β = 0), a one-cycle lr
peaking at 5e-3: 1.30 mm after 5,000 steps in 409 s on one thread. This is the slowest test of the
suite (5,000 steps, about 5 minutes on 2 cores); the same run is a ``ggik bench overfit``
command in docs/ablation.md.
"""

from __future__ import annotations

import pytest

from pipeline.bench import bench_overfit

DECODER_HEAVY = ["hidden=64", "layers=3", "partial_layers=2", "full_layers=1", "decoder_layers=6"]


def test_egnn_memorises_64_problems_to_under_2_mm(capsys):
    rms = bench_overfit("kuka", problems=64, steps=5000, lr=5e-3, layer="egnn", overrides=DECODER_HEAVY, precision="fp32",
                        seed=0, every=1000, batch=16, mean=True)
    assert rms < 2.0, capsys.readouterr().out
