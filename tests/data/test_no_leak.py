"""No answer leaks into the conditional path (spec §4).

Two different configurations that reach the same goal must give bit-identical partial-graph
inputs, and therefore bit-identical partial-encoder and prior outputs, while the full-graph
inputs (the answer) differ.
"""

from __future__ import annotations

import pytest
import torch

from ggik_core.data.batch import BatchOptions, GraphBatch, make_batch
from ggik_core.data.edges import EdgeSpec
from ggik_core.robots.catalog import load_arm
from ggik_core.data.graph import build_problem_graphs
from ggik_core.model.cvae import GGIK, ModelConfig
from ggik_core.solve.refine import RefineConfig, refine

EDGES = {False: BatchOptions(EdgeSpec(("distance", "known"))),
         True: BatchOptions(EdgeSpec(("distance", "known", "direction")))}

PARTIAL = ("h", "x_partial", "edge_partial", "edge_index", "anchor")
FULL = ("x", "edge_full")
Q1 = [0.4, 0.6, -0.3, -1.2, 0.5, 1.0, 0.2]  # inside the limits of both arms


def self_motion_pair(name: str):
    """``(robot, q1, q2, goal)`` with ``FK(q1) == FK(q2) == goal`` and ``q1 != q2`` (7-DOF arm)."""
    robot = load_arm(name)
    q1 = torch.tensor([Q1], dtype=torch.float64)
    goal = robot.fk(q1)
    start = q1.clone()
    start[0, 2] += 0.5  # move the elbow joint; refinement slides back onto the self-motion manifold
    cfg = RefineConfig(max_iter=300, pos_tol=1e-13, rot_tol=1e-13)
    q2 = refine(robot.chain, start, goal, robot.lower, robot.upper, cfg)
    return robot, q1, q2, goal


def batches(name: str, directions: bool, home_init: bool = False) -> tuple[GraphBatch, GraphBatch]:
    robot, q1, q2, goal = self_motion_pair(name)
    chain = robot.chain[None]
    g1 = build_problem_graphs(chain, q1, goal)
    g2 = build_problem_graphs(chain, q2, goal)  # the SAME goal tensor
    opts = BatchOptions(EDGES[directions].edges, home_init)
    return make_batch(g1, opts), make_batch(g2, opts)


@pytest.mark.parametrize("name", ["kuka", "panda"])
def test_second_solution_is_a_real_second_solution(name):
    robot, q1, q2, goal = self_motion_pair(name)
    assert float((q2 - q1).abs().max()) > 0.1
    assert bool(robot.within_limits(q2).all())
    assert torch.allclose(robot.fk(q2), goal, atol=1e-10, rtol=0)
    assert torch.allclose(robot.fk(q1), goal, atol=1e-10, rtol=0)


@pytest.mark.parametrize("home_init", [False, True])
@pytest.mark.parametrize("directions", [True, False])
@pytest.mark.parametrize("name", ["kuka", "panda"])
def test_partial_inputs_bit_identical(name, directions, home_init):
    b1, b2 = batches(name, directions, home_init)
    for field in PARTIAL:
        t1, t2 = getattr(b1, field), getattr(b2, field)
        assert t1.dtype == t2.dtype and t1.shape == t2.shape, field
        assert torch.equal(t1, t2), f"partial input {field!r} depends on the hidden configuration"
    # the answer differs: the test would notice a leak
    for field in FULL:
        assert not torch.equal(getattr(b1, field), getattr(b2, field)), field
    assert float((b1.x - b2.x).abs().max()) > 1e-2


@pytest.mark.parametrize("name", ["kuka", "panda"])
def test_stored_problem_graph_partial_fields_identical(name):
    robot, q1, q2, goal = self_motion_pair(name)
    g1 = build_problem_graphs(robot.chain[None], q1, goal)
    g2 = build_problem_graphs(robot.chain[None], q2, goal)
    assert torch.equal(g1.home, g2.home)
    assert torch.equal(g1.known, g2.known)
    assert torch.equal(g1.goal, g2.goal)
    assert not torch.equal(g1.pos, g2.pos)


@pytest.mark.parametrize("home_init", [False, True])
@pytest.mark.parametrize("name", ["kuka", "panda"])
@pytest.mark.parametrize("layer", ["egnn", "egat"])
def test_conditional_path_outputs_bit_identical(layer, name, home_init):
    torch.manual_seed(0)
    cfg = ModelConfig(layer=layer, hidden=16, layers=2, latent=4, components=3, message=8, home_init=home_init)
    model = GGIK(cfg).eval()
    b1, b2 = batches(name, cfg.layer == "egat", cfg.home_init)
    with torch.no_grad():
        h1, x1 = model.encode_partial(b1)
        h2, x2 = model.encode_partial(b2)
        assert torch.equal(h1, h2) and torch.equal(x1, x2)
        for p1, p2 in zip(model.prior(h1), model.prior(h2)):
            assert torch.equal(p1, p2)
        # the posterior sees the answer: it must differ (so the comparison above has teeth)
        mu1, _ = model.posterior(b1, h1)
        mu2, _ = model.posterior(b2, h2)
        assert not torch.equal(mu1, mu2)
    # sampling with the same generator gives the same candidates for both
    s1 = model.sample(b1, 4, generator=torch.Generator().manual_seed(3))
    s2 = model.sample(b2, 4, generator=torch.Generator().manual_seed(3))
    assert torch.equal(s1, s2)


def test_a_leaking_batch_would_be_caught():
    """The comparison detects a leak: ground-truth directions on every edge differ between q1 and q2."""
    b1, b2 = batches("kuka", directions=True)
    leak1 = torch.cat([b1.edge_partial[:, :2], b1.edge_full[:, 2:5]], -1)
    leak2 = torch.cat([b2.edge_partial[:, :2], b2.edge_full[:, 2:5]], -1)
    assert not torch.equal(leak1, leak2)
