"""The fused CPU kernels of the α-weighted edge block with softmax attention (the EGAT layer)
compute the PyG layer's function with its gradients in float64, and stay close to it in float32
and bf16 autocast."""

from __future__ import annotations

import copy

import pytest
import torch
from test_edges_egnn import (UPDATES, _close, _complete, _inputs, _outputs_and_grads, _rotation, check_model_equals_pyg,
                             count_fused_calls, fuse)

from ggik_core.model.fused.edges import ALPHA_WEIGHTED
from ggik_core.model.layers.egat import EGATLayer
from ggik_core.model.config import ModelConfig


def _layer(edge_dim: int, update: tuple[bool, bool], seed: int = 0) -> EGATLayer:
    torch.manual_seed(seed)
    layer = EGATLayer(8, edge_dim=edge_dim, hidden_channels=12, message_channels=10, coords_agg_norm=3.0,
                      update_coords=update[0], update_features=update[1]).double()
    for p in layer.parameters():  # weights large enough that every term (the attention too) shows
        torch.nn.init.normal_(p, std=0.4)
    fuse(layer)
    return layer


@pytest.mark.parametrize("edge_dim", [0, 5])
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


def test_fused_layer_is_equivariant_with_invariant_edge_features():
    B, N = 2, 7
    layer = _layer(3, (True, True))
    h, x, e = _inputs(B, N, 3)
    e = e + e.transpose(1, 2)
    R, t = _rotation(5), torch.tensor([1.0, 0.5, -0.7], dtype=torch.float64)
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        h1, x1 = layer.forward_dense(h, x, e)
        h2, x2 = layer.forward_dense(h[:, perm], x[:, perm] @ R.T + t, e[:, perm][:, :, perm])
    assert torch.allclose(h2, h1[:, perm], atol=1e-11, rtol=0)
    assert torch.allclose(x2, x1[:, perm] @ R.T + t, atol=1e-11, rtol=0)


@pytest.mark.parametrize("update", UPDATES)
def test_float32_and_bf16_kernels_stay_close_to_float64(update):
    B, N = 4, 8
    ref_layer = _layer(5, update)
    h, x, e = _inputs(B, N, 5)
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
        assert out[1].dtype == torch.float32
        errs[fused] = max(_close(a, b) for a, b in zip(out[2], ref[2]) if b is not None)
        assert _close(out[1], ref[1]) < 1e-2
    assert errs[True] < 0.05 and errs[True] < 2 * errs[False]


def test_attention_is_returned_by_the_eager_path():
    layer = _layer(2, (True, True))
    h, x, e = _inputs(2, 5, 2)
    with torch.no_grad():
        h1, x1, alpha = layer.forward_dense(h, x, e, return_attention=True)
        h2, x2 = layer.forward_dense(h, x, e)
    assert torch.allclose(alpha.sum(dim=1), torch.ones(2, 5, dtype=torch.float64))
    assert torch.allclose(h1, h2, atol=1e-12, rtol=0) and torch.allclose(x1, x2, atol=1e-12, rtol=0)


def test_model_with_fused_egat_layers_equals_pyg_model(monkeypatch):
    check_model_equals_pyg(ModelConfig(layer="egat", hidden=16, layers=2, latent=4, components=3, message=16), monkeypatch)


def test_the_attention_mlp_is_part_of_the_structure_check():
    layer = EGATLayer(8, edge_dim=5)
    assert ALPHA_WEIGHTED.mismatch(layer) is None
    layer.phi_att[1] = torch.nn.Tanh()
    assert "phi_att's activation is Tanh" in ALPHA_WEIGHTED.mismatch(layer)
