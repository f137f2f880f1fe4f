"""Rankings: the --rank parser, distances on the circle, limit margins, and the manipulability
measure against a finite-difference Jacobian and Pinocchio's."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ggik_core.errors import GGIKError
from ggik_core.robots.catalog import load_arm
from ggik_core.robots.robot import Robot
from ggik_core.solve.multistart import forward_kinematics
from ggik_core.solve.rank import (Ranking, jacobian, joint_distance, limit_margin, manipulability, parse_rank,
                                  rank_order)


def test_parse_rank():
    robot = load_arm("ur10")
    assert parse_rank("margin", robot) == Ranking("margin")
    assert parse_rank(" manipulability ", robot).kind == "manipulability"
    r = parse_rank("near:0,0.1, -0.2,0.3,0.4,0.5", robot)
    np.testing.assert_allclose(r.target, [0, 0.1, -0.2, 0.3, 0.4, 0.5])
    with pytest.raises(GGIKError, match=r"^--rank near: expected 6 joint values for ur10, got 5$"):
        parse_rank("near:0,0,0,0,0", robot)
    for bad, words in [("closest", "unknown ranking 'closest'"), ("near:a,b", "numbers"), ("margin:1", "takes no value"),
                       ("near:0,0,0,0,0,nan", "finite")]:
        with pytest.raises(GGIKError, match=words):
            parse_rank(bad, robot)


def test_joint_distance_wraps_continuous_joints_only():
    cont = np.array([True, False])
    q = np.array([[math.pi - 0.1, 0.0], [0.0, 2 * math.pi]])
    t = np.array([-math.pi + 0.1, 0.0])
    np.testing.assert_allclose(joint_distance(q, t, cont), [0.2, math.hypot(math.pi - 0.1, 2 * math.pi)])


def test_limit_margin():
    lower, upper = np.array([-1.0, 0.0, -math.pi]), np.array([1.0, 4.0, math.pi])
    cont = np.array([False, False, True])
    q = np.array([[0.0, 2.0, 3.0], [0.9, 2.0, 0.0], [-1.0, 1.0, 0.0]])
    np.testing.assert_allclose(limit_margin(q, lower, upper, cont), [0.5, 0.05, 0.0])
    np.testing.assert_allclose(limit_margin(q[:, 2:], lower[2:], upper[2:], cont[2:]), [0.5] * 3)


def fd_jacobian(chain: np.ndarray, q: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central differences: linear part from the EE origin, angular from R' R^T."""
    cols = []
    for i in range(q.shape[-1]):
        dq = np.zeros_like(q)
        dq[i] = h
        Tp, Tm, T = forward_kinematics(chain, q + dq), forward_kinematics(chain, q - dq), forward_kinematics(chain, q)
        lin = (Tp[:3, 3] - Tm[:3, 3]) / (2 * h)
        W = (Tp[:3, :3] - Tm[:3, :3]) / (2 * h) @ T[:3, :3].T
        cols.append(np.concatenate([lin, [W[2, 1], W[0, 2], W[1, 0]]]))
    return np.stack(cols, -1)


@pytest.mark.parametrize("arm", ["ur10", "panda", "lwa4p"])
def test_jacobian_and_manipulability_against_finite_differences(arm):
    robot = load_arm(arm)
    q = robot.lower_np + np.random.default_rng(0).random((5, robot.dof)) * (robot.upper_np - robot.lower_np)
    J = jacobian(robot.chain_np, q)
    assert J.shape == (5, 6, robot.dof)
    for i in range(5):
        Jfd = fd_jacobian(robot.chain_np, q[i])
        np.testing.assert_allclose(J[i], Jfd, atol=1e-6)
        np.testing.assert_allclose(manipulability(robot.chain_np, q[i:i + 1])[0], math.sqrt(np.linalg.det(Jfd @ Jfd.T)),
                                   rtol=1e-5)


def test_manipulability_against_pinocchio(tmp_path):
    pin = pytest.importorskip("pinocchio")
    from pipeline.bench.collide import example_robot_data_dir

    erd = example_robot_data_dir()
    if erd is None:
        pytest.skip("example-robot-data is not installed")
    from ggik_core.robots.urdf import load_urdf

    urdf = erd / "panda_description/urdf/panda.urdf"
    robot = load_urdf(urdf, "panda_link0", "panda_link8")
    model = pin.buildModelFromUrdf(str(urdf))
    data = model.createData()
    frame = model.getFrameId("panda_link8")
    q = robot.lower_np + np.random.default_rng(1).random((4, robot.dof)) * (robot.upper_np - robot.lower_np)
    ours = manipulability(robot.chain_np, q)
    for i in range(4):
        full = pin.neutral(model)
        full[:7] = q[i]
        Jp = pin.computeFrameJacobian(model, data, full, frame, pin.LOCAL_WORLD_ALIGNED)[:, :7]
        np.testing.assert_allclose(ours[i], math.sqrt(np.linalg.det(Jp @ Jp.T)), rtol=1e-6)
        np.testing.assert_allclose(jacobian(robot.chain_np, q[i]), Jp, atol=1e-9)


def test_manipulability_zero_at_a_singularity():
    robot = load_arm("ur10")
    q = np.zeros((1, 6))
    q[0, 4] = 0.0  # UR wrist: joint 5 at zero aligns axes 4 and 6
    assert manipulability(robot.chain_np, q)[0] < 1e-9


def test_rank_order():
    robot = Robot("two", np.stack([np.eye(4)] * 3), [-1.0, -1.0], [1.0, 1.0])
    q = np.array([[[0.9, 0.0], [0.0, 0.0], [0.5, 0.5], [0.1, 0.0]]])
    valid = np.array([[True, False, True, True]])
    np.testing.assert_array_equal(rank_order(Ranking("near", np.zeros(2)), robot, q, valid), [[3, 2, 0, 1]])
    np.testing.assert_array_equal(rank_order(Ranking("margin"), robot, q, valid), [[3, 2, 0, 1]])
