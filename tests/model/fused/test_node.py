"""The fused feature update computes the layers' eager node update (float64, with every gradient)
and stays as close to it in bf16 autocast as the eager bf16 update does."""

from __future__ import annotations

import copy

import pytest
import torch

from ggik_core.model.layers.egat import EGATLayer
from ggik_core.model.layers.egnn import EGNNLayer
from ggik_core.model.fused.node import fused_node_update, node_update_fusable


def _layer(kind: str, norm: bool, update_coords: bool = True):
    torch.manual_seed(0)
    cls = EGNNLayer if kind == "egnn" else EGATLayer
    layer = cls(8, edge_dim=2, hidden_channels=12, coords_agg_norm=3.0, norm=norm,
                update_coords=update_coords).double()
    for p in layer.parameters():  # weights large enough that every term shows in the outputs
        torch.nn.init.normal_(p, std=0.4)
    return layer


def _inputs(B: int, N: int, M: int, dtype=torch.float64):
    g = torch.Generator().manual_seed(1)
    return [torch.randn(*shape, dtype=dtype, generator=g, requires_grad=True)
            for shape in ((B, N, 8), (B, N, 3), (B, N, M), (B, N, 3))]


def _outputs_and_grads(fn, layer, inputs):
    h_out, x_out = fn(*inputs)
    g = torch.Generator().manual_seed(9)
    loss = (h_out.double() * torch.randn(h_out.shape, generator=g, dtype=torch.float64)).sum() \
        + (x_out.double() * torch.randn(x_out.shape, generator=g, dtype=torch.float64)).sum()
    params = list(layer.parameters())
    grads = torch.autograd.grad(loss, [*inputs, *params], allow_unused=True)
    return h_out, x_out, grads


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().double() - b.detach().double()).abs().max() / b.detach().double().abs().max())


@pytest.mark.parametrize("kind", ["egnn", "egat"])
@pytest.mark.parametrize("norm", [True, False])
@pytest.mark.parametrize("update_coords", [True, False])
def test_fused_node_update_equals_the_eager_update_in_float64(kind, norm, update_coords):
    layer = _layer(kind, norm, update_coords)
    assert node_update_fusable(layer)
    inputs = _inputs(3, 5, layer.message_channels)
    ref = _outputs_and_grads(layer.node_update, layer, inputs)
    got = _outputs_and_grads(lambda *a: fused_node_update(layer, *a), layer, inputs)
    torch.testing.assert_close(got[0], ref[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(got[1], ref[1], rtol=0, atol=1e-12)
    for a, b in zip(got[2], ref[2]):
        assert (a is None) == (b is None)
        if b is not None:
            torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_fused_node_update_in_bf16_is_as_close_as_the_eager_bf16_update():
    ref_layer = _layer("egnn", True)
    inputs = _inputs(4, 6, ref_layer.message_channels)
    ref = _outputs_and_grads(ref_layer.node_update, ref_layer, inputs)
    layer = copy.deepcopy(ref_layer).float()
    inputs32 = [t.detach().float().requires_grad_() for t in inputs]
    errs = {}
    for name, fn in (("fused", lambda *a: fused_node_update(layer, *a)), ("eager", layer.node_update)):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            h_out, x_out, grads = _outputs_and_grads(fn, layer, inputs32)
        assert h_out.dtype == torch.float32 and x_out.dtype == torch.float32
        errs[name] = max(_rel(a, b) for a, b in zip((h_out, *grads), (ref[0], *ref[2])) if b is not None)
    assert errs["fused"] < 0.05 and errs["fused"] < 2 * errs["eager"]


def test_a_layer_without_a_feature_update_takes_the_eager_path():
    layer = EGNNLayer(8, edge_dim=2, hidden_channels=12, update_features=False).double()
    assert not node_update_fusable(layer)
    h, x, m_i, dx = _inputs(2, 4, layer.message_channels)
    h_out, x_out = fused_node_update(layer, h, x, m_i, dx)
    assert h_out is h
    torch.testing.assert_close(x_out, x + dx)
