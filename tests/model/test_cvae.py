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
    return make_batch(build_problem_graphs(pb.chain, pb.q, pb.goal), ModelConfig())


def _plain_loss() -> tuple:
    """A batch, a tiny model and its plain loss (β = 1), the sampling noise seeded: call
    ``torch.manual_seed(1)`` before a second call to draw the same noise."""
    b = _batch()
    torch.manual_seed(0)
    model = GGIK(ModelConfig(hidden=16, layers=2, latent=4, components=3))
    torch.manual_seed(1)
    return b, model, model(b, 1.0)


def test_free_bits_clamp_the_kl_term_only_below_the_floor():
    b, model, plain = _plain_loss()
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


def test_a_graph_latent_gives_every_node_of_a_sample_the_same_z():
    b = make_batch(build_problem_graphs(*_problems()), ModelConfig(), dtype=torch.float64)
    torch.manual_seed(0)
    model = GGIK(ModelConfig(hidden=16, layers=2, latent=4, components=3, latent_scope="graph")).double()
    seen = []
    model.embed_dec.register_forward_hook(lambda mod, inp, out: seen.append(inp[0]))
    bp = make_batch(build_problem_graphs(*_problems()), ModelConfig(), with_answer=False, dtype=torch.float64)
    x = model.sample(bp, 5, generator=torch.Generator().manual_seed(2))
    assert x.shape == (bp.num_graphs, 5, bp.nodes_per_graph, 3)
    z = seen[-1][:, :4].reshape(bp.num_graphs, 5, bp.nodes_per_graph, 4)
    assert torch.equal(z, z[:, :, :1].expand_as(z))  # one z per (goal, sample), on all of its nodes
    assert not torch.allclose(z[:, 0], z[:, 1])  # and a different one per sample
    out = model(b, 1.0)
    mu, _ = model.posterior(b, model.encode_partial(b)[0])
    assert mu.shape == (b.num_graphs, 4) and torch.isfinite(out["total"]) and float(out["kl"]) > 0


def _problems():
    pb = random_problems(3, 6, RandomRobotConfig(), torch.Generator().manual_seed(9))
    return pb.chain, pb.q, pb.goal


def test_posterior_mean_decoding_is_deterministic_and_matches_the_decoder():
    b = _batch()
    torch.manual_seed(0)
    model = GGIK(ModelConfig(hidden=16, layers=2, latent=4, components=3))
    a, c = model(b, 0.0, sample=False), model(b, 0.0, sample=False)
    assert torch.equal(a["rec"], c["rec"])
    assert not torch.equal(model(b, 0.0)["rec"], model(b, 0.0)["rec"])  # reparameterised samples differ
    with torch.no_grad():
        h_p, x_p = model.encode_partial(b)
        mu, _ = model.posterior(b, h_p)
        N = b.nodes_per_graph
        w = torch.where(b.anchor, 1.0, 10.0)
        rec = (w * (model.decode(mu, h_p, x_p, b) - b.x).pow(2).sum(-1)).reshape(b.num_graphs, N).sum(-1).mean() / N
    torch.testing.assert_close(a["rec"].detach(), rec)


def test_consistency_residual_is_zero_on_true_positions_and_grows_with_errors():
    from ggik_core.model.cvae import consistency_residual

    b = make_batch(build_problem_graphs(*_problems()), ModelConfig(), dtype=torch.float64)
    exact = consistency_residual(b.x, b, 1.0, 10.0)
    assert exact.shape == (b.num_graphs,) and float(exact.max()) < 1e-10
    moved = b.x.clone()
    unknown = torch.nonzero(~b.anchor)[0, 0]
    moved[unknown, 0] += 0.01  # one unknown node 1 cm off
    bad = consistency_residual(moved, b, 1.0, 10.0)
    assert float(bad[0]) > 1e-5 and float(bad[1:].max()) < 1e-10  # only its graph pays
    moved = b.x.clone()
    moved[torch.nonzero(b.anchor)[0, 0], 2] += 0.01  # an anchor 1 cm off: the anchor term too
    assert float(consistency_residual(moved, b, 1.0, 10.0)[0]) > float(consistency_residual(moved, b, 0.0, 10.0)[0]) > 0


def test_prior_consistency_trains_the_decoder_and_not_the_prior():
    b, model, plain = _plain_loss()
    torch.manual_seed(1)
    out = model(b, 1.0, consistency=2.0)
    assert float(out["cons"]) > 0
    torch.testing.assert_close(out["total"], plain["total"] + 2.0 * out["cons"])
    model.zero_grad()
    out["cons"].backward()
    assert model.prior_head[-1].weight.grad is None or float(model.prior_head[-1].weight.grad.abs().max()) == 0.0
    grads = [p.grad for p in model.decoder.parameters() if p.grad is not None]
    assert grads and max(float(g.abs().max()) for g in grads) > 0


def test_a_graph_mixture_gives_every_node_of_a_sample_the_same_component():
    """``prior_mixture="graph"``: with components far apart, every node of one draw takes the same
    component, different draws different ones; the log-density is the brute-force mixture over
    whole graphs, and the loss trains."""
    from ggik_core.model.cvae import shared_mixture_logpdf, shared_prior_sample

    B, N, K, D = 3, 5, 4, 2
    logits = torch.zeros(B * N, K, dtype=torch.float64)
    mu = (100.0 * torch.arange(K, dtype=torch.float64))[None, :, None].expand(B * N, K, D).clone()
    log_sigma = torch.full((B * N, K, D), -9.0, dtype=torch.float64)
    z = shared_prior_sample(logits, mu, log_sigma, B, 16, torch.Generator().manual_seed(0))  # (B*N, 16, D)
    comp = (z[..., 0] / 100.0).round().reshape(B, N, 16)
    assert torch.equal(comp, comp[:, :1].expand_as(comp))  # one component per (graph, draw)
    assert len(comp.unique()) > 1
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(B * N, K, generator=gen, dtype=torch.float64)
    mu = torch.randn(B * N, K, D, generator=gen, dtype=torch.float64)
    log_sigma = 0.3 * torch.randn(B * N, K, D, generator=gen, dtype=torch.float64)
    zz = torch.randn(B * N, D, generator=gen, dtype=torch.float64)
    pi = torch.softmax(logits.reshape(B, N, K).mean(1), -1)
    dens = torch.distributions.Normal(mu, log_sigma.exp()).log_prob(zz[:, None, :]).sum(-1).reshape(B, N, K).sum(1).exp()
    torch.testing.assert_close(shared_mixture_logpdf(zz, logits, mu, log_sigma, B), (pi * dens).sum(-1).log())
    b = _batch()
    torch.manual_seed(0)
    model = GGIK(ModelConfig(hidden=16, layers=2, latent=4, components=3, prior_mixture="graph"))
    out = model(b, 1.0)
    out["total"].backward()
    assert torch.isfinite(out["total"]) and float(out["kl"]) > 0
    assert model.prior_head[-1].weight.grad.abs().sum() > 0
    bp = make_batch(build_problem_graphs(*_problems()), ModelConfig(), with_answer=False)
    assert model.sample(bp, 4, generator=torch.Generator().manual_seed(2)).shape == (bp.num_graphs, 4, bp.nodes_per_graph, 3)


def test_a_graph_mixture_needs_node_latents():
    import pytest

    with pytest.raises(ValueError, match="prior_mixture"):
        GGIK(ModelConfig(prior_mixture="graph", latent_scope="graph"))
    with pytest.raises(ValueError, match="prior_mixture"):
        GGIK(ModelConfig(prior_mixture="edge"))


def test_reencoding_decodes_the_posterior_mean_of_the_previous_sample():
    from ggik_core.data.batch import repeat_batch_partial, with_answer_positions

    torch.manual_seed(0)
    model = GGIK(ModelConfig(hidden=16, layers=2, latent=4, components=3)).double().eval()
    bp = make_batch(build_problem_graphs(*_problems()), ModelConfig(), with_answer=False, dtype=torch.float64)
    k, N, B = 4, bp.nodes_per_graph, bp.num_graphs
    x0 = model.sample(bp, k, generator=torch.Generator().manual_seed(3))
    x1 = model.sample(bp, k, generator=torch.Generator().manual_seed(3), passes=1)
    assert torch.equal(model.sample(bp, k, generator=torch.Generator().manual_seed(3), passes=0), x0)
    rb = repeat_batch_partial(bp, k)
    with torch.no_grad():
        h_p, x_p = model.encode_partial(rb)
        mu, _ = model.posterior(with_answer_positions(rb, x0.reshape(B * k, N, 3)), h_p)
        expected = model.decode(mu, h_p, x_p, rb).reshape(B, k, N, 3)
    torch.testing.assert_close(x1, expected)
    assert not torch.allclose(x1, x0)
    calls = []

    def full(b, x):
        calls.append(x.shape)
        return with_answer_positions(b, x)

    x2 = model.sample(bp, k, generator=torch.Generator().manual_seed(3), passes=2, full=full)
    assert calls == [(B * k, N, 3)] * 2 and x2.shape == x0.shape


def test_over_relaxed_reencoding_extrapolates_the_latent_after_the_first_pass():
    from ggik_core.data.batch import repeat_batch_partial, with_answer_positions

    torch.manual_seed(0)
    model = GGIK(ModelConfig(hidden=16, layers=2, latent=4, components=3)).double().eval()
    bp = make_batch(build_problem_graphs(*_problems()), ModelConfig(), with_answer=False, dtype=torch.float64)
    k, N, B = 3, bp.nodes_per_graph, bp.num_graphs

    def draw(passes: int, relax: float) -> torch.Tensor:
        return model.sample(bp, k, generator=torch.Generator().manual_seed(5), passes=passes, relax=relax)

    # the first pass replaces the prior draw whatever the relaxation; relax 1 is the plain chain
    torch.testing.assert_close(draw(1, 2.5), draw(1, 1.0), rtol=0, atol=0)
    x1 = draw(1, 1.0)
    rb = repeat_batch_partial(bp, k)
    with torch.no_grad():
        h_p, x_p = model.encode_partial(rb)
        mu1, _ = model.posterior(with_answer_positions(rb, draw(0, 1.0).reshape(B * k, N, 3)), h_p)
        mu2, _ = model.posterior(with_answer_positions(rb, x1.reshape(B * k, N, 3)), h_p)
        expected = model.decode(mu1 + 2.0 * (mu2 - mu1), h_p, x_p, rb).reshape(B, k, N, 3)
    torch.testing.assert_close(draw(2, 2.0), expected)
    assert not torch.equal(draw(2, 2.0), draw(2, 1.0))  # relax is not ignored
