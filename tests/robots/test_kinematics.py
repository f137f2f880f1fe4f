"""Batched forward kinematics against a slow, explicit numpy oracle."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ggik_core.robots import catalog
from ggik_core.robots.catalog import ARM_NAMES, load_arm
from ggik_core.robots.kinematics import chain_frames, forward_kinematics
from ggik_core.robots.robot import Robot, dh_chain

TOL = 1e-9

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")),
]


# ----------------------------------------------------------------------------- oracle


def np_rz(t: float) -> np.ndarray:
    c, s = math.cos(t), math.sin(t)
    return np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=np.float64)


def np_rx(t: float) -> np.ndarray:
    c, s = math.cos(t), math.sin(t)
    return np.array([[1, 0, 0, 0], [0, c, -s, 0], [0, s, c, 0], [0, 0, 0, 1]], dtype=np.float64)


def np_tz(d: float) -> np.ndarray:
    T = np.eye(4)
    T[2, 3] = d
    return T


def np_tx(a: float) -> np.ndarray:
    T = np.eye(4)
    T[0, 3] = a
    return T


def oracle_frames(table, q, modified=False, tool=None):
    """Frames 0..n of a DH table for one configuration; one 4x4 product per elementary motion."""
    a, alpha, d, theta = table
    T = np.eye(4)
    frames = [T]
    for i in range(len(a)):
        if modified:
            link = np_tx(a[i]) @ np_rx(alpha[i]) @ np_tz(d[i]) @ np_rz(q[i] + theta[i])
        else:
            link = np_rz(q[i] + theta[i]) @ np_tz(d[i]) @ np_tx(a[i]) @ np_rx(alpha[i])
        T = T @ link
        frames.append(T)
    if tool is not None:
        frames[-1] = frames[-1] @ tool
    return frames


def oracle_fk(table, q, modified=False, tool=None):
    """End-effector poses for ``q (..., n)``: a plain Python loop over every configuration."""
    q = np.asarray(q, dtype=np.float64)
    out = np.empty(q.shape[:-1] + (4, 4))
    for idx in np.ndindex(*q.shape[:-1]):
        out[idx] = oracle_frames(table, q[idx], modified, tool)[-1]
    return out


def catalog_table(name):
    """(a, alpha, d, theta_offset) columns of a catalog arm."""
    rows = catalog._ARMS[name][1]
    return tuple([float(r[k]) for r in rows] for k in range(4))


def random_q(rng, shape, n, scale=math.pi):
    return rng.uniform(-scale, scale, size=tuple(shape) + (n,))


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize("name", ARM_NAMES)
def test_catalog_arm_matches_oracle(name):
    rng = np.random.default_rng(1)
    table = catalog_table(name)
    n = len(table[0])
    q = random_q(rng, (5, 7), n, scale=2 * math.pi)
    expected = oracle_fk(table, q)
    for robot in (load_arm(name), Robot.from_dh(name, *table)):
        got = robot.fk(torch.from_numpy(q))
        assert got.shape == (5, 7, 4, 4)
        assert got.dtype == torch.float64
        np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=TOL)


@pytest.mark.parametrize("name", ARM_NAMES)
def test_axis_frames_match_oracle(name):
    rng = np.random.default_rng(2)
    table = catalog_table(name)
    n = len(table[0])
    robot = load_arm(name)
    q = random_q(rng, (4,), n)
    frames = robot.frames(torch.from_numpy(q)).numpy()
    assert frames.shape == (4, n + 1, 4, 4)
    for b in range(4):
        # Standard DH: joint i turns about z_{i-1}, so axis frame A_i is DH frame i - 1.
        expected = np.stack(oracle_frames(table, q[b]))
        np.testing.assert_allclose(frames[b, :n], expected[:n], rtol=0, atol=TOL)
        np.testing.assert_allclose(frames[b, n], expected[n], rtol=0, atol=TOL)


def test_fk_unbatched_and_broadcast():
    robot = load_arm("kuka")
    table = catalog_table("kuka")
    q = np.linspace(-1.0, 1.0, 7)
    np.testing.assert_allclose(robot.fk(torch.from_numpy(q)).numpy(), oracle_fk(table, q), rtol=0, atol=TOL)
    assert robot.fk(torch.zeros(3, 1, 2, 7)).shape == (3, 1, 2, 4, 4)


PANDA_MODIFIED = (
    [0.0, 0.0, 0.0, 0.0825, -0.0825, 0.0, 0.088],
    [0.0, -math.pi / 2, math.pi / 2, math.pi / 2, -math.pi / 2, math.pi / 2, math.pi / 2],
    [0.333, 0.0, 0.316, 0.0, 0.384, 0.0, 0.0],
    [0.0] * 7,
)


def test_modified_dh_matches_oracle():
    rng = np.random.default_rng(3)
    tool = np_tz(0.107)
    robot = Robot.from_dh("panda_mdh", *PANDA_MODIFIED, modified=True, tool=torch.from_numpy(tool))
    q = random_q(rng, (6, 5), 7)
    expected = oracle_fk(PANDA_MODIFIED, q, modified=True, tool=tool)
    np.testing.assert_allclose(robot.fk(torch.from_numpy(q)).numpy(), expected, rtol=0, atol=TOL)


def test_modified_dh_axis_frames():
    """Modified DH: joint i turns about z_i, so A_i is frame i at q_i = 0 (theta offsets are 0)."""
    rng = np.random.default_rng(4)
    robot = Robot.from_dh("panda_mdh", *PANDA_MODIFIED, modified=True)
    q = random_q(rng, (), 7)
    frames = robot.frames(torch.from_numpy(q)).numpy()
    for i in range(7):
        q_i = q.copy()
        q_i[i] = 0.0
        expected = oracle_frames(PANDA_MODIFIED, q_i, modified=True)[i + 1]
        np.testing.assert_allclose(frames[i], expected, rtol=0, atol=TOL)


def test_panda_modified_equals_catalog_standard():
    rng = np.random.default_rng(5)
    modified = Robot.from_dh("panda_mdh", *PANDA_MODIFIED, modified=True, tool=torch.from_numpy(np_tz(0.107)))
    standard = load_arm("panda")
    q = torch.from_numpy(random_q(rng, (200,), 7))
    np.testing.assert_allclose(modified.fk(q).numpy(), standard.fk(q).numpy(), rtol=0, atol=TOL)


@pytest.mark.parametrize("modified", [False, True])
def test_many_robots_in_one_call(modified):
    rng = np.random.default_rng(6)
    B, n, K = 9, 6, 4
    a = rng.uniform(-0.5, 0.5, (B, n))
    alpha = rng.uniform(-math.pi, math.pi, (B, n))
    d = rng.uniform(-0.5, 0.5, (B, n))
    theta = rng.uniform(-math.pi, math.pi, (B, n))
    tools = np.stack([np_tz(t) @ np_rx(t) for t in rng.uniform(-1, 1, B)])
    chain = dh_chain(*(torch.from_numpy(x) for x in (a, alpha, d, theta)), modified=modified, tool=torch.from_numpy(tools))
    assert chain.shape == (B, n + 1, 4, 4)
    q = random_q(rng, (K, B), n)
    got = forward_kinematics(chain, torch.from_numpy(q)).numpy()
    assert got.shape == (K, B, 4, 4)
    frames = chain_frames(chain, torch.from_numpy(q)).numpy()
    for b in range(B):
        table = (a[b], alpha[b], d[b], theta[b])
        expected = oracle_fk(table, q[:, b], modified=modified, tool=tools[b])
        np.testing.assert_allclose(got[:, b], expected, rtol=0, atol=TOL)
        np.testing.assert_allclose(frames[:, b, n], expected, rtol=0, atol=TOL)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ARM_NAMES)
def test_float32_close_to_float64(name, device):
    rng = np.random.default_rng(7)
    robot = load_arm(name)
    q64 = torch.from_numpy(random_q(rng, (64,), robot.dof))
    ref = robot.fk(q64)
    got = forward_kinematics(robot.chain.to(device, torch.float32), q64.to(device, torch.float32))
    assert got.dtype == torch.float32 and got.device.type == device
    np.testing.assert_allclose(got.cpu().double().numpy(), ref.numpy(), rtol=0, atol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
def test_batched_dh_chain_float32_and_device(device):
    rng = np.random.default_rng(8)
    B, n = 5, 7
    cols = [rng.uniform(-1, 1, (B, n)) for _ in range(4)]
    chain64 = dh_chain(*(torch.from_numpy(c) for c in cols))
    chain32 = dh_chain(*(torch.from_numpy(c).to(device, torch.float32) for c in cols))
    assert chain32.dtype == torch.float32 and chain32.device.type == device
    q = torch.from_numpy(random_q(rng, (3, B), n))
    ref = forward_kinematics(chain64, q)
    got = forward_kinematics(chain32, q.to(device, torch.float32))
    np.testing.assert_allclose(got.cpu().double().numpy(), ref.numpy(), rtol=0, atol=1e-4)
    if device == "cuda":
        got64 = forward_kinematics(chain64.to(device), q.to(device))
        np.testing.assert_allclose(got64.cpu().numpy(), ref.numpy(), rtol=0, atol=TOL)


@pytest.mark.parametrize("shapes", [[(), ()], [(3,), ()], [(2, 1), (5,)], [(1, 4, 1), (3, 1, 2), (2,)], [(0,), (1,)], [(6, 1), (1, 7), (6, 7)]])
def test_broadcast_shape_matches_torch(shapes):
    from ggik_core.robots.transforms import broadcast_shape

    assert broadcast_shape(*shapes) == torch.broadcast_shapes(*shapes)


def test_broadcast_shape_refuses_mismatched_shapes():
    from ggik_core.robots.transforms import broadcast_shape

    with pytest.raises(RuntimeError, match="do not broadcast"):
        broadcast_shape((2, 3), (4, 3))
