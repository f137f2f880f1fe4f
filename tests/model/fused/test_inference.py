"""Sampling through the fused inference kernels: the same function as the training kernels (which
store what the backward pass reads) and as the eager path, and the layers' bindings come back."""

from __future__ import annotations

import pytest
import torch
from test_edges_egnn import _inputs, count_fused_calls

from ggik_core.model.config import ModelConfig
from ggik_core.model.cvae import GGIK
from ggik_core.model.fused.edges import ALPHA_WEIGHTED, fused_edges
from ggik_core.model.fused.inference import inference_kernels
from ggik_core.model.layers.egat import EGATLayer
from ggik_core.model.layers.egnn import EGNNLayer
from ggik_core.robots.catalog import load_arm
from ggik_core.solve.solver import sample_solutions


@pytest.mark.parametrize("cls", [EGNNLayer, EGATLayer])
@pytest.mark.parametrize("bf16", [False, True])
def test_inference_kernels_compute_what_the_training_kernels_do(cls, bf16):
    torch.manual_seed(0)
    layer = cls(8, edge_dim=3, hidden_channels=12)
    dtype = torch.float32 if bf16 else torch.float64
    layer = layer.to(dtype)
    h, x, e = _inputs(2, 6, 3, dtype=dtype)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        train = fused_edges(layer, h, x, e)  # h and x require grad: the storing kernels
        with torch.no_grad():
            infer = fused_edges(layer, h, x, e)  # the inference kernels
    assert train[0].requires_grad and not infer[0].requires_grad
    for a, b in zip(train, infer):
        assert torch.allclose(a.detach(), b, atol=1e-12 if not bf16 else 1e-6, rtol=0 if not bf16 else 1e-5)


@pytest.mark.parametrize("cls", [EGNNLayer, EGATLayer])
@pytest.mark.parametrize("bf16", [False, True])
def test_inference_in_blocks_of_graphs_computes_what_one_block_does(cls, bf16, monkeypatch):
    import ggik_core.model.fused.edges as edges

    torch.manual_seed(0)
    layer = cls(8, edge_dim=3, hidden_channels=12).to(torch.float32 if bf16 else torch.float64)
    h, x, e = _inputs(7, 6, 3, dtype=torch.float32 if bf16 else torch.float64)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        whole = fused_edges(layer, h, x, e)
        monkeypatch.setattr(edges, "INFERENCE_ROWS", 3 * 6 * 5)  # blocks of 3, 3 and 1 graphs
        blocks = fused_edges(layer, h, x, e)
    for a, b in zip(whole, blocks):  # the products' kernels may sum in another order for other row counts
        assert torch.allclose(a, b, atol=1e-12 if not bf16 else 1e-6, rtol=0 if not bf16 else 1e-5), (a - b).abs().max()
    assert whole[1].abs().sum() > 0


def test_no_grad_calls_get_the_kernels_that_store_nothing_for_a_backward_pass(monkeypatch):
    """Grad mode decides: parameters require grad in a trained model too (needs_input_grad is
    True under no_grad), so sampling would otherwise run the storing training kernels."""
    import ggik_core.model.fused.edges as edges

    stores = []
    compiled = edges.kernels
    monkeypatch.setattr(edges, "kernels", lambda *a: stores.append(a[-1]) or compiled(*a))
    model = GGIK(ModelConfig(hidden=16, layers=2, latent=4, components=3)).eval()
    robot = load_arm("panda")
    goals = robot.fk(robot.sample_q(2, torch.Generator().manual_seed(0)))
    sample_solutions(model, robot, goals, 4, generator=torch.Generator().manual_seed(1), kernels="fused", passes=1)
    assert stores and not any(stores), stores
    layer = EGNNLayer(8, edge_dim=3, hidden_channels=12)
    h, x, e = _inputs(2, 6, 3, dtype=torch.float32)
    stores.clear()
    fused_edges(layer, h, x, e)
    assert stores == [True]


def test_inference_kernels_run_fused_and_restore_the_bindings(monkeypatch):
    calls = count_fused_calls(monkeypatch)
    model = GGIK(ModelConfig(hidden=16, layers=2, latent=4, components=3)).eval()
    layers = [m for m in model.modules() if isinstance(m, EGNNLayer)]
    robot = load_arm("panda")
    goals = robot.fk(robot.sample_q(2, torch.Generator().manual_seed(0)))
    with inference_kernels(model, "eager"):
        eager = sample_solutions(model, robot, goals, 4, generator=torch.Generator().manual_seed(1), kernels="eager")
    assert calls == []
    fused = sample_solutions(model, robot, goals, 4, generator=torch.Generator().manual_seed(1), kernels="fused")
    assert len(calls) == len(model.enc_partial.layers) + len(model.decoder.layers)
    assert all(layer.fused is None for layer in layers)  # unbound again afterwards
    assert fused.q.shape == eager.q.shape
    layers[0].use_kernels(ALPHA_WEIGHTED.bind(layers[0]))
    with inference_kernels(model):
        pass
    assert layers[0].fused is not None and all(layer.fused is None for layer in layers[1:])
    with pytest.raises(ValueError, match="fused or eager"):
        with inference_kernels(model, "numba"):
            pass


def test_fused_sampling_places_the_nodes_where_the_eager_path_does():
    """Float32 model, no bf16: the fused inference path decodes the same samples to rounding."""
    torch.manual_seed(0)
    model = GGIK(ModelConfig(hidden=16, layers=2, latent=4, components=3)).eval()
    robot = load_arm("kuka")
    goals = robot.fk(robot.sample_q(3, torch.Generator().manual_seed(2)))
    out = {}
    for kernels in ("eager", "fused"):
        with torch.autocast("cpu", enabled=False):
            model.use_kernels("eager")
            if kernels == "fused":
                model.use_kernels("fused")
            with torch.no_grad():
                from ggik_core.data.batch import make_batch
                from ggik_core.solve.solver import partial_graphs

                g, _ = partial_graphs(robot, goals)
                out[kernels] = model.sample(make_batch(g, model.cfg, with_answer=False), 5,
                                            generator=torch.Generator().manual_seed(3), passes=1)
    assert torch.allclose(out["fused"], out["eager"], atol=1e-5, rtol=0)
