"""CVAE loss options."""

from __future__ import annotations

import torch

from ggik_core.data.batch import make_batch
from ggik_core.data.graph import build_problem_graphs
from ggik_core.data.problems import random_problems
from ggik_core.model.config import ModelConfig
from ggik_core.model.cvae import GGIK
from ggik_core.robots.random_robots import RandomRobotConfig


def _batch():
    pb = random_problems(6, 6, RandomRobotConfig(), torch.Generator().manual_seed(8))
    return make_batch(build_problem_graphs(pb.chain, pb.q, pb.goal), False)


def test_free_bits_clamp_the_kl_term_only_below_the_floor():
    b = _batch()
    torch.manual_seed(0)
    model = GGIK(ModelConfig(hidden=16, layers=2, latent=4, components=3))
    torch.manual_seed(1)
    plain = model(b, 1.0)
    torch.manual_seed(1)
    high = model(b, 1.0, free_bits=float(plain["kl"]) + 5.0)
    assert torch.equal(high["kl"], plain["kl"]) and torch.equal(high["rec"], plain["rec"])
    assert torch.allclose(high["total"], plain["rec"] + float(plain["kl"]) + 5.0)
    high["total"].backward()
    head = model.posterior_head[-1].weight.grad
    torch.manual_seed(1)
    model.zero_grad()
    model(b, 0.0)["total"].backward()  # beta = 0: the reconstruction gradient alone
    assert torch.allclose(head, model.posterior_head[-1].weight.grad)  # the clamped KL adds no gradient
    torch.manual_seed(1)
    low = model(b, 1.0, free_bits=float(plain["kl"]) - 0.5)
    assert torch.allclose(low["total"], plain["total"])
