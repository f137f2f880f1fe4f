"""Batched Levenberg–Marquardt refinement and the SO(3) logarithm it uses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ggik_core.robots.catalog import ARM_NAMES, load_arm
from ggik_core.solve.lm_math import so3_log
from ggik_core.solve.refine import RefineConfig, refine
from ggik_core.robots.transforms import rotation_angle


def hat(v: torch.Tensor) -> torch.Tensor:
    z = torch.zeros_like(v[..., 0])
    rows = [
        torch.stack([z, -v[..., 2], v[..., 1]], -1),
        torch.stack([v[..., 2], z, -v[..., 0]], -1),
        torch.stack([-v[..., 1], v[..., 0], z], -1),
    ]
    return torch.stack(rows, -2)


def exp_so3(v: torch.Tensor) -> torch.Tensor:
    return torch.linalg.matrix_exp(hat(v))


def errors_here(robot, q: torch.Tensor, goal: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Position (m) and rotation (rad) errors by FK, computed here with numpy: the angle of
    ``R_goal^T R`` by ``arcsin`` of its skew part near 0 and ``arccos`` of its trace elsewhere."""
    T = robot.fk(q).numpy()
    Tg = np.broadcast_to(goal.numpy(), T.shape)
    pos = np.linalg.norm(T[..., :3, 3] - Tg[..., :3, 3], axis=-1)
    R = np.swapaxes(Tg[..., :3, :3], -1, -2) @ T[..., :3, :3]
    skew = np.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1)
    s = np.linalg.norm(skew, axis=-1) / 2
    c = (np.trace(R, axis1=-2, axis2=-1) - 1) / 2
    rot = np.where(c > 0.5, np.arcsin(np.clip(s, 0, 1)), np.arccos(np.clip(c, -1, 1)))
    return pos, rot


def interior_q(robot, n: int, gen: torch.Generator, margin: float = 0.25) -> torch.Tensor:
    """Configurations at least ``margin`` inside every limit (so a nearby seed is not clipped away)."""
    u = torch.rand(n, robot.dof, generator=gen, dtype=torch.float64)
    lo, hi = robot.lower + margin, robot.upper - margin
    return lo + u * (hi - lo)


@pytest.mark.parametrize("arm", ARM_NAMES)
def test_converges_from_nearby_seeds(arm):
    robot = load_arm(arm)
    gen = torch.Generator().manual_seed(7)
    G, k = 16, 4
    q_true = interior_q(robot, G, gen)
    goal = robot.fk(q_true)
    seeds = q_true[:, None] + 0.05 * torch.randn(G, k, robot.dof, generator=gen, dtype=torch.float64)
    pos0, _ = errors_here(robot, seeds, goal[:, None])
    assert pos0.max() > 1e-3  # the seeds really are off
    cfg = RefineConfig(max_iter=50, pos_tol=1e-7, rot_tol=1e-6)
    q = refine(robot.chain, seeds, goal[:, None], robot.lower, robot.upper, cfg)
    assert q.shape == (G, k, robot.dof)
    pos, rot = errors_here(robot, q, goal[:, None])
    assert pos.max() < 1e-5, pos.max()
    assert rot.max() < 1e-4, rot.max()
    assert bool(robot.within_limits(q, tol=0.0).all())


@pytest.mark.parametrize("arm", ARM_NAMES)
def test_results_stay_within_limits_from_any_seed(arm):
    robot = load_arm(arm)
    gen = torch.Generator().manual_seed(13)
    G, k = 6, 5
    goal = robot.fk(robot.sample_q(G, gen))
    span = (robot.upper - robot.lower)
    far = robot.lower + (torch.rand(G, k, robot.dof, generator=gen, dtype=torch.float64) * 3 - 1) * span  # mostly outside
    assert bool((~robot.within_limits(far, tol=0.0)).any())
    q = refine(robot.chain, far, goal[:, None], robot.lower, robot.upper, RefineConfig(max_iter=15))
    assert torch.isfinite(q).all()
    assert bool(((q >= robot.lower) & (q <= robot.upper)).all())


def test_refine_improves_random_seeds():
    robot = load_arm("kuka")
    gen = torch.Generator().manual_seed(4)
    G, k = 8, 6
    goal = robot.fk(robot.sample_q(G, gen))
    seeds = robot.sample_q(G * k, gen).reshape(G, k, robot.dof)
    q = refine(robot.chain, seeds, goal[:, None], robot.lower, robot.upper, RefineConfig(max_iter=30))
    before, _ = errors_here(robot, seeds, goal[:, None])
    after, _ = errors_here(robot, q, goal[:, None])
    assert np.median(after) < 0.1 * np.median(before)


@pytest.mark.parametrize("backend", ["torch", "kernel"])
def test_broadcasts_over_candidates_and_matches_one_by_one(backend):
    robot = load_arm("panda")
    gen = torch.Generator().manual_seed(9)
    G, k = 3, 4
    q_true = interior_q(robot, G, gen)
    goal = robot.fk(q_true)  # (G, 4, 4)
    seeds = q_true[:, None] + 0.2 * torch.randn(G, k, robot.dof, generator=gen, dtype=torch.float64)
    cfg = RefineConfig(max_iter=8, backend=backend)
    q = refine(robot.chain, seeds, goal[:, None], robot.lower, robot.upper, cfg)
    assert q.shape == (G, k, robot.dof)
    for g in range(G):
        for s in range(k):
            one = refine(robot.chain, seeds[g, s], goal[g], robot.lower, robot.upper, cfg)
            assert one.shape == (robot.dof,)
            assert torch.allclose(one, q[g, s], rtol=0, atol=1e-10)
    if backend == "kernel":
        return
    # a chain with batch dimensions (G, 1, n+1, 4, 4) broadcasts the same way (per-row chains
    # always take the torch loop)
    chain_b = robot.chain.expand(G, 1, *robot.chain.shape)
    q_b = refine(chain_b, seeds, goal[:, None], robot.lower, robot.upper, cfg)
    assert torch.allclose(q_b, q, rtol=0, atol=1e-10)


def test_unreachable_goal_returns_finite_q_with_large_error():
    robot = load_arm("ur10")
    gen = torch.Generator().manual_seed(1)
    goal = robot.fk(robot.sample_q(2, gen))
    goal[:, :3, 3] = torch.tensor([3.0, 0.0, 0.5], dtype=torch.float64)  # 3 m away; the UR10 reaches about 1.3 m
    seeds = robot.sample_q(2 * 5, gen).reshape(2, 5, robot.dof)
    q = refine(robot.chain, seeds, goal[:, None], robot.lower, robot.upper, RefineConfig(max_iter=40))
    assert q.shape == seeds.shape
    assert torch.isfinite(q).all()
    pos, rot = errors_here(robot, q, goal[:, None])
    assert np.isfinite(pos).all() and np.isfinite(rot).all()
    assert pos.min() > 1.0  # at least 1.5 m remain
    assert bool(((q >= robot.lower) & (q <= robot.upper)).all())


# --- so3_log ----------------------------------------------------------------------------------


def random_rotvecs(angles: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    axis = torch.randn(angles.shape[0], 3, generator=gen, dtype=torch.float64)
    return axis / axis.norm(dim=-1, keepdim=True) * angles[:, None]


SMALL = [0.0, 1e-14, 1e-10, 1e-8, 1e-6, 1e-4, 1e-2]
NEAR_PI = [1e-2, 1e-3, 1e-5, 1e-7, 1e-9, 1e-12]


def test_so3_log_norm_is_the_rotation_angle():
    gen = torch.Generator().manual_seed(0)
    angles = torch.cat([
        torch.rand(400, generator=gen, dtype=torch.float64) * math.pi,
        torch.tensor(SMALL * 20, dtype=torch.float64),
        math.pi - torch.tensor(NEAR_PI * 20 + [0.0] * 20, dtype=torch.float64),
    ])
    R = exp_so3(random_rotvecs(angles, gen))
    w = so3_log(R)
    assert w.shape == (angles.shape[0], 3)
    assert torch.allclose(w.norm(dim=-1), rotation_angle(R), rtol=0, atol=1e-12)
    assert torch.allclose(w.norm(dim=-1), angles, rtol=0, atol=1e-9)


@pytest.mark.parametrize("which", ["random", "near_zero", "near_pi"])
def test_so3_log_round_trips(which):
    gen = torch.Generator().manual_seed({"random": 1, "near_zero": 2, "near_pi": 3}[which])
    if which == "random":
        angles = torch.rand(500, generator=gen, dtype=torch.float64) * math.pi
    elif which == "near_zero":
        angles = torch.tensor(SMALL * 30, dtype=torch.float64)
    else:
        angles = math.pi - torch.tensor(NEAR_PI * 30, dtype=torch.float64)
    v = random_rotvecs(angles, gen)
    R = exp_so3(v)
    w = so3_log(R)
    assert torch.isfinite(w).all()
    # exp(log(R)) = R, and below π the rotation vector itself comes back
    assert (exp_so3(w) - R).abs().max() < 1e-12
    assert (w - v).norm(dim=-1).max() < 1e-9


def test_so3_log_at_exactly_pi_gives_an_axis_up_to_sign():
    gen = torch.Generator().manual_seed(4)
    v = random_rotvecs(torch.full((50,), math.pi, dtype=torch.float64), gen)
    v = torch.cat([v, torch.tensor([[math.pi, 0, 0], [0, math.pi, 0], [0, 0, math.pi]], dtype=torch.float64)])
    R = exp_so3(v)
    w = so3_log(R)
    gap = torch.minimum((w - v).norm(dim=-1), (w + v).norm(dim=-1))
    assert gap.max() < 1e-9
    assert (exp_so3(w) - R).abs().max() < 1e-12


def test_so3_log_batched_shape():
    gen = torch.Generator().manual_seed(5)
    v = random_rotvecs(torch.rand(24, generator=gen, dtype=torch.float64) * math.pi, gen).reshape(2, 3, 4, 3)
    w = so3_log(exp_so3(v))
    assert w.shape == (2, 3, 4, 3)
    assert torch.allclose(w, v, rtol=0, atol=1e-9)


# --- limits, continuous joints, re-seeding (issue 9) -------------------------------------------


def test_goal_with_joints_near_their_limits_converges_without_reseeding():
    """Three Panda joints 0.01 rad inside a limit, seeds starting clamped on (beyond) it: the
    limit-aware step lets the free joints compensate instead of stalling on the limit (the
    plain clamp-and-reject LM solved about 90 % of these)."""
    robot = load_arm("panda")
    gen = torch.Generator().manual_seed(3)
    G, k = 20, 8
    q_true = robot.sample_q(G, gen)
    q_true[:, 1] = robot.upper[1] - 0.01
    q_true[:, 3] = robot.upper[3] - 0.01
    q_true[:, 5] = robot.lower[5] + 0.01
    goal = robot.fk(q_true)
    seeds = q_true[:, None] + 0.3 * torch.randn(G, k, robot.dof, generator=gen, dtype=torch.float64)
    seeds[..., 1] = robot.upper[1] + 0.2
    seeds[..., 3] = robot.upper[3] + 0.2
    seeds[..., 5] = robot.lower[5] - 0.2
    q = refine(robot.chain, seeds, goal[:, None], robot.lower, robot.upper, RefineConfig(max_iter=30, restart_after=0))
    pos, rot = errors_here(robot, q, goal[:, None])
    ok = (pos < 1e-3) & (rot < math.radians(0.57)) & robot.within_limits(q, tol=0.0).numpy()
    assert ok.mean() >= 0.98, ok.mean()
    assert ok.any(-1).all()


def test_reseeding_makes_failing_seeds_succeed():
    """Random UR10 seeds: without re-seeding some end in a local minimum; with it every one of
    them converges (and the seeds that converged anyway are unchanged)."""
    robot = load_arm("ur10")
    gen = torch.Generator().manual_seed(5)
    goal = robot.fk(robot.sample_q(4, gen))
    seeds = robot.sample_q(4 * 16, gen).reshape(4, 16, robot.dof)
    once = refine(robot.chain, seeds, goal[:, None], robot.lower, robot.upper, RefineConfig(restart_after=0))
    retried = refine(robot.chain, seeds, goal[:, None], robot.lower, robot.upper, RefineConfig())
    pos0, rot0 = errors_here(robot, once, goal[:, None])
    pos1, rot1 = errors_here(robot, retried, goal[:, None])
    failed = (pos0 > 1e-3) | (rot0 > 1e-2)
    assert failed.sum() >= 3  # the test needs seeds that fail on their own
    assert pos1.max() < 1e-5 and rot1.max() < 1e-4
    assert bool(robot.within_limits(retried, tol=0.0).all())


def test_time_budget_returns_best_so_far_quickly():
    robot = load_arm("kuka")
    gen = torch.Generator().manual_seed(6)
    goal = robot.fk(robot.sample_q(8, gen))
    seeds = robot.sample_q(8 * 4, gen).reshape(8, 4, robot.dof)
    q = refine(robot.chain, seeds, goal[:, None], robot.lower, robot.upper, RefineConfig(max_iter=10_000, time_budget_s=0.0))
    # stopped at the first check: the seeds (inside the limits already) come back unchanged
    torch.testing.assert_close(q, seeds, rtol=0, atol=0)


def test_unbounded_joint_is_never_clamped_and_comes_back_wrapped():
    """A joint with infinite bounds crosses +-pi freely (a [-pi, pi] clamp would stall on pi)."""
    robot = load_arm("kuka")
    lower, upper = robot.lower.clone(), robot.upper.clone()
    lower[6], upper[6] = -math.inf, math.inf
    gen = torch.Generator().manual_seed(8)
    q_true = interior_q(robot, 6, gen)
    q_true[:, 6] = -3.0  # just past -pi from the seed's side
    goal = robot.fk(q_true)
    seeds = q_true[:, None].repeat(1, 3, 1) + 0.05 * torch.randn(6, 3, robot.dof, generator=gen, dtype=torch.float64)
    seeds[..., 6] = 2.9  # 0.38 rad away across +pi, 5.9 rad away inside [-pi, pi]
    cfg = RefineConfig(max_iter=30, restart_after=0)
    q = refine(robot.chain, seeds, goal[:, None], lower, upper, cfg)
    pos, rot = errors_here(robot, q, goal[:, None])
    assert pos.max() < 1e-5 and rot.max() < 1e-4
    assert bool(((q[..., 6] > -math.pi) & (q[..., 6] <= math.pi)).all())
    assert bool(((q[..., 6] + 3.0).abs() < 0.2).all())  # it went across pi, to the goal's side (7 DOF: not exactly -3)
    # the same seeds with the joint bounded short of a full turn stall on the bound (a range of a
    # full turn or more wraps at its bounds instead: test_full_turn_joint_wraps_at_its_bounds)
    clamped = refine(robot.chain, seeds, goal[:, None], robot.lower.clone().index_fill_(0, torch.tensor([6]), -3.1),
                     robot.upper.clone().index_fill_(0, torch.tensor([6]), 3.1), cfg)
    pos_c, _ = errors_here(robot, clamped, goal[:, None])
    assert (pos_c > 1e-3).any()


def test_pool_returns_keep_converged_candidates_per_goal_distinct_first():
    """A pool of 12 seeds per goal, 8 kept: every kept candidate converged, distinct ones first."""
    robot = load_arm("ur10")
    gen = torch.Generator().manual_seed(11)
    G, m, keep = 5, 12, 8
    goal = robot.fk(robot.sample_q(G, gen))
    seeds = robot.sample_q(G * m, gen).reshape(G, m, robot.dof)
    seeds[:, 1] = seeds[:, 0]  # a repeated seed converges to a repeated solution: it goes last
    cfg = RefineConfig()
    q = refine(robot.chain, seeds, goal[:, None], robot.lower, robot.upper, cfg, keep=keep)
    assert q.shape == (G, keep, robot.dof)
    pos, rot = errors_here(robot, q, goal[:, None])
    assert pos.max() < 1e-5 and rot.max() < 1e-4
    from ggik_core.solve.multistart import first_distinct

    fresh = first_distinct(q.numpy(), np.ones((G, keep), dtype=bool), cfg.distinct_tol)
    # distinct candidates form a prefix of each goal's list
    assert bool((fresh[:, 1:] <= fresh[:, :-1]).all())
    with pytest.raises(ValueError):
        refine(robot.chain, seeds, goal[:, None], robot.lower, robot.upper, cfg, keep=m + 1)


@pytest.mark.parametrize("arm", ["panda", "ur10"])
def test_jacobian_matches_finite_differences(arm):
    """e(q + h) - e(q - h) ~ -2 J h: the Jacobian of the batch-last FK. At the goal itself the
    derivative of the rotation error (a logarithm) is exactly the geometric Jacobian's rows."""
    from ggik_core.solve.lm_math import pose_residual

    robot = load_arm(arm)
    gen = torch.Generator().manual_seed(2)
    q = robot.sample_q(5, gen)
    off = robot.fk(q + 0.3 * torch.randn(q.shape, generator=gen, dtype=torch.float64))
    e, _ = pose_residual(robot.chain, q, off, 0.5)
    torch.testing.assert_close(e[:, :3], off[:, :3, 3] - robot.fk(q)[:, :3, 3], rtol=0, atol=1e-12)
    goal = robot.fk(q)
    e, J = pose_residual(robot.chain, q, goal, 0.5)
    assert e.shape == (5, 6) and J.shape == (5, 6, robot.dof)
    assert e.abs().max() < 1e-12
    h = 1e-6
    for i in range(robot.dof):
        dq = torch.zeros(robot.dof, dtype=torch.float64)
        dq[i] = h
        fd = (pose_residual(robot.chain, q + dq, goal, 0.5)[0] - pose_residual(robot.chain, q - dq, goal, 0.5)[0]) / (2 * h)
        torch.testing.assert_close(fd, -J[:, :, i], rtol=0, atol=1e-7)


def test_per_row_links_give_the_shared_links_residual():
    """The per-row chain path (``(B, n+1, 4, 4)``, e.g. a batch of different robots) computes the
    same error and Jacobian as the shared-links path, and the rotation error is the goal's
    rotation vector relative to the reached frame (checked against ``so3_log``)."""
    from ggik_core.solve.lm_math import pose_residual

    robot = load_arm("kuka")
    gen = torch.Generator().manual_seed(4)
    q = robot.sample_q(7, gen)
    goal = robot.fk(robot.sample_q(7, gen))
    e, J = pose_residual(robot.chain, q, goal, 0.5)
    e_rows, J_rows = pose_residual(robot.chain.expand(7, *robot.chain.shape), q, goal, 0.5)
    torch.testing.assert_close(e_rows, e, rtol=0, atol=1e-12)
    torch.testing.assert_close(J_rows, J, rtol=0, atol=1e-12)
    R = robot.fk(q)[:, :3, :3]
    torch.testing.assert_close(e[:, 3:], 0.5 * so3_log(goal[:, :3, :3] @ R.transpose(-1, -2)), rtol=0, atol=1e-9)


@pytest.mark.parametrize("n", [6, 7])
def test_batch_last_elimination_solves_like_lapack(n):
    """``solve_normal`` switches from LAPACK to elimination on the batch-last tensors at
    ``ELIMINATION_MIN_ROWS``; both give the damped normal equations' solution."""
    from ggik_core.solve.lm_math import ELIMINATION_MIN_ROWS, solve_normal

    gen = torch.Generator().manual_seed(n)
    for B in (ELIMINATION_MIN_ROWS - 1, ELIMINATION_MIN_ROWS + 5):
        J = torch.randn(6, n, B, generator=gen, dtype=torch.float64)
        H = (J[:, :, None] * J[:, None]).sum(0) + 1e-3 * torch.eye(n, dtype=torch.float64)[..., None]
        b = torch.randn(n, B, generator=gen, dtype=torch.float64)
        expected = torch.linalg.solve(H.permute(2, 0, 1), b.T[..., None])[..., 0].T
        x = solve_normal(torch.cat([H, b[:, None]], 1))
        torch.testing.assert_close(x, expected, rtol=1e-8, atol=1e-8)


def test_refine_runs_on_its_own_thread_count_and_restores_the_callers():
    robot = load_arm("ur10")
    gen = torch.Generator().manual_seed(5)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        q = refine(robot.chain, robot.sample_q(4, gen), robot.fk(robot.sample_q(4, gen)), robot.lower, robot.upper,
                   RefineConfig(max_iter=5, threads=1))
        assert torch.get_num_threads() == 2
        assert not q.is_inference()  # callers may use the result in autograd or in place
    finally:
        torch.set_num_threads(before)


def test_first_distinct_matches_a_greedy_reference_on_the_circle():
    """Candidates in clusters (with whole turns added) are kept greedily, each unlike every earlier
    kept one by at least ``tol`` in some joint on the circle: the batched candidate filter gives
    exactly what the pair-by-pair definition gives."""
    from ggik_core.solve.multistart import first_distinct

    gen = torch.Generator().manual_seed(12)
    G, m, n, tol = 6, 30, 7, 0.1
    centres = torch.rand(G, 5, n, generator=gen, dtype=torch.float64) * 6 - 3
    pick = torch.randint(0, 5, (G, m), generator=gen)
    q = torch.gather(centres, 1, pick[..., None].expand(G, m, n))
    q = q + 0.06 * torch.randn(G, m, n, generator=gen, dtype=torch.float64)
    q = q + 2 * math.pi * torch.randint(-1, 2, q.shape, generator=gen)
    valid = torch.rand(G, m, generator=gen) > 0.2
    expected = torch.zeros(G, m, dtype=torch.bool)
    for g in range(G):
        kept: list[torch.Tensor] = []
        for j in range(m):
            if not valid[g, j]:
                continue
            gaps = [torch.remainder(q[g, j] - k + math.pi, 2 * math.pi) - math.pi for k in kept]
            if all(bool((gap.abs() >= tol).any()) for gap in gaps):
                kept.append(q[g, j])
                expected[g, j] = True
    got = torch.from_numpy(first_distinct(q.numpy(), valid.numpy(), tol))
    assert torch.equal(got, expected)
    assert 5 <= int(got.sum()) < int(valid.sum())  # clusters merge, distinct clusters stay


@pytest.mark.parametrize("backend", ["torch", "kernel"])
@pytest.mark.parametrize("on_bound", [False, True])
def test_full_turn_joint_wraps_at_its_bounds(backend, on_bound):
    """A joint whose range spans a full turn or more (UR arms: +-2 pi) that steps past a bound
    continues a turn back, at the same angle, instead of stopping on the bound: seeds whose
    way to the goal crosses +2 pi converge, and stay inside the range. A seed exactly on the
    bound, its descent pointing out, is not blocked there either."""
    robot = load_arm("ur10")
    assert float(robot.upper[0] - robot.lower[0]) >= 2 * math.pi
    gen = torch.Generator().manual_seed(13)
    q_true = interior_q(robot, 5, gen, margin=0.5)
    q_true[:, 0] = -2 * math.pi + 0.2  # the same angle as 0.2 rad past +2 pi
    goal = robot.fk(q_true)
    seeds = q_true[:, None].repeat(1, 3, 1) + 0.05 * torch.randn(5, 3, robot.dof, generator=gen, dtype=torch.float64)
    # 0.35 rad from the goal's angle across the bound, or exactly on it (0.2 rad)
    seeds[..., 0] = float(robot.upper[0]) if on_bound else 2 * math.pi - 0.15
    cfg = RefineConfig(max_iter=30, restart_after=0, backend=backend)
    q = refine(robot.chain, seeds, goal[:, None], robot.lower, robot.upper, cfg)
    pos, rot = errors_here(robot, q, goal[:, None])
    assert pos.max() < 1e-5 and rot.max() < 1e-4
    assert bool(robot.within_limits(q, tol=0.0).all())
    # the same seeds with the range cut just short of a full turn (to [1e-3, 2 pi]: the goal's
    # angle is still inside, at 0.2) stop on the upper bound
    lower = robot.lower.clone()
    lower[0] = robot.upper[0] - 2 * math.pi + 1e-3
    cut = refine(robot.chain, seeds, goal[:, None], lower, robot.upper, cfg)
    pos_c, _ = errors_here(robot, cut, goal[:, None])
    assert (pos_c > 1e-3).all()
