"""Levenberg–Marquardt refinement: behaviours pinned against an independent expectation.

Each test checks one promise of :mod:`ggik_core.solve.refine` (both backends, the compiled kernel
and the batched torch loop that CUDA uses) with errors computed here by forward kinematics in
NumPy: convergence means the rotation error itself is within ``rot_tol``; continuous joints come
back wrapped on either backend; an unreachable goal returns the best configuration over all
seeds; angles wrap to [-pi, pi).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from ggik_core.robots.catalog import load_arm
from ggik_core.robots.transforms import wrap_angle
from ggik_core.solve import multistart
from ggik_core.solve.refine import RefineConfig, refine

BACKENDS = ["kernel", "torch"]


def fk_here(chain: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``L_0 R_z(q_1) L_1 ... R_z(q_n) L_n`` by plain matrix products, one row at a time."""
    q = np.asarray(q, dtype=np.float64)
    out = np.empty((*q.shape[:-1], 4, 4))
    for idx in np.ndindex(*q.shape[:-1]):
        T = chain[0].copy()
        for i, qi in enumerate(q[idx]):
            Rz = np.eye(4)
            Rz[:2, :2] = [[math.cos(qi), -math.sin(qi)], [math.sin(qi), math.cos(qi)]]
            T = T @ Rz @ chain[i + 1]
        out[idx] = T
    return out


def errors_here(chain: np.ndarray, q, goal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Position (m) and rotation (rad, the angle of ``R_goal^T R`` by scipy) errors."""
    T = fk_here(chain, np.asarray(q))
    Tg = np.broadcast_to(goal, T.shape)
    pos = np.linalg.norm(T[..., :3, 3] - Tg[..., :3, 3], axis=-1)
    rel = np.swapaxes(Tg[..., :3, :3], -1, -2) @ T[..., :3, :3]
    rot = np.linalg.norm(Rotation.from_matrix(rel.reshape(-1, 3, 3)).as_rotvec(), axis=-1).reshape(pos.shape)
    return pos, rot


@pytest.mark.parametrize("backend", BACKENDS)
def test_rotation_tolerance_is_in_radians_not_weighted_radians(backend):
    """Seeds exactly on the goal position and 1.05 to 1.95 ``rot_tol`` off in rotation must be
    refined, not called converged: the weighted residual :math:`w\\,\\theta` is compared with
    :math:`w \\cdot` ``rot_tol`` (comparing it with ``rot_tol`` alone passes anything below
    ``rot_tol / w`` = 2 ``rot_tol``)."""
    robot = load_arm("ur10")
    chain = robot.chain.numpy()
    gen = torch.Generator().manual_seed(3)
    G = 8
    q_true = robot.lower + 0.25 + torch.rand(G, robot.dof, generator=gen, dtype=torch.float64) * (robot.upper - robot.lower - 0.5)
    T = fk_here(chain, q_true.numpy())
    cfg = RefineConfig(backend=backend)
    assert cfg.rot_weight == 0.5  # the 2x of the docstring
    angles = cfg.rot_tol * np.linspace(1.05, 1.95, G)
    axes = Rotation.random(G, random_state=4).as_rotvec()
    axes /= np.linalg.norm(axes, axis=-1, keepdims=True)
    goal = T.copy()
    goal[:, :3, :3] = T[:, :3, :3] @ Rotation.from_rotvec(axes * angles[:, None]).as_matrix()  # about the EE origin
    pos0, rot0 = errors_here(chain, q_true.numpy(), goal)
    assert pos0.max() < 1e-12 and np.allclose(rot0, angles, rtol=1e-6)
    q = refine(robot.chain, q_true, torch.from_numpy(goal), robot.lower, robot.upper, cfg)
    pos, rot = errors_here(chain, q.numpy(), goal)
    assert pos.max() <= cfg.pos_tol
    assert rot.max() <= cfg.rot_tol, rot / cfg.rot_tol


@pytest.mark.parametrize("backend", BACKENDS)
def test_continuous_joint_comes_back_wrapped_on_either_backend(backend):
    """A continuous joint converging near 2 + 2 pi returns near 2, inside [-pi, pi), with the same
    pose. The torch loop is the CUDA path; ``backend="torch"`` forces it on the CPU."""
    robot = load_arm("kuka")
    chain = robot.chain.numpy()
    lower, upper = robot.lower.clone(), robot.upper.clone()
    lower[6], upper[6] = -math.inf, math.inf
    gen = torch.Generator().manual_seed(5)
    G, k = 4, 3
    q_true = robot.lower + 0.3 + torch.rand(G, robot.dof, generator=gen, dtype=torch.float64) * (robot.upper - robot.lower - 0.6)
    q_true[:, 6] = 2.0 + 2 * math.pi
    goal = fk_here(chain, q_true.numpy())
    seeds = q_true[:, None].repeat(1, k, 1) + 0.02 * torch.randn(G, k, robot.dof, generator=gen, dtype=torch.float64)
    cfg = RefineConfig(max_iter=60, restart_after=0, backend=backend)
    q = refine(robot.chain, seeds, torch.from_numpy(goal)[:, None], lower, upper, cfg)
    pos, rot = errors_here(chain, q.numpy(), goal[:, None])
    assert pos.max() <= cfg.pos_tol and rot.max() <= cfg.rot_tol
    j = q[..., 6]
    assert bool(((j >= -math.pi) & (j < math.pi)).all()), j
    assert bool(((j - 2.0).abs() < 0.2).all()), j  # 7 DOF: near, not exactly, the goal's angle


def planar_two_link() -> np.ndarray:
    """Two unit links turning about z: :math:`R_z(q_1) T_x(1) R_z(q_2) T_x(1)`."""
    chain = np.tile(np.eye(4), (3, 1, 1))
    chain[1, 0, 3] = chain[2, 0, 3] = 1.0
    return chain


@pytest.mark.parametrize("backend", BACKENDS)
def test_unreachable_goal_returns_the_best_over_all_seeds_not_the_last_iterate(backend):
    """Goal 5 m out along x, for an arm that reaches 2 m, limits [-1, 1]: the first seed, q = 0
    (stretched towards the goal), is the unique best configuration of the box, 3 m short and
    exactly oriented. There the step is zero, so the row stalls and is re-seeded at random, again
    and again, up to the last iterations: every later seed, and the last iterate, is worse. The
    result must be the first seed, with the minimum error."""
    chain = planar_two_link()
    goal = np.eye(4)
    goal[0, 3] = 5.0
    lower, upper = torch.full((2,), -1.0, dtype=torch.float64), torch.full((2,), 1.0, dtype=torch.float64)
    G = 3
    seeds = torch.zeros(G, 2, dtype=torch.float64)
    cfg = RefineConfig(max_iter=41, restart_after=6, backend=backend)
    q = refine(torch.from_numpy(chain), seeds, torch.from_numpy(goal), lower, upper, cfg)
    pos, rot = errors_here(chain, q.numpy(), goal)
    np.testing.assert_allclose(pos, 3.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(rot, 0.0, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(q.numpy(), 0.0)


def test_pool_returns_the_best_seed_when_none_converges():
    """The same unreachable goal, a pool of four seeds left as they are (no iterations): the one
    candidate kept is the seed with the smallest error (the second of four), not the first or
    the last."""
    chain = planar_two_link()
    goal = np.eye(4)
    goal[0, 3] = 5.0
    lower, upper = torch.full((2,), -1.0, dtype=torch.float64), torch.full((2,), 1.0, dtype=torch.float64)
    pool = torch.tensor([[0.6, -0.9], [0.0, 0.0], [0.9, 0.9], [-1.0, 1.0]], dtype=torch.float64)
    pos, rot = errors_here(chain, pool.numpy(), goal)
    err = pos ** 2 + (0.5 * rot) ** 2
    assert err.argmin() == 1 and err[-1] > err.min() and err[0] > err.min()
    for backend in BACKENDS:
        cfg = RefineConfig(max_iter=0, restart_after=0, backend=backend)
        q = refine(torch.from_numpy(chain), pool[None], torch.from_numpy(goal)[None, None], lower, upper, cfg, keep=1)
        np.testing.assert_array_equal(q.numpy(), [[[0.0, 0.0]]])


def test_wrap_maps_pi_to_minus_pi_and_stays_in_the_half_open_interval():
    """Wrapped angles lie in [-pi, pi): pi itself (and every odd multiple) becomes -pi."""
    pi = math.pi
    q = torch.tensor([pi, -pi, 3 * pi, -3 * pi, 0.0, 2 * pi, pi - 1e-12, -pi + 1e-12, 7.0, -7.0], dtype=torch.float64)
    w = wrap_angle(q)
    assert w[0].item() == -pi and w[1].item() == -pi
    assert w[2].item() == -pi and w[3].item() == -pi
    assert w[4].item() == 0.0 and w[5].item() == 0.0
    assert bool(((w >= -pi) & (w < pi)).all())
    np.testing.assert_allclose(w[6:].numpy(), [pi - 1e-12, -pi + 1e-12, 7.0 - 2 * pi, -7.0 + 2 * pi], rtol=0, atol=1e-9)
    np.testing.assert_array_equal(multistart.wrap_angle(q.numpy()), w.numpy())
