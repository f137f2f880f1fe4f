"""The robot model: NumPy storage, torch views, and the NumPy DH chain."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from ggik_core.errors import RobotError
from ggik_core.robots.urdf import rpy_rotation
from ggik_core.robots.robot import Robot, dh_chain, dh_chain_np


@pytest.mark.parametrize("modified", [False, True])
def test_numpy_dh_chain_equals_the_batched_torch_one(modified):
    gen = torch.Generator().manual_seed(0)
    a, alpha, d, theta = (torch.rand(7, generator=gen, dtype=torch.float64) * 2 - 1 for _ in range(4))
    tool = torch.eye(4, dtype=torch.float64)
    tool[:3, :3] = torch.from_numpy(rpy_rotation(np.array([0.3, -0.2, 1.1])))
    tool[:3, 3] = torch.tensor([0.01, 0.02, 0.1])
    ref = dh_chain(a, alpha, d, theta, modified=modified, tool=tool)
    got = dh_chain_np(a.numpy(), alpha.numpy(), d.numpy(), theta.numpy(), modified, tool.numpy())
    np.testing.assert_allclose(got, ref.numpy(), rtol=0, atol=1e-15)


def test_rpy_rotation_is_yaw_pitch_roll_about_fixed_axes():
    r, p, y = 0.3, -0.7, 2.1

    c, s = math.cos, math.sin
    Rx = np.array([[1, 0, 0], [0, c(r), -s(r)], [0, s(r), c(r)]])
    Ry = np.array([[c(p), 0, s(p)], [0, 1, 0], [-s(p), 0, c(p)]])
    Rz = np.array([[c(y), -s(y), 0], [s(y), c(y), 0], [0, 0, 1]])
    np.testing.assert_allclose(rpy_rotation(np.array([r, p, y])), Rz @ Ry @ Rx, atol=1e-15)


def test_arrays_are_numpy_and_tensors_share_them():
    chain = np.tile(np.eye(4), (3, 1, 1))
    chain[1, 0, 3] = 0.5
    r = Robot("two", torch.from_numpy(chain), [-1.0, -2.0], np.array([1.0, 2.0]), continuous=[False, True])
    assert isinstance(r.chain_np, np.ndarray) and r.chain_np.dtype == np.float64
    assert r.dof == 2 and r.joint_names == ["joint_1", "joint_2"]
    assert r.chain.dtype == torch.float64 and r.continuous.dtype == torch.bool
    assert np.shares_memory(r.chain.numpy(), r.chain_np) and r.chain is r.chain
    lo, hi = r.bounds_np()
    assert lo.tolist() == [-1.0, -math.inf] and hi.tolist() == [1.0, math.inf]
    q = np.array([[0.5, 10.0], [1.5, 0.0]])
    assert r.within_limits_np(q).tolist() == r.within_limits(torch.from_numpy(q)).tolist() == [True, False]
    chain[1, 0, 3] = 9.0  # the robot holds its own copy
    assert r.chain_np[1, 0, 3] == 0.5


@pytest.mark.parametrize("kwargs, message", [
    ({"chain": np.eye(4)[None], "lower": [], "upper": []}, "at least one joint"),
    ({"lower": [0.0], "upper": [1.0]}, "2 joints but 1 lower"),
    ({"lower": [0.0, math.nan], "upper": [1.0, 1.0]}, "NaN or infinity"),
    ({"lower": [0.0, 2.0], "upper": [1.0, 1.0]}, "joint 2 has lower limit above upper limit"),
    ({"continuous": [True]}, "2 joints but 1 continuous"),
])
def test_bad_robots_are_refused_in_one_line(kwargs, message):
    args = {"chain": np.tile(np.eye(4), (3, 1, 1)), "lower": [-1.0, -1.0], "upper": [1.0, 1.0], **kwargs}
    with pytest.raises(RobotError, match=message):
        Robot("bad", **args)


def test_loading_a_robot_does_not_import_torch():
    code = ("import sys\nfrom ggik_core.robots.files import load_robot\n"
            "r = load_robot('panda')\nassert r.chain_np.shape == (8, 4, 4)\nprint('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
