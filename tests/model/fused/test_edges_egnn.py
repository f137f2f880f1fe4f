"""The fused CPU kernels of the α-weighted edge block, with α ≡ 1 (the EGNN layer), compute the
PyG layer's function (float64), with its gradients, and stay close to it in float32 and in bf16
autocast; the structure guard sends every other layer structure to the eager path."""

from __future__ import annotations

import copy
import math
import subprocess
import sys

import pytest
import torch

from ggik_core.data.batch import make_batch
from ggik_core.data.graph import build_problem_graphs
from ggik_core.data.problems import random_problems
from ggik_core.model.fused import edges as fused_edges
from ggik_core.model.fused.edges import ALPHA_WEIGHTED
from ggik_core.model.layers.egnn import EGNNLayer
from ggik_core.model.config import ModelConfig
from ggik_core.model.cvae import GGIK
from ggik_core.robots.random_robots import RandomRobotConfig

UPDATES = [(True, True), (False, True), (True, False)]  # (update_coords, update_features)


def _complete(B: int, N: int) -> tuple[torch.Tensor, torch.Tensor]:
    src, dst = torch.meshgrid(torch.arange(N), torch.arange(N), indexing="ij")
    keep = src != dst
    one = torch.stack([src[keep], dst[keep]])
    return one, one.repeat(1, B) + (torch.arange(B) * N).repeat_interleave(one.shape[1])


def _layer(edge_dim: int, update: tuple[bool, bool], seed: int = 0) -> EGNNLayer:
    torch.manual_seed(seed)
    layer = EGNNLayer(8, edge_dim=edge_dim, hidden_channels=12, coords_agg_norm=3.0,
                      update_coords=update[0], update_features=update[1]).double()
    for p in layer.parameters():  # weights large enough that every term shows in the outputs
        torch.nn.init.normal_(p, std=0.4)
    fuse(layer)
    return layer


def fuse(layer) -> None:
    """Bind the fused implementation to ``layer`` (its structure must match)."""
    assert ALPHA_WEIGHTED.mismatch(layer) is None
    layer.use_kernels(ALPHA_WEIGHTED.bind(layer))


def count_fused_calls(monkeypatch) -> list:
    """A list that gets one entry per call of the fused edge block's autograd function."""
    calls: list = []
    apply = fused_edges.FusedEdges.apply
    monkeypatch.setattr(fused_edges.FusedEdges, "apply", lambda *a: calls.append(1) or apply(*a))
    return calls


def _inputs(B: int, N: int, edge_dim: int, dtype=torch.float64, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(B, N, 8, dtype=dtype, generator=g, requires_grad=True)
    x = torch.randn(B, N, 3, dtype=dtype, generator=g, requires_grad=True)
    e = torch.randn(B, N, N, edge_dim, dtype=dtype, generator=g) if edge_dim else None
    return h, x, e


def _outputs_and_grads(fn, layer: EGNNLayer, h, x):
    """Outputs of ``fn`` and the gradients of a fixed random projection of them w.r.t. ``h``, ``x``
    and every parameter that takes part."""
    h_out, x_out = fn()
    g = torch.Generator().manual_seed(9)
    loss = (h_out.float().double() * torch.randn(h_out.shape, generator=g, dtype=torch.float64)).sum() \
        + (x_out.double() * torch.randn(x_out.shape, generator=g, dtype=torch.float64)).sum()
    params = [p for p in layer.parameters()]
    grads = torch.autograd.grad(loss, [h, x, *params], allow_unused=True)
    return h_out, x_out, grads


@pytest.mark.parametrize("edge_dim", [0, 2])
@pytest.mark.parametrize("update", UPDATES)
def test_fused_layer_equals_pyg_layer_with_gradients(edge_dim, update, monkeypatch):
    calls = count_fused_calls(monkeypatch)
    B, N = 3, 6
    layer = _layer(edge_dim, update)
    h, x, e = _inputs(B, N, edge_dim)
    one, ei = _complete(B, N)
    ea = e[:, one[0], one[1]].reshape(-1, edge_dim) if edge_dim else None
    ref = _outputs_and_grads(lambda: layer(h.reshape(-1, 8), x.reshape(-1, 3), ei, ea), layer, h, x)
    got = _outputs_and_grads(lambda: layer.forward_dense(h, x, e), layer, h, x)
    assert calls == [1]  # the fused kernels ran
    assert torch.allclose(got[0].reshape(-1, 8), ref[0], atol=1e-11, rtol=0)
    assert torch.allclose(got[1].reshape(-1, 3), ref[1], atol=1e-11, rtol=0)
    names = ["h", "x", *(n for n, _ in layer.named_parameters())]
    for name, a, b in zip(names, got[2], ref[2]):
        assert (a is None) == (b is None), name
        if a is not None:
            assert a.abs().max() > 0, name
            assert torch.allclose(a, b, atol=1e-10, rtol=0), name
    if update[0]:
        assert (got[1] - x).abs().max() > 1e-2  # the coordinates really moved


def _rotation(seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)))
    return q


def test_fused_layer_is_equivariant_in_float64():
    """Rotations, translations and node permutations commute with the fused layer."""
    B, N = 2, 7
    layer = _layer(2, (True, True))
    h, x, e = _inputs(B, N, 2)
    e = e + e.transpose(1, 2)  # invariant (symmetric) edge features, like distances
    R, t = _rotation(3), torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        h1, x1 = layer.forward_dense(h, x, e)
        h2, x2 = layer.forward_dense(h[:, perm], x[:, perm] @ R.T + t, e[:, perm][:, :, perm])
    assert torch.allclose(h2, h1[:, perm], atol=1e-11, rtol=0)
    assert torch.allclose(x2, x1[:, perm] @ R.T + t, atol=1e-11, rtol=0)


def _close(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest difference relative to the reference's largest magnitude."""
    return float((a.detach().double() - b.detach().double()).abs().max() / b.detach().double().abs().max())


@pytest.mark.parametrize("update", UPDATES)
def test_float32_and_bf16_kernels_stay_close_to_float64(update):
    """float32 (rational SiLU) is float32-accurate; bf16 autocast is as close as the eager bf16 path."""
    B, N = 4, 8
    ref_layer = _layer(2, update)
    h, x, e = _inputs(B, N, 2)
    ref = _outputs_and_grads(lambda: ref_layer.forward_dense(h, x, e), ref_layer, h, x)

    layer = copy.deepcopy(ref_layer).float()
    h32, x32 = h.detach().float().requires_grad_(), x.detach().float().requires_grad_()
    got = _outputs_and_grads(lambda: layer.forward_dense(h32, x32, e.float()), layer, h32, x32)
    assert _close(got[0], ref[0]) < 1e-5 and _close(got[1], ref[1]) < 1e-5
    for a, b in zip(got[2], ref[2]):
        if b is not None:
            assert _close(a, b) < 1e-4

    errs = {}
    for fused in (True, False):  # bf16: the fused kernels against the eager bf16 path
        layer.use_kernels(ALPHA_WEIGHTED.bind(layer) if fused else None)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = _outputs_and_grads(lambda: layer.forward_dense(h32, x32, e.float()), layer, h32, x32)
        assert out[1].dtype == torch.float32  # coordinates stay fp32
        errs[fused] = max(_close(a, b) for a, b in zip(out[2], ref[2]) if b is not None)
        assert _close(out[1], ref[1]) < 1e-2
    assert errs[True] < 0.05 and errs[True] < 2 * errs[False]


def test_the_structure_guard_names_what_the_kernels_cannot_run():
    for kw, why in (({"coord_mlp": False}, "phi_x is not a two-layer MLP"),
                    ({"edge_mlp": False}, "phi_e is not a two-layer MLP"),
                    ({"symmetric": True}, "symmetric messages"),
                    ({"act": "gelu"}, "phi_e's activation is GELU"),
                    ({"norm": False}, None), ({"update_features": False}, None), ({"update_coords": False}, None)):
        why_got = ALPHA_WEIGHTED.mismatch(EGNNLayer(8, edge_dim=2, **kw))
        assert (why_got is None) if why is None else why in why_got, (kw, why_got)
    layer = EGNNLayer(8, edge_dim=2)
    layer.phi_h[1] = torch.nn.ReLU()  # a module swapped after construction is seen too
    assert "phi_h's activation is ReLU" in ALPHA_WEIGHTED.mismatch(layer)
    layer = EGNNLayer(8, edge_dim=2)
    layer.phi_x[2] = torch.nn.Linear(8, 1)  # a bias the kernels would drop
    assert "without a bias" in ALPHA_WEIGHTED.mismatch(layer)


def test_a_layer_without_fused_kernels_runs_the_eager_path(monkeypatch):
    calls = count_fused_calls(monkeypatch)
    layer = EGNNLayer(8, edge_dim=2)
    h, x = torch.randn(1, 3, 8), torch.randn(1, 3, 3)
    layer.forward_dense(h, x, torch.randn(1, 3, 3, 2))  # not bound: eager
    assert calls == []
    fuse(layer)
    layer.forward_dense(h, x, torch.randn(1, 3, 3, 2))
    assert calls == [1]
    clone = copy.deepcopy(layer)  # the bound implementation follows a copy of the layer
    assert clone.fused.layer is clone


def check_model_equals_pyg(cfg: ModelConfig, monkeypatch) -> None:
    """The whole model (encoders, prior, decoder) with fused layers: the same losses, samples and
    gradients as the PyG reference in float64."""
    pb = random_problems(3, 6, RandomRobotConfig(), torch.Generator().manual_seed(2))
    g = build_problem_graphs(pb.chain, pb.q, pb.goal)
    torch.manual_seed(0)
    model = GGIK(cfg).double()
    b = make_batch(g, cfg, dtype=torch.float64)
    out, grads = {}, {}
    calls = count_fused_calls(monkeypatch)
    for fused in (False, True):
        model.dense = fused
        assert model.use_kernels("fused" if fused else "eager") is None
        torch.manual_seed(5)
        out[fused] = model(b, 1.0)
        grads[fused] = torch.autograd.grad(out[fused]["total"], list(model.parameters()), allow_unused=True)
        torch.manual_seed(6)
        out[fused]["sample"] = model.sample(b, 2, generator=torch.Generator().manual_seed(7))
    for key in ("total", "rec", "kl", "sample"):
        assert torch.allclose(out[True][key], out[False][key], atol=1e-10, rtol=0), key
    for a, c in zip(grads[True], grads[False]):
        assert (a is None) == (c is None)
        if a is not None:
            assert torch.allclose(a, c, atol=1e-9, rtol=0)
    layers = [layer for stack in (model.enc_partial, model.enc_full, model.decoder) for layer in stack.layers]
    assert all(layer.fused is not None for layer in layers)
    # every layer ran fused in the loss (all three stacks) and in sampling (the partial encoder and the decoder)
    assert len(calls) == len(layers) + len(model.enc_partial.layers) + len(model.decoder.layers)
    assert not math.isnan(float(out[True]["total"].detach()))


def test_model_with_fused_layers_equals_pyg_model(monkeypatch):
    check_model_equals_pyg(ModelConfig(hidden=16, layers=2, latent=4, components=3), monkeypatch)


def test_the_kernels_keep_torchs_thread_count():
    """Starting numba's thread pool resets torch's thread count to every core unless it is put
    back; a process limited to one thread (GGIK_THREADS=1, a share of the cores) must stay there."""
    code = (
        "import torch\n"
        "torch.set_num_threads(1)\n"
        "from ggik_core.model.fused.edges import ALPHA_WEIGHTED\n"
        "from ggik_core.model.layers.egnn import EGNNLayer\n"
        "layer = EGNNLayer(4, edge_dim=2)\n"
        "layer.use_kernels(ALPHA_WEIGHTED.bind(layer))\n"
        "h, x = torch.randn(1, 3, 4, requires_grad=True), torch.randn(1, 3, 3, requires_grad=True)\n"
        "with torch.autocast('cpu', dtype=torch.bfloat16):\n"
        "    h2, x2 = layer.forward_dense(h, x, torch.randn(1, 3, 3, 2))\n"
        "(h2.float().sum() + x2.sum()).backward()\n"
        "import numba\n"
        "print(torch.get_num_threads(), numba.get_num_threads())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "1"]
