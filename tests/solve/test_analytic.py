"""Closed-form branches: every returned branch reaches its goal by the robot's own FK, lies inside
the joint limits, and their number matches eaik's on the UR10, the LWA 4P (idealised twin,
polished) and the UR5 of example-robot-data."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("eaik")

from ggik_core.robots.catalog import load_arm  # noqa: E402
from ggik_core.robots.robot import Robot  # noqa: E402
from ggik_core.solve.analytic import AnalyticIK, analytic_support, limit_aliases  # noqa: E402
from ggik_core.solve.multistart import forward_kinematics, pose_errors  # noqa: E402


def ur5() -> Robot | None:
    from pipeline.bench.collide import example_robot_data_dir

    erd = example_robot_data_dir()
    if erd is None:
        return None
    from ggik_core.robots.urdf import load_urdf

    return load_urdf(erd / "ur_description/urdf/ur5_robot.urdf", "base_link", "tool0")


def goals_of(robot: Robot, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    q = robot.lower_np + np.random.default_rng(seed).random((n, robot.dof)) * (robot.upper_np - robot.lower_np)
    return q, forward_kinematics(robot.chain_np, q)


def wrap(q: np.ndarray) -> np.ndarray:
    return np.mod(q + math.pi, 2 * math.pi) - math.pi


def check_branches(robot: Robot, exact: bool, n: int = 12) -> None:
    ik = AnalyticIK(robot)
    assert ik.exact is exact
    q_true, goals = goals_of(robot, n, seed=5)
    branches = ik.solve(goals, aliases=False)
    aliases = ik.solve(goals)
    for g in range(n):
        for Q in (branches[g], aliases[g]):
            assert len(Q), "the configuration the goal came from is a solution"
            pos, rot = pose_errors(forward_kinematics(robot.chain_np, Q), goals[g])
            assert pos.max() < 1e-6 and rot.max() < 1e-6
            assert robot.within_limits_np(Q).all()
        # the generating configuration is one of the aliases
        assert (np.abs(aliases[g] - q_true[g]).max(-1) < 1e-5).any()
        # one branch per eaik branch that has an alias inside the limits
        raw = wrap(ik.raw_branches(goals[g]))
        inside = limit_aliases(robot, raw, every=False)
        if exact:
            assert len(branches[g]) == len(inside)
        else:  # the idealised twin's branches move by up to a few hundredths of a radian when polished
            lo, hi = robot.lower_np, robot.upper_np
            clear = ((inside - lo > 0.4) & (hi - inside > 0.4)).all()
            if clear and len(inside) == len(raw):
                assert len(branches[g]) == len(raw)
        # aliases: each branch's every in-limit turn
        assert len(aliases[g]) == len(limit_aliases(robot, wrap(branches[g]), every=True))
        assert len(np.unique(np.round(wrap(aliases[g]), 6), axis=0)) == len(branches[g])


def test_ur10_catalog():
    check_branches(load_arm("ur10"), exact=True)


def test_lwa4p_catalog_idealised_and_polished():
    check_branches(load_arm("lwa4p"), exact=False)


def test_ur5_example_robot_data():
    robot = ur5()
    if robot is None:
        pytest.skip("example-robot-data is not installed")
    check_branches(robot, exact=True)


def test_ur10_has_eight_branches_on_a_generic_goal():
    robot = load_arm("ur10")
    q = np.array([[0.3, -1.2, 1.0, -0.7, 1.1, 0.4]])
    out = AnalyticIK(robot).solve(forward_kinematics(robot.chain_np, q), aliases=False)
    assert len(out[0]) == 8


def test_support():
    assert analytic_support(load_arm("ur10"))[0]
    ok, why = analytic_support(load_arm("panda"))
    assert not ok and "7 joints" in why
    with pytest.raises(ValueError, match="7 joints"):
        AnalyticIK(load_arm("kuka"))


def test_limit_aliases_respects_continuous_joints():
    robot = Robot("c", np.stack([np.eye(4)] * 3), [-math.pi, -2 * math.pi], [math.pi, 2 * math.pi], continuous=[True, False])
    out = limit_aliases(robot, np.array([[3.0, 1.0]]))
    np.testing.assert_allclose(sorted(out[:, 1]), [1.0 - 2 * math.pi, 1.0])
    assert (out[:, 0] == 3.0).all()
