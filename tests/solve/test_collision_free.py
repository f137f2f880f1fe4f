"""The collision-free search: candidates filtered through a collision model, re-seeded until each
goal has k distinct free solutions, on the planar arm of tests/robots/test_collision.py and Panda."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("coal")

from ggik_core.robots.collision import CollisionModel
from ggik_core.solve.collision_free import check_candidates, collision_free_solutions, multistart_proposer
from ggik_core.solve.multistart import forward_kinematics, pose_errors, wrap_angle
from tests.robots.test_collision import planar_urdf


@pytest.fixture
def planar(tmp_path) -> CollisionModel:
    path = tmp_path / "planar.urdf"
    path.write_text(planar_urdf())
    return CollisionModel.from_urdf(path, "base", "link3", samples=0)


def test_check_candidates_matches_the_model(planar):
    q = np.random.default_rng(0).uniform(-3.1, 3.1, (4, 5, 3))
    valid = np.random.default_rng(1).random((4, 5)) < 0.7
    free, dist = check_candidates(planar, q, valid)
    f, d = planar.check(q[valid])
    np.testing.assert_array_equal(free[valid], f)
    np.testing.assert_allclose(dist[valid], d)
    assert not free[~valid].any() and np.isnan(dist[~valid]).all()


def test_reseeding_collects_k_distinct_free_solutions(planar):
    rng = np.random.default_rng(2)
    calls = []

    def propose(todo, round_):
        calls.append(len(todo))
        q = rng.uniform(-3.1, 3.1, (len(todo), 6, 3))
        return q, np.ones(q.shape[:2], dtype=bool)

    out = collision_free_solutions(planar, propose, goals=3, k=5, distinct_tol=0.05)
    assert (out.counts == 5).all()
    for g in range(3):
        assert planar.check(out.q[g])[0].all()
        d = np.abs(wrap_angle(out.q[g][:, None] - out.q[g][None])).max(-1)
        assert (d[~np.eye(5, dtype=bool)] >= 0.05).all()
        assert (out.min_distance[g] > 0).all()
    assert calls[0] == 3 and out.rounds == len(calls)


def test_stops_at_the_round_limit(planar):
    q = np.random.default_rng(3).uniform(-3.1, 3.1, (300, 3))
    hit = q[~planar.check(q, distance=False)[0]][0]

    def propose(todo, round_):  # always the same colliding configuration
        rows = np.tile(hit, (len(todo), 2, 1))
        return rows, np.ones(rows.shape[:2], dtype=bool)

    out = collision_free_solutions(planar, propose, goals=2, k=3, max_rounds=4)
    assert out.rounds == 4 and (out.counts == 0).all() and out.checked == 4 * 2


def test_multistart_on_panda_reaches_goals_and_is_free():
    from pipeline.bench.collide import ARMS, example_robot_data_dir, tabletop_scene

    erd = example_robot_data_dir()
    if erd is None:
        pytest.skip("example-robot-data is not installed")
    rel, base, ee, table = ARMS["panda"]
    model = CollisionModel.from_urdf(erd / rel, base, ee, samples=300, scene=tabletop_scene(table, 0.8))
    robot = model.robot
    q = robot.lower_np + np.random.default_rng(4).random((2, robot.dof)) * (robot.upper_np - robot.lower_np)
    goals = forward_kinematics(robot.chain_np, q)
    out = collision_free_solutions(model, multistart_proposer(model, goals, m=16), goals=2, k=4, time_budget_s=30)
    assert (out.counts >= 1).all()
    for g in range(2):
        pos, rot = pose_errors(forward_kinematics(robot.chain_np, out.q[g]), goals[g])
        assert pos.max() < 1e-4 and rot.max() < 1e-3
        assert model.check(out.q[g])[0].all()
