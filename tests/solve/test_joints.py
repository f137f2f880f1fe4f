"""Joint angles from node positions (spec §4): exact on true positions, batched, robust to noise.

The true node positions of a configuration ``q`` are ``node_positions(chain_frames(chain_c, q))``
on the canonical chain; recovering the joints from them must give back ``q`` (modulo 2π) and a
configuration whose forward kinematics reaches the goal.
"""

from __future__ import annotations

import math

import pytest
import torch

from ggik_core.robots.catalog import ARM_NAMES, load_arm
from ggik_core.data.graph import canonical_chain, node_positions
from ggik_core.solve.joints import fit_to_limits, recover_joints
from ggik_core.robots.kinematics import chain_frames, forward_kinematics
from ggik_core.data.problems import random_problems
from ggik_core.robots.random_robots import RandomRobotConfig
from ggik_core.robots.transforms import invert

TOL = 1e-9


def pose_gap(T: torch.Tensor, T_goal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Position distance and largest rotation-matrix entry difference (computed here, not by the library)."""
    pos = (T[..., :3, 3] - T_goal[..., :3, 3]).norm(dim=-1)
    rot = (T[..., :3, :3] - T_goal[..., :3, :3]).abs().amax((-1, -2))
    return pos, rot


def angle_gap(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|a - b| on the circle, elementwise."""
    d = (a - b) % (2 * math.pi)
    return torch.minimum(d, 2 * math.pi - d)


def true_problem(chain: torch.Tensor, q: torch.Tensor):
    """Canonical chain, true node positions and canonical goal of ``q`` on ``chain``."""
    chain_c, base = canonical_chain(chain)
    x = node_positions(chain_frames(chain_c, q))
    goal = forward_kinematics(chain, q)
    goal_c = invert(base) @ goal
    return chain_c, x, goal, goal_c


@pytest.mark.parametrize("arm", ARM_NAMES)
def test_true_positions_give_back_q_on_catalog_arms(arm):
    robot = load_arm(arm)
    gen = torch.Generator().manual_seed(11)
    q = robot.sample_q(64, gen)
    chain_c, x, goal, goal_c = true_problem(robot.chain, q)
    q_rec = recover_joints(chain_c, x, goal_c)
    assert q_rec.shape == q.shape
    assert torch.all(q_rec > -math.pi - 1e-12) and torch.all(q_rec <= math.pi + 1e-12)
    assert angle_gap(q_rec, q).max() < TOL
    pos, rot = pose_gap(robot.fk(q_rec), goal)
    assert pos.max() < TOL and rot.max() < TOL


@pytest.mark.parametrize("geometry", ["coplanar", "noncoplanar"])
@pytest.mark.parametrize("dof", [5, 6, 7, 8])
def test_true_positions_give_back_q_on_random_robots(geometry, dof):
    gen = torch.Generator().manual_seed(100 + dof)
    pb = random_problems(48, dof, RandomRobotConfig(geometry=geometry), gen)
    if geometry == "noncoplanar":
        assert bool((pb.n_skew > 0).any()), "the non-coplanar sample should contain skew robots"
    chain_c, x, goal, goal_c = true_problem(pb.chain, pb.q)
    q_rec = recover_joints(chain_c, x, goal_c)
    assert angle_gap(q_rec, pb.q).max() < TOL
    pos, rot = pose_gap(forward_kinematics(pb.chain, q_rec), pb.goal)
    assert pos.max() < TOL and rot.max() < TOL


def test_batched_over_samples_equals_one_by_one():
    """x ``(G, k, N, 3)`` with chain ``(G, 1, n+1, 4, 4)``: k configurations of each of G robots."""
    gen = torch.Generator().manual_seed(3)
    G, k, dof = 5, 4, 7
    pb = random_problems(G, dof, RandomRobotConfig(geometry="noncoplanar"), gen)
    chain = pb.chain  # (G, n+1, 4, 4)
    q = (torch.rand(G, k, dof, generator=gen, dtype=torch.float64) * 2 - 1) * math.pi
    chain_c, base = canonical_chain(chain)
    x = node_positions(chain_frames(chain_c[:, None], q))  # (G, k, N, 3)
    goal = forward_kinematics(chain[:, None], q)  # (G, k, 4, 4)
    goal_c = invert(base[:, None]) @ goal
    assert x.shape == (G, k, 2 * dof + 4, 3)
    q_rec = recover_joints(chain_c[:, None], x, goal_c)
    assert q_rec.shape == (G, k, dof)
    assert angle_gap(q_rec, q).max() < TOL
    pos, rot = pose_gap(forward_kinematics(chain[:, None], q_rec), goal)
    assert pos.max() < TOL and rot.max() < TOL
    for g in range(G):
        for s in range(k):
            one = recover_joints(chain_c[g], x[g, s], goal_c[g, s])
            assert torch.allclose(one, q_rec[g, s], rtol=0, atol=1e-12)


def test_batched_samples_share_one_goal_and_noise_stays_small():
    """k noisy copies of the true points per goal, goal ``(G, 1, 4, 4)`` broadcast over samples."""
    gen = torch.Generator().manual_seed(5)
    G, k, dof, noise = 6, 8, 6, 1e-3
    pb = random_problems(G, dof, RandomRobotConfig(geometry="coplanar"), gen)
    chain_c, x, goal, goal_c = true_problem(pb.chain, pb.q)  # x (G, N, 3)
    xs = x[:, None].repeat(1, k, 1, 1)
    xs[:, 1:] += noise * torch.randn(G, k - 1, *x.shape[1:], generator=gen, dtype=torch.float64)
    q_rec = recover_joints(chain_c[:, None], xs, goal_c[:, None])
    assert q_rec.shape == (G, k, dof)
    # the clean copy is exact, the noisy ones are close but not identical
    assert angle_gap(q_rec[:, 0], pb.q).max() < TOL
    pos, rot = pose_gap(forward_kinematics(pb.chain[:, None], q_rec), goal[:, None])
    assert pos[:, 0].max() < TOL
    assert pos[:, 1:].max() < 1e-2 and rot[:, 1:].max() < 1e-2
    assert pos[:, 1:].min() > 0


@pytest.mark.parametrize("arm", ARM_NAMES)
def test_noisy_points_give_small_pose_error_on_catalog_arms(arm):
    robot = load_arm(arm)
    gen = torch.Generator().manual_seed(21)
    q = robot.sample_q(32, gen)
    chain_c, x, goal, goal_c = true_problem(robot.chain, q)
    x_noisy = x + 1e-3 * torch.randn(x.shape, generator=gen, dtype=torch.float64)
    q_rec = recover_joints(chain_c, x_noisy, goal_c)
    assert torch.isfinite(q_rec).all()
    pos, rot = pose_gap(robot.fk(q_rec), goal)
    assert pos.max() < 1e-2, pos.max()
    assert rot.max() < 1e-2, rot.max()
    # a 1 mm perturbation must move something (else the points would be ignored)
    assert angle_gap(q_rec, q).max() > 1e-6


def test_recovery_uses_the_predicted_points():
    """Points of a different configuration (same goal input) give a different answer."""
    robot = load_arm("panda")
    gen = torch.Generator().manual_seed(8)
    q1, q2 = robot.sample_q(2, gen)
    chain_c, x2, _, _ = true_problem(robot.chain, q2)
    _, _, _, goal_c1 = true_problem(robot.chain, q1)
    q_rec = recover_joints(chain_c, x2, goal_c1)
    assert angle_gap(q_rec[:-1], q2[:-1]).max() < TOL  # all but the last joint follow the points


def test_fit_to_limits_ur10_two_pi_limits():
    robot = load_arm("ur10")  # ±2π on every joint but the third (±π)
    lower, upper = robot.lower, robot.upper
    assert upper[0] == pytest.approx(2 * math.pi) and upper[2] == pytest.approx(math.pi)
    q = torch.tensor([7.0, -7.0, 4.0, 5.0, -5.0, 0.3], dtype=torch.float64)
    out = fit_to_limits(q, lower, upper)
    # out of range: shifted by whole turns into the limits (on ±2π joints more than one shift fits)
    for j in (0, 1, 2):
        assert lower[j] <= out[j] <= upper[j], (j, out[j])
        turns = float(out[j] - q[j]) / (2 * math.pi)
        assert turns != 0 and abs(turns - round(turns)) < 1e-12
    assert out[2] == pytest.approx(4.0 - 2 * math.pi, abs=1e-12)  # the only fit on the ±π joint
    # angles inside the limits are never moved, even where a shifted copy would also fit
    assert out[3] == 5.0 and out[4] == -5.0 and out[5] == 0.3


def test_fit_to_limits_keeps_angles_that_do_not_fit():
    robot = load_arm("panda")  # joint 4 in [-3.0718, -0.0698]
    lower, upper = robot.lower, robot.upper
    q = torch.zeros(3, 7, dtype=torch.float64)
    q[:, 3] = torch.tensor([3.25, 0.5, 3.0], dtype=torch.float64)
    out = fit_to_limits(q, lower, upper)
    assert out[0, 3] == pytest.approx(3.25 - 2 * math.pi, abs=1e-12)  # -3.033: fits after -2π
    assert out[1, 3] == 0.5  # 0.5 - 2π = -5.78: below the limit, kept
    assert out[2, 3] == 3.0  # 3.0 - 2π = -3.28: below -3.0718, kept
    assert torch.equal(out[:, [0, 1, 2, 4, 5, 6]], q[:, [0, 1, 2, 4, 5, 6]])


def test_fit_to_limits_only_shifts_by_whole_turns_and_broadcasts():
    robot = load_arm("ur10")
    gen = torch.Generator().manual_seed(2)
    q = (torch.rand(4, 5, 6, generator=gen, dtype=torch.float64) * 2 - 1) * 9.0
    out = fit_to_limits(q, robot.lower, robot.upper)
    assert out.shape == q.shape
    turns = (out - q) / (2 * math.pi)
    assert torch.allclose(turns, turns.round(), rtol=0, atol=1e-9)
    was_in = (q >= robot.lower) & (q <= robot.upper)
    assert torch.equal(out[was_in], q[was_in])
    now_in = (out >= robot.lower) & (out <= robot.upper)
    assert bool(now_in.all()), "every angle fits the ±2π / ±π limits after at most two turns"
    assert bool((~was_in).any())
