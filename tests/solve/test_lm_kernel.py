"""The compiled LM kernel against the torch loop it replaces on the CPU."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ggik_core.robots.catalog import ARM_NAMES, load_arm
from ggik_core.solve import lm_kernel
from ggik_core.solve.lm_math import lm_step, pose_residual
from ggik_core.solve.refine import RefineConfig, refine
from ggik_core.solve.solver import distinct_count, errors, random_seeds


def _goals(robot, G: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return robot.fk(robot.sample_q(G, gen)), robot.sample_q(G, gen)


@pytest.mark.parametrize("arm", ARM_NAMES)
def test_residual_and_jacobian_match_the_torch_ones(arm):
    robot = load_arm(arm)
    goals, q = _goals(robot, 16, 0)
    w = 0.5
    e_t, J_t = pose_residual(robot.chain, q, goals, w)
    n = robot.dof
    L = robot.chain.numpy()
    e, J = np.empty(6), np.empty((6, n))
    scratch = (np.empty((3, n)), np.empty((3, n)), np.empty((3, 4)), np.empty((3, 4)))
    for b in range(16):
        g = goals[b].numpy()
        err = lm_kernel.residual(L, q[b].numpy().copy(), np.ascontiguousarray(g[:3, :3]), g[:3, 3].copy(), w, e, J, *scratch)
        np.testing.assert_allclose(e, e_t[b].numpy(), rtol=0, atol=1e-12)
        np.testing.assert_allclose(J, J_t[b].numpy(), rtol=0, atol=1e-12)
        assert err == pytest.approx(float((e_t[b] ** 2).sum()), rel=1e-12)


@pytest.mark.parametrize("arm", ["ur10", "kuka"])
def test_step_matches_lm_step_with_blocked_and_wrapping_joints(arm):
    """Rows with joints on their bounds (descent pointing in or out) and, on the UR10, joints that
    span a full turn: the kernel's Cholesky step equals the torch step."""
    robot = load_arm(arm)
    n = robot.dof
    goals, q = _goals(robot, 24, 1)
    lo, hi = robot.lower.clone(), robot.upper.clone()
    gen = torch.Generator().manual_seed(2)
    pick = torch.rand(24, n, generator=gen)
    q = torch.where(pick < 0.2, lo, torch.where(pick > 0.8, hi, q))  # about 40 % of joints on a bound
    lam = torch.logspace(-6, 1, 24, dtype=torch.float64)
    e_t, J_t = pose_residual(robot.chain, q, goals, 0.5)
    full = (hi - lo) >= 2 * math.pi
    turn = torch.where(full, 2 * math.pi, 0.0).to(torch.float64)
    assert bool(full.any()) == (arm == "ur10")
    q_t = lm_step(J_t.permute(1, 2, 0).contiguous(), e_t.T.contiguous(), q.T.contiguous(), lam, lo[:, None], hi[:, None],
                  turn[:, None] if bool(full.any()) else None).T
    H, g, free, q_new = np.empty((n, n)), np.empty(n), np.empty(n, dtype=bool), np.empty(n)
    for b in range(24):
        lm_kernel.step(J_t[b].numpy().copy(), e_t[b].numpy().copy(), q[b].numpy().copy(), float(lam[b]), lo.numpy(),
                       hi.numpy(), turn.numpy(), q_new, H, g, free)
        np.testing.assert_allclose(q_new, q_t[b].numpy(), rtol=0, atol=1e-10)


@pytest.mark.parametrize("arm", ARM_NAMES)
def test_kernel_and_torch_loop_find_the_same_solutions(arm):
    """Pools of random seeds: both backends solve every goal with every returned candidate exact,
    and find about as many distinct solutions."""
    robot = load_arm(arm)
    goals, _ = _goals(robot, 12, 3)
    seeds = random_seeds(robot, 12, 20, 4)
    lo, hi = robot.bounds()
    found = {}
    for backend in ("torch", "kernel"):
        q = refine(robot.chain, seeds, goals[:, None], lo, hi, RefineConfig(backend=backend), keep=16)
        pos, rot, inside = errors(robot, q, goals)
        assert q.shape == (12, 16, robot.dof)
        assert bool(((pos < 1e-5 * 1.001) & (rot < 1e-4 * 1.001) & inside).all()), backend
        found[backend] = int(distinct_count(q, torch.ones(12, 16, dtype=torch.bool), 0.05).sum())
    assert abs(found["kernel"] - found["torch"]) <= 0.15 * found["torch"]


def test_kernel_results_do_not_depend_on_threads_or_chunks():
    """Re-seeds are keyed by goal, so splitting the goals over threads or time-budget chunks
    changes nothing; the same call twice gives the same bits."""
    robot = load_arm("lwa4p")  # re-seeds often (its ranges stop short of a full turn)
    goals, _ = _goals(robot, 10, 5)
    seeds = random_seeds(robot, 10, 12, 6)
    lo, hi = robot.bounds()
    runs = [refine(robot.chain, seeds, goals[:, None], lo, hi, RefineConfig(backend="kernel", **kw), keep=8)
            for kw in ({}, {}, {"threads": 2}, {"time_budget_s": 1e6})]
    for q in runs[1:]:
        torch.testing.assert_close(q, runs[0], rtol=0, atol=0)
    # and a different seed of the configuration changes the re-seeds
    other = refine(robot.chain, seeds, goals[:, None], lo, hi, RefineConfig(backend="kernel", seed=1), keep=8)
    assert not torch.equal(other, runs[0])


def test_kernel_backend_refuses_what_it_cannot_run():
    robot = load_arm("kuka")
    goals, q = _goals(robot, 2, 7)
    with pytest.raises(ValueError, match="shared by every row"):
        refine(robot.chain.expand(2, *robot.chain.shape), q, goals, robot.lower, robot.upper, RefineConfig(backend="kernel"))
    with pytest.raises(ValueError, match="unknown refine backend"):
        refine(robot.chain, q, goals, robot.lower, robot.upper, RefineConfig(backend="numpy"))
