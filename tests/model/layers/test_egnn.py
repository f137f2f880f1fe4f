"""Tests for :class:`ggik_core.model.EGNNLayer`."""

from __future__ import annotations

from typing import Tuple

import pytest
import torch
from torch import Tensor
from torch_geometric.data import Batch, Data

from ggik_core.model.layers.egnn import EGNNLayer

ATOL = 1e-10
CHANNELS = 16
EDGE_DIM = 4


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(12345)


def complete_graph_batch(
    sizes: Tuple[int, ...] = (6, 8),
    channels: int = CHANNELS,
    edge_dim: int = EDGE_DIM,
    dtype: torch.dtype = torch.float64,
) -> Batch:
    """Disjoint batch of complete directed graphs without self-loops, with
    random node features, coordinates and invariant scalar edge features."""
    graphs = []
    for n in sizes:
        row, col = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
        mask = row != col
        edge_index = torch.stack([row[mask], col[mask]])
        graphs.append(Data(
            h=torch.randn(n, channels, dtype=dtype),
            pos=torch.randn(n, 3, dtype=dtype),
            edge_index=edge_index,
            edge_attr=torch.randn(edge_index.size(1), edge_dim, dtype=dtype),
            num_nodes=n,
        ))
    return Batch.from_data_list(graphs)


def random_orthogonal(reflection: bool, dtype: torch.dtype = torch.float64) -> Tensor:
    """Random 3x3 orthogonal matrix with det = -1 if ``reflection`` else +1."""
    q, r = torch.linalg.qr(torch.randn(3, 3, dtype=dtype))
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
    if (torch.det(q) < 0) != reflection:
        q[:, 0] = -q[:, 0]
    return q


def make_layer(**kwargs) -> EGNNLayer:
    layer = EGNNLayer(CHANNELS, edge_dim=EDGE_DIM, hidden_channels=24, **kwargs)
    return layer.double()


def boost_coordinate_head(layer: torch.nn.Module) -> None:
    """Replaces the tiny-init last layer of phi_x by O(1) weights so that the
    coordinate update is large and equivariance errors would be visible."""
    with torch.no_grad():
        layer.phi_x[-1].weight.normal_()


def test_shapes_and_dtypes() -> None:
    for dtype in (torch.float32, torch.float64):
        data = complete_graph_batch(dtype=dtype)
        layer = EGNNLayer(CHANNELS, edge_dim=EDGE_DIM).to(dtype)
        h_out, x_out = layer(data.h, data.pos, data.edge_index, data.edge_attr)
        assert h_out.shape == data.h.shape and h_out.dtype == dtype
        assert x_out.shape == data.pos.shape and x_out.dtype == dtype
        assert torch.isfinite(h_out).all() and torch.isfinite(x_out).all()


def test_no_edge_attr() -> None:
    data = complete_graph_batch()
    layer = EGNNLayer(CHANNELS).double()
    h_out, x_out = layer(data.h, data.pos, data.edge_index)
    assert h_out.shape == data.h.shape and x_out.shape == data.pos.shape
    with pytest.raises(ValueError):
        layer(data.h, data.pos, data.edge_index, data.edge_attr)
    with pytest.raises(ValueError):
        make_layer()(data.h, data.pos, data.edge_index, None)


def test_small_coordinate_init() -> None:
    data = complete_graph_batch()
    layer = make_layer()
    _, x_out = layer(data.h, data.pos, data.edge_index, data.edge_attr)
    delta = (x_out - data.pos).abs().max()
    assert 0 < delta < 1e-2


def test_update_coords_false() -> None:
    data = complete_graph_batch()
    layer = make_layer(update_coords=False)
    assert layer.phi_x is None
    h_out, x_out = layer(data.h, data.pos, data.edge_index, data.edge_attr)
    assert torch.equal(x_out, data.pos)
    assert not torch.allclose(h_out, data.h)


def test_update_features_false() -> None:
    data = complete_graph_batch()
    layer = make_layer(update_features=False)
    assert layer.phi_h is None and layer.layer_norm is None
    h_out, x_out = layer(data.h, data.pos, data.edge_index, data.edge_attr)
    assert torch.equal(h_out, data.h)
    assert not torch.allclose(x_out, data.pos)


@pytest.mark.parametrize("reflection", [False, True])
@pytest.mark.parametrize("norm", [True, False])
def test_e3_equivariance(reflection: bool, norm: bool) -> None:
    data = complete_graph_batch(sizes=(6, 8, 5))
    layer = make_layer(norm=norm, coords_agg_norm=3.0)
    boost_coordinate_head(layer)

    q = random_orthogonal(reflection)
    assert torch.det(q).item() == pytest.approx(-1.0 if reflection else 1.0)
    t = 5.0 * torch.randn(1, 3, dtype=torch.float64)

    h_out, x_out = layer(data.h, data.pos, data.edge_index, data.edge_attr)
    h_rot, x_rot = layer(data.h, data.pos @ q.T + t, data.edge_index,
                         data.edge_attr)

    # The coordinate update must be non-trivial for the check to mean anything.
    assert (x_out - data.pos).abs().max() > 1e-2
    torch.testing.assert_close(h_rot, h_out, atol=ATOL, rtol=0)
    torch.testing.assert_close(x_rot, x_out @ q.T + t, atol=ATOL, rtol=0)


def test_permutation_equivariance() -> None:
    data = complete_graph_batch(sizes=(6, 8))
    layer = make_layer()
    boost_coordinate_head(layer)
    n, e = data.num_nodes, data.edge_index.size(1)

    perm = torch.randperm(n)  # new node k is old node perm[k]
    inv = torch.argsort(perm)
    eperm = torch.randperm(e)
    edge_index_p = inv[data.edge_index][:, eperm]
    edge_attr_p = data.edge_attr[eperm]

    h_out, x_out = layer(data.h, data.pos, data.edge_index, data.edge_attr)
    h_p, x_p = layer(data.h[perm], data.pos[perm], edge_index_p, edge_attr_p)

    assert not torch.equal(perm, torch.arange(n))
    torch.testing.assert_close(h_p, h_out[perm], atol=ATOL, rtol=0)
    torch.testing.assert_close(x_p, x_out[perm], atol=ATOL, rtol=0)


def test_batched_graphs_are_independent() -> None:
    data = complete_graph_batch(sizes=(6, 8))
    layer = make_layer()
    boost_coordinate_head(layer)
    h_out, x_out = layer(data.h, data.pos, data.edge_index, data.edge_attr)
    for i, graph in enumerate(data.to_data_list()):
        h_g, x_g = layer(graph.h, graph.pos, graph.edge_index, graph.edge_attr)
        mask = data.batch == i
        torch.testing.assert_close(h_g, h_out[mask], atol=ATOL, rtol=0)
        torch.testing.assert_close(x_g, x_out[mask], atol=ATOL, rtol=0)


def test_matches_dense_reference() -> None:
    """Compares against a direct, loop-based evaluation of the equations."""
    data = complete_graph_batch(sizes=(5,))
    layer = make_layer(coords_agg_norm=2.0)
    boost_coordinate_head(layer)
    h, x, ei, ea = data.h, data.pos, data.edge_index, data.edge_attr
    h_out, x_out = layer(h, x, ei, ea)

    with torch.no_grad():
        for i in range(data.num_nodes):
            m_sum = torch.zeros(layer.hidden_channels, dtype=h.dtype)
            dx = torch.zeros(3, dtype=h.dtype)
            for k in (ei[1] == i).nonzero().flatten().tolist():
                j = ei[0, k].item()
                diff = x[i] - x[j]
                m_ij = layer.phi_e(torch.cat([h[i], h[j], diff.dot(diff).view(1), ea[k]]))
                m_sum += m_ij
                dx += diff / (diff.norm() + 1) * layer.phi_x(m_ij)
            h_ref = layer.layer_norm(h[i] + layer.phi_h(torch.cat([h[i], m_sum])))
            torch.testing.assert_close(h_out[i], h_ref, atol=ATOL, rtol=0)
            torch.testing.assert_close(x_out[i], x[i] + dx / 2.0, atol=ATOL, rtol=0)


def test_coincident_nodes_have_finite_gradients() -> None:
    layer = make_layer()
    h = torch.randn(3, CHANNELS, dtype=torch.float64)
    x = torch.zeros(3, 3, dtype=torch.float64, requires_grad=True)
    edge_index = torch.tensor([[0, 1, 2, 0], [1, 2, 0, 0]])  # incl. self-loop
    edge_attr = torch.randn(4, EDGE_DIM, dtype=torch.float64)
    h_out, x_out = layer(h, x, edge_index, edge_attr)
    (h_out.sum() + x_out.sum()).backward()
    assert torch.isfinite(x.grad).all()


def test_parameters_registered_and_receive_gradients() -> None:
    data = complete_graph_batch()
    layer = make_layer()
    params_before = dict(layer.named_parameters())
    optimizer = torch.optim.AdamW(layer.parameters(), lr=1e-2)
    initial = {name: p.detach().clone() for name, p in params_before.items()}

    h_out, x_out = layer(data.h, data.pos, data.edge_index, data.edge_attr)
    params_after = dict(layer.named_parameters())
    assert len(params_before) == len(params_after) > 0
    assert params_before.keys() == params_after.keys()
    opt_ids = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert opt_ids == {id(p) for p in params_after.values()}

    # Regress towards random targets: a plain ``h_out.pow(2).mean()`` has an
    # (almost) vanishing gradient through the LayerNorm.
    target_h = torch.randn_like(h_out)
    target_x = torch.randn_like(x_out)
    loss = (h_out - target_h).pow(2).mean() + (x_out - target_x).pow(2).mean()
    optimizer.zero_grad()
    loss.backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name
    optimizer.step()
    for name, p in layer.named_parameters():
        assert not torch.equal(p.detach(), initial[name]), name
