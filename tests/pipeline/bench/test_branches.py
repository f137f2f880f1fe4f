"""The analytic branch oracle (eaik) on the two 6R catalog arms, and the coverage metric."""

from __future__ import annotations

import math

import pytest
import torch

from ggik_core.robots.catalog import load_arm
from ggik_core.robots.transforms import wrap_angle
from ggik_core.solve.solver import errors
from pipeline.bench.branches import AnalyticIK, coverage

eaik = pytest.importorskip("eaik.pybindings.EAIK", reason="eaik (the analytic IK oracle) is not installed")
GOALS = 60
TOL = 0.05


@pytest.mark.parametrize("name, exact", [("ur10", True), ("lwa4p", False)])
def test_oracle_lists_exact_distinct_solutions_inside_the_limits(name, exact):
    robot = load_arm(name)
    oracle = AnalyticIK(eaik, robot)
    assert oracle.exact is exact  # the LWA 4P's URDF geometry needs the idealised twin
    q_true = robot.sample_q(GOALS, torch.Generator().manual_seed(3))
    goals = robot.fk(q_true)
    sols = oracle.solve(goals, TOL)
    found = 0
    for g, A in enumerate(sols):
        assert len(A) <= 16
        if len(A) == 0:
            continue
        pos, rot, inside = errors(robot, A[None], goals[g:g + 1])
        assert float(pos.max()) < 1e-6 and float(rot.max()) < 1e-6 and bool(inside.all())
        gap = wrap_angle(A[:, None] - A[None]).abs().amax(-1) + torch.eye(len(A)) * 10
        assert float(gap.min()) >= TOL  # distinct on the circle
        found += bool((wrap_angle(A - q_true[g]).abs().amax(-1) < 1e-4).any())
    assert found >= 0.95 * GOALS  # the sampled configuration is one of the listed branches
    assert 4.0 <= sum(len(a) for a in sols) / GOALS <= 8.0


def test_coverage_is_the_mean_share_of_analytic_solutions_reached():
    A = [torch.tensor([[0.0] * 6, [1.0] * 6, [2.0] * 6, [3.0] * 6]), torch.tensor([[0.5] * 6, [-0.5] * 6]), torch.zeros(0, 6)]
    q = torch.stack([
        torch.tensor([[0.01] * 6, [1.0] * 6, [1.02] * 6, [9.0] * 6]),  # reaches 2 of 4
        torch.tensor([[0.5 + 2 * math.pi] * 6, [-0.5] * 6, [0.0] * 6, [0.0] * 6]),  # 2 of 2 (one alias 2π away)
        torch.zeros(4, 6),  # no analytic solutions: not counted
    ]).double()
    ok = torch.ones(3, 4, dtype=torch.bool)
    assert coverage(q, ok, A, TOL) == pytest.approx((0.5 + 1.0) / 2)
    ok[1, 1] = False  # a candidate that is not exact does not count
    assert coverage(q, ok, A, TOL) == pytest.approx((0.5 + 0.5) / 2)
    assert coverage(q, torch.zeros_like(ok), A, TOL) == 0.0
    assert coverage(q, ok, [torch.zeros(0, 6)] * 3, TOL) is None
