"""The dense layer path computes the same function as the PyG layers (the reference), in float64."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ggik_core.data.batch import make_batch
from ggik_core.data.graph import build_problem_graphs
from ggik_core.data.problems import random_problems
from ggik_core.model.layers.egat import EGATLayer
from ggik_core.model.layers.egnn import EGNNLayer
from ggik_core.model.config import ModelConfig
from ggik_core.model.cvae import GGIK
from ggik_core.robots.random_robots import RandomRobotConfig


def _complete(B: int, N: int) -> tuple[torch.Tensor, torch.Tensor]:
    src, dst = torch.meshgrid(torch.arange(N), torch.arange(N), indexing="ij")
    keep = src != dst
    one = torch.stack([src[keep], dst[keep]])
    E = one.shape[1]
    return one, one.repeat(1, B) + (torch.arange(B) * N).repeat_interleave(E)


@pytest.mark.parametrize("cls", [EGNNLayer, EGATLayer])
@pytest.mark.parametrize("edge_dim", [0, 4])
@pytest.mark.parametrize("coord_mlp", [True, False])
@pytest.mark.parametrize("edge_mlp", [True, False])
@pytest.mark.parametrize("update", [(True, True), (False, True), (True, False)])
def test_dense_layer_equals_pyg_layer(cls, edge_dim, coord_mlp, edge_mlp, update):
    torch.manual_seed(0)
    B, N, C = 3, 6, 8
    layer = cls(C, edge_dim=edge_dim, hidden_channels=12, coord_mlp=coord_mlp, edge_mlp=edge_mlp,
                update_coords=update[0], update_features=update[1]).double()
    assert len(layer.phi_e) == (4 if edge_mlp else 2)
    # larger coordinate weights than the tiny initial gain, so that a wrong x update shows
    if layer.phi_x is not None:
        torch.nn.init.normal_(layer.phi_x[-1].weight)
    h = torch.randn(B, N, C, dtype=torch.float64)
    x = torch.randn(B, N, 3, dtype=torch.float64)
    e = torch.randn(B, N, N, edge_dim, dtype=torch.float64) if edge_dim else None
    one, ei = _complete(B, N)
    ea = e[:, one[0], one[1]].reshape(-1, edge_dim) if edge_dim else None
    h_ref, x_ref = layer(h.reshape(-1, C), x.reshape(-1, 3), ei, ea)
    h_d, x_d = layer.forward_dense(h, x, e)
    assert torch.allclose(h_d.reshape(-1, C), h_ref, atol=1e-12, rtol=0)
    assert torch.allclose(x_d.reshape(-1, 3), x_ref, atol=1e-12, rtol=0)
    if update[0]:
        assert (x_ref - x.reshape(-1, 3)).abs().max() > 1e-3  # coordinates really moved


def test_dense_attention_sums_to_one_without_self_loops():
    torch.manual_seed(1)
    layer = EGATLayer(8, edge_dim=2).double()
    h, x = torch.randn(2, 5, 8, dtype=torch.float64), torch.randn(2, 5, 3, dtype=torch.float64)
    _, _, alpha = layer.forward_dense(h, x, torch.randn(2, 5, 5, 2, dtype=torch.float64), return_attention=True)
    assert torch.allclose(alpha.sum(dim=1), torch.ones(2, 5, dtype=torch.float64))
    assert (alpha.diagonal(dim1=1, dim2=2) == 0).all()


@pytest.mark.parametrize(("layer", "overrides"), [
    ("egnn", {}), ("egat", {}), ("egnn", {"phi_x": "linear", "full_layers": 1}),
    ("egat", {"phi_x": "linear", "full_layers": 1}), ("egnn", {"symmetric": True}),  # symmetric messages are EGNN-only
    ("egnn", {"phi_e": "single", "phi_x": "linear", "full_layers": 1}), ("egat", {"phi_e": "single"}),
])
def test_model_dense_equals_pyg(layer, overrides):
    pb = random_problems(4, 6, RandomRobotConfig(), torch.Generator().manual_seed(2))
    g = build_problem_graphs(pb.chain, pb.q, pb.goal)
    cfg = dataclasses.replace(ModelConfig(layer=layer, hidden=16, layers=2, latent=4, components=3, message=16), **overrides)
    torch.manual_seed(0)
    model = GGIK(cfg).double()
    b = make_batch(g, cfg, dtype=torch.float64)
    out = {}
    for dense in (False, True):
        model.dense = dense
        torch.manual_seed(5)
        out[dense] = model(b, 1.0)
        torch.manual_seed(6)
        out[dense]["sample"] = model.sample(b, 3, generator=torch.Generator().manual_seed(7))
    for key in ("total", "rec", "kl", "sample"):
        assert torch.allclose(out[True][key], out[False][key], atol=1e-10, rtol=0), key
    if overrides.get("full_layers"):
        assert len(model.enc_full.layers) == 1


def test_bf16_autocast_training_step_runs_on_cpu():
    """The GPU training path (bf16 autocast, dense layers) runs and learns on the CPU too."""
    pb = random_problems(16, 6, RandomRobotConfig(), torch.Generator().manual_seed(3))
    g = build_problem_graphs(pb.chain, pb.q, pb.goal)
    torch.manual_seed(0)
    model = GGIK(ModelConfig(hidden=16, layers=2, latent=4, components=3, message=16))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    b = make_batch(g, ModelConfig())
    losses = []
    for _ in range(60):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(b, 0.0)
        assert out["rec"].dtype == torch.float32 and torch.isfinite(out["total"])
        opt.zero_grad()
        out["total"].backward()
        opt.step()
        losses.append(float(out["rec"].detach()))
    assert losses[-1] < 0.6 * losses[0]  # fp32 reaches 0.52 of the first loss on this batch, bf16 0.45


@pytest.mark.parametrize("edge_dim", [0, 3])
@pytest.mark.parametrize("coord_mlp", [True, False])
def test_symmetric_pairs_equal_pyg_layer(edge_dim, coord_mlp):
    """Symmetric messages computed once per pair equal the PyG layer with tied weights."""
    torch.manual_seed(4)
    B, N, C = 2, 7, 8
    layer = EGNNLayer(C, edge_dim=edge_dim, hidden_channels=12, coord_mlp=coord_mlp, symmetric=True).double()
    torch.nn.init.normal_(layer.phi_x[-1].weight)
    h, x = torch.randn(B, N, C, dtype=torch.float64), torch.randn(B, N, 3, dtype=torch.float64)
    e = None
    if edge_dim:
        e = torch.randn(B, N, N, edge_dim, dtype=torch.float64)
        e = e + e.transpose(1, 2)  # symmetric edge features, like distances and known flags
    one, ei = _complete(B, N)
    ea = e[:, one[0], one[1]].reshape(-1, edge_dim) if edge_dim else None
    h_ref, x_ref = layer(h.reshape(-1, C), x.reshape(-1, 3), ei, ea)
    h_d, x_d = layer.forward_dense(h, x, e)
    assert torch.allclose(h_d.reshape(-1, C), h_ref, atol=1e-12, rtol=0)
    assert torch.allclose(x_d.reshape(-1, 3), x_ref, atol=1e-12, rtol=0)
    assert layer.phi_e[0].in_features == C + 1 + edge_dim


@pytest.mark.parametrize("symmetric", [False, True])
def test_coordinates_stay_fp32_under_bf16_autocast(symmetric):
    """bf16 autocast speeds up the feature path; the coordinate head and its sums stay fp32."""
    torch.manual_seed(3)
    layer = EGNNLayer(8, edge_dim=2, hidden_channels=16, coord_mlp=False, symmetric=symmetric)
    torch.nn.init.normal_(layer.phi_x[-1].weight, std=0.1)
    h, x = torch.randn(2, 6, 8), torch.randn(2, 6, 3)
    e = torch.rand(2, 6, 6, 2)
    e = e + e.transpose(1, 2)
    _, x_ref = layer.forward_dense(h, x, e)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h_bf, x_bf = layer.forward_dense(h, x, e)
    assert x_bf.dtype == torch.float32
    move_ref, move_bf = x_ref - x, x_bf - x
    # bf16 messages perturb phi_x's input only: the move agrees to ~1e-2 relative, not bf16's raw 4e-3 per op chain
    assert (move_bf - move_ref).abs().max() < 2e-2 * move_ref.abs().max()


def test_coordinate_head_runs_in_fp32_under_autocast():
    torch.manual_seed(5)
    layer = EGNNLayer(8, hidden_channels=16)
    rel, m = torch.randn(50, 3), torch.randn(50, 16).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = layer.coord_message(rel, m)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        hidden = layer.phi_x[:-1](m)  # the hidden layer may run in bf16 ...
    want = rel * layer.phi_x[-1](hidden.float())  # ... the output layer and the product do not
    assert hidden.dtype == torch.bfloat16 and got.dtype == torch.float32 and torch.equal(got, want)
