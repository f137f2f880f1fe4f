"""The torch-free multi-start path against the torch functions it mirrors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ggik_core.robots.catalog import ARM_NAMES, load_arm
from ggik_core.robots.kinematics import forward_kinematics as fk_torch
from ggik_core.robots.kinematics import home_frames as home_torch
from ggik_core.robots.reach import home_frames as home_numpy
from ggik_core.robots.transforms import pose_errors as pose_errors_torch
from ggik_core.robots.transforms import wrap_angle as wrap_torch
from ggik_core.solve import multistart as ms
from ggik_core.solve.joints import fit_to_limits as fit_torch
from ggik_core.solve.refine import RefineConfig, refine


@pytest.mark.parametrize("arm", ARM_NAMES)
def test_forward_kinematics_and_errors_match_torch(arm):
    robot = load_arm(arm)
    gen = torch.Generator().manual_seed(0)
    q = robot.sample_q(24, gen).reshape(4, 6, robot.dof)
    goals = robot.fk(robot.sample_q(4, gen))
    T = ms.forward_kinematics(robot.chain_np, q.numpy())
    np.testing.assert_allclose(T, fk_torch(robot.chain, q).numpy(), rtol=0, atol=1e-13)
    np.testing.assert_allclose(home_numpy(robot.chain_np), home_torch(robot.chain).numpy(), rtol=0, atol=1e-13)
    pos, rot = ms.pose_errors(T, goals.numpy()[:, None])
    pos_t, rot_t = pose_errors_torch(torch.from_numpy(T), goals[:, None])
    np.testing.assert_allclose(pos, pos_t.numpy(), rtol=0, atol=1e-13)
    np.testing.assert_allclose(rot, rot_t.numpy(), rtol=0, atol=1e-12)


def test_small_rotation_errors_keep_their_digits():
    """The rotation error of a pose turned by 1e-9 rad is 1e-9 (an arccos of the trace gives 0 or
    about 2e-8)."""
    robot = load_arm("kuka")
    T = ms.forward_kinematics(robot.chain_np, np.full(7, 0.3))
    turn = np.eye(4)
    turn[:2, :2] = [[math.cos(1e-9), -math.sin(1e-9)], [math.sin(1e-9), math.cos(1e-9)]]
    _, rot = ms.pose_errors(T @ turn, T)
    assert rot == pytest.approx(1e-9, rel=1e-6)


def test_angle_helpers_match_torch():
    gen = torch.Generator().manual_seed(1)
    q = (torch.rand(200, 7, generator=gen, dtype=torch.float64) - 0.5) * 30
    np.testing.assert_array_equal(ms.wrap_angle(q.numpy()), wrap_torch(q).numpy())
    lower, upper = torch.full((7,), -2.9, dtype=torch.float64), torch.full((7,), 2.9, dtype=torch.float64)
    upper[3], lower[5] = 6.0, -6.0
    expected = fit_torch(q, lower, upper).clamp(-6.0, 6.0)
    expected = torch.maximum(torch.minimum(expected, upper), lower)
    np.testing.assert_array_equal(ms.fit_to_limits(q.numpy(), lower.numpy(), upper.numpy()), expected.numpy())


@pytest.mark.parametrize("arm", ["lwa4p", "panda"])
def test_numpy_pools_give_what_the_torch_entry_gives(arm):
    """``multistart.refine_pools`` and ``refine(..., keep)`` run the same driver on the CPU: the
    same candidates, bit for bit."""
    robot = load_arm(arm)
    gen = torch.Generator().manual_seed(2)
    goals = robot.fk(robot.sample_q(6, gen))
    seeds = robot.sample_q(6 * 10, gen).reshape(6, 10, robot.dof) + 2 * math.pi * torch.randint(-1, 2, (6, 10, robot.dof), generator=gen)
    lower, upper = robot.bounds()
    cfg = RefineConfig()
    q_t = refine(robot.chain, seeds, goals[:, None], lower, upper, cfg, keep=8)
    q_n = ms.refine_pools(robot.chain_np, seeds.numpy(), goals.numpy(), lower.numpy(), upper.numpy(), cfg, keep=8)
    np.testing.assert_array_equal(q_n, q_t.numpy())


def test_extra_count_pools_small_batches_more():
    cfg = RefineConfig()
    assert ms.extra_count(32, 50, cfg) == 8  # k * extra_seeds
    assert ms.extra_count(32, 1, cfg) == 32  # up to k more towards min_pool_rows
    assert ms.extra_count(32, 1, RefineConfig(extra_seeds=0)) == 0


@pytest.mark.parametrize("tol", [1.0, 3.5])
def test_first_distinct_matches_the_pairwise_definition_for_wide_tolerances(tol):
    """The cosine pre-filter holds only below π; at and above it every pair is checked. Greedy
    reference: a valid candidate is kept unless some earlier kept one is within ``tol`` in every
    joint on the circle."""
    rng = np.random.default_rng(3)
    q = rng.uniform(-6, 6, (5, 12, 3))
    valid = rng.random((5, 12)) > 0.2
    expected = np.zeros_like(valid)
    for g in range(5):
        for j in range(12):
            near = [(np.abs(ms.wrap_angle(q[g, j] - q[g, i])) < tol).all() for i in range(j) if expected[g, i]]
            expected[g, j] = valid[g, j] and not any(near)
    np.testing.assert_array_equal(ms.first_distinct(q, valid, tol), expected)
    np.testing.assert_array_equal(ms.first_distinct(q, valid, tol, max_elements=1), expected)
