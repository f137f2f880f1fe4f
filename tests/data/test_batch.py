"""Model inputs: the full graph built from given node positions."""

from __future__ import annotations

import pytest
import torch

from ggik_core.data.batch import BatchOptions, make_batch, with_answer_positions
from ggik_core.data.edges import EdgeSpec
from ggik_core.data.graph import build_problem_graphs
from ggik_core.robots.catalog import load_arm

EDGES = {False: BatchOptions(EdgeSpec(("distance", "known"))),
         True: BatchOptions(EdgeSpec(("distance", "known", "direction")))}


@pytest.mark.parametrize("directions", [False, True])
def test_the_full_graph_from_true_positions_is_the_one_make_batch_builds(directions):
    robot = load_arm("panda")
    q = robot.sample_q(5, torch.Generator().manual_seed(0))
    g = build_problem_graphs(robot.chain.expand(5, *robot.chain.shape), q, robot.fk(q))
    full = make_batch(g, EDGES[directions])
    partial = make_batch(g, EDGES[directions], with_answer=False)
    assert partial.x is None and partial.e_full is None
    rebuilt = with_answer_positions(partial, g.pos)
    assert torch.equal(rebuilt.x, full.x) and torch.equal(rebuilt.e_full, full.e_full)
    assert torch.equal(rebuilt.e_partial, partial.e_partial) and torch.equal(rebuilt.h, partial.h)


def test_the_full_graph_follows_the_given_positions():
    robot = load_arm("ur10")
    q = robot.sample_q(3, torch.Generator().manual_seed(1))
    g = build_problem_graphs(robot.chain.expand(3, *robot.chain.shape), q, robot.fk(q))
    b = make_batch(g, EDGES[False], with_answer=False)
    pos = g.pos.float() + 0.1 * torch.randn(g.pos.shape, generator=torch.Generator().manual_seed(2))
    out = with_answer_positions(b, pos)
    torch.testing.assert_close(out.e_full[..., 0], torch.cdist(pos, pos))
    assert torch.equal(out.e_full[..., 1], b.e_partial[..., 1])  # the known-edge flag of the partial graph
