"""Tests for :class:`ggik_core.model.EGATLayer`."""

from __future__ import annotations

from typing import Tuple

import pytest
import torch
from torch import Tensor
from torch_geometric.data import Batch, Data
from torch_geometric.utils import scatter

from ggik_core.model.layers.egat import EGATLayer

ATOL = 1e-10
CHANNELS = 16
EDGE_DIM = 4


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(2024)


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


def with_direction(edge_attr: Tensor, x: Tensor, edge_index: Tensor) -> Tensor:
    """Appends the GGIK+ direction vector x_j - x_i to the edge features."""
    j, i = edge_index
    return torch.cat([edge_attr, x[j] - x[i]], dim=-1)


def make_layer(edge_dim: int = EDGE_DIM, **kwargs) -> EGATLayer:
    layer = EGATLayer(CHANNELS, edge_dim=edge_dim, hidden_channels=24,
                      message_channels=32, **kwargs)
    return layer.double()


def boost_coordinate_head(layer: torch.nn.Module) -> None:
    """Replaces the tiny-init last layer of phi_x by O(1) weights so that the
    coordinate update is large and equivariance errors would be visible."""
    with torch.no_grad():
        layer.phi_x[-1].weight.normal_()


def test_shapes_and_dtypes() -> None:
    for dtype in (torch.float32, torch.float64):
        data = complete_graph_batch(dtype=dtype)
        layer = EGATLayer(CHANNELS, edge_dim=EDGE_DIM).to(dtype)
        h_out, x_out = layer(data.h, data.pos, data.edge_index, data.edge_attr)
        assert h_out.shape == data.h.shape and h_out.dtype == dtype
        assert x_out.shape == data.pos.shape and x_out.dtype == dtype
        out = layer(data.h, data.pos, data.edge_index, data.edge_attr,
                    return_attention=True)
        assert len(out) == 3
        assert out[2].shape == (data.edge_index.size(1),)
        assert out[2].dtype == dtype


def test_message_channels() -> None:
    layer = EGATLayer(CHANNELS, edge_dim=EDGE_DIM, hidden_channels=24,
                      message_channels=40)
    assert layer.phi_e[-2].out_features == 40
    assert layer.phi_x[0].in_features == 40 + EDGE_DIM
    assert layer.phi_h[0].in_features == CHANNELS + 40
    assert layer.phi_att[-1].out_features == 1
    data = complete_graph_batch()
    with pytest.raises(ValueError):
        layer(data.h, data.pos, data.edge_index, None)


def test_attention_is_normalised_per_target() -> None:
    data = complete_graph_batch(sizes=(6, 8, 3))
    layer = make_layer()
    _, _, alpha = layer(data.h, data.pos, data.edge_index, data.edge_attr,
                        return_attention=True)
    assert (alpha > 0).all()
    sums = scatter(alpha, data.edge_index[1], dim=0,
                   dim_size=data.num_nodes, reduce="sum")
    torch.testing.assert_close(sums, torch.ones_like(sums), atol=ATOL, rtol=0)
    # Normalised per target, not per source: source sums differ from 1.
    src_sums = scatter(alpha, data.edge_index[0], dim=0,
                       dim_size=data.num_nodes, reduce="sum")
    assert (src_sums - 1).abs().max() > 1e-3
    # Attention is not trivially uniform.
    degree = scatter(torch.ones_like(alpha), data.edge_index[1], dim=0,
                     dim_size=data.num_nodes, reduce="sum")
    assert (alpha - 1 / degree[data.edge_index[1]]).abs().max() > 1e-3


def test_matches_dense_reference() -> None:
    """Compares against a direct, loop-based evaluation of the equations."""
    data = complete_graph_batch(sizes=(5,))
    h, x, ei = data.h, data.pos, data.edge_index
    ea = with_direction(data.edge_attr, x, ei)
    layer = make_layer(edge_dim=EDGE_DIM + 3, coords_agg_norm=2.0)
    boost_coordinate_head(layer)
    h_out, x_out, alpha = layer(h, x, ei, ea, return_attention=True)

    with torch.no_grad():
        for i in range(data.num_nodes):
            edges = (ei[1] == i).nonzero().flatten().tolist()
            scores = torch.stack([
                layer.phi_att(torch.cat([h[i], h[ei[0, k]], ea[k]])).squeeze()
                for k in edges
            ])
            weights = torch.exp(scores) / torch.exp(scores).sum()
            torch.testing.assert_close(alpha[edges], weights, atol=ATOL, rtol=0)

            m_sum = torch.zeros(layer.message_channels, dtype=h.dtype)
            dx = torch.zeros(3, dtype=h.dtype)
            for w, k in zip(weights, edges):
                j = ei[0, k].item()
                diff = x[i] - x[j]
                m_ij = layer.phi_e(torch.cat([h[i], h[j], diff.dot(diff).view(1), ea[k]]))
                m_sum += w * m_ij
                dx += w * diff / (diff.norm() + 1) * layer.phi_x(torch.cat([m_ij, ea[k]]))
            h_ref = layer.layer_norm(h[i] + layer.phi_h(torch.cat([h[i], m_sum])))
            torch.testing.assert_close(h_out[i], h_ref, atol=ATOL, rtol=0)
            torch.testing.assert_close(x_out[i], x[i] + dx / 2.0, atol=ATOL, rtol=0)


def test_permutation_equivariance() -> None:
    data = complete_graph_batch(sizes=(6, 8))
    layer = make_layer(edge_dim=EDGE_DIM + 3)
    boost_coordinate_head(layer)
    n, e = data.num_nodes, data.edge_index.size(1)
    edge_attr = with_direction(data.edge_attr, data.pos, data.edge_index)

    perm = torch.randperm(n)  # new node k is old node perm[k]
    inv = torch.argsort(perm)
    eperm = torch.randperm(e)
    edge_index_p = inv[data.edge_index][:, eperm]
    edge_attr_p = edge_attr[eperm]

    h_out, x_out, alpha = layer(data.h, data.pos, data.edge_index, edge_attr,
                                return_attention=True)
    h_p, x_p, alpha_p = layer(data.h[perm], data.pos[perm], edge_index_p,
                              edge_attr_p, return_attention=True)

    assert not torch.equal(perm, torch.arange(n))
    torch.testing.assert_close(h_p, h_out[perm], atol=ATOL, rtol=0)
    torch.testing.assert_close(x_p, x_out[perm], atol=ATOL, rtol=0)
    torch.testing.assert_close(alpha_p, alpha[eperm], atol=ATOL, rtol=0)


@pytest.mark.parametrize("reflection", [False, True])
def test_e3_equivariance_with_invariant_edge_attr(reflection: bool) -> None:
    data = complete_graph_batch(sizes=(6, 8))
    layer = make_layer(coords_agg_norm=2.0)
    boost_coordinate_head(layer)

    q = random_orthogonal(reflection)
    assert torch.det(q).item() == pytest.approx(-1.0 if reflection else 1.0)
    t = 5.0 * torch.randn(1, 3, dtype=torch.float64)

    h_out, x_out, alpha = layer(data.h, data.pos, data.edge_index,
                                data.edge_attr, return_attention=True)
    h_rot, x_rot, alpha_rot = layer(data.h, data.pos @ q.T + t,
                                    data.edge_index, data.edge_attr,
                                    return_attention=True)

    assert (x_out - data.pos).abs().max() > 1e-2
    torch.testing.assert_close(h_rot, h_out, atol=ATOL, rtol=0)
    torch.testing.assert_close(x_rot, x_out @ q.T + t, atol=ATOL, rtol=0)
    torch.testing.assert_close(alpha_rot, alpha, atol=ATOL, rtol=0)


def test_direction_edge_attr() -> None:
    """With the GGIK+ direction vector in edge_attr the layer remains
    translation-equivariant, but is (by design) no longer rotation-equivariant
    — which also shows that the equivariance checks can detect a violation."""
    data = complete_graph_batch(sizes=(6, 8))
    layer = make_layer(edge_dim=EDGE_DIM + 3)
    boost_coordinate_head(layer)
    ei = data.edge_index
    x = data.pos

    def run(pos: Tensor) -> Tuple[Tensor, Tensor]:
        return layer(data.h, pos, ei, with_direction(data.edge_attr, pos, ei))

    h_out, x_out = run(x)

    t = 5.0 * torch.randn(1, 3, dtype=torch.float64)
    h_t, x_t = run(x + t)
    torch.testing.assert_close(h_t, h_out, atol=ATOL, rtol=0)
    torch.testing.assert_close(x_t, x_out + t, atol=ATOL, rtol=0)

    q = random_orthogonal(False)
    h_rot, x_rot = run(x @ q.T)
    assert (h_rot - h_out).abs().max() > 1e-4
    assert (x_rot - x_out @ q.T).abs().max() > 1e-4


def test_update_coords_false() -> None:
    data = complete_graph_batch()
    layer = make_layer(update_coords=False)
    assert layer.phi_x is None
    h_out, x_out = layer(data.h, data.pos, data.edge_index, data.edge_attr)
    assert torch.equal(x_out, data.pos)
    assert not torch.allclose(h_out, data.h)


@pytest.mark.parametrize("update_coords", [True, False])
def test_parameters_registered_and_receive_gradients(update_coords: bool) -> None:
    data = complete_graph_batch()
    layer = make_layer(edge_dim=EDGE_DIM + 3, update_coords=update_coords)
    edge_attr = with_direction(data.edge_attr, data.pos, data.edge_index)
    params_before = dict(layer.named_parameters())
    optimizer = torch.optim.AdamW(layer.parameters(), lr=1e-2)
    initial = {name: p.detach().clone() for name, p in params_before.items()}

    h_out, x_out = layer(data.h, data.pos, data.edge_index, edge_attr)
    params_after = dict(layer.named_parameters())
    assert len(params_before) == len(params_after) > 0
    assert params_before.keys() == params_after.keys()
    assert any(name.startswith("phi_x.") for name in params_after) == update_coords
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
