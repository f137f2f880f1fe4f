"""``Solver(collision=..., method=...)`` and ``Solver.solve(rank=...)``: the library side of the
``ggik solve`` options."""

from __future__ import annotations

import numpy as np
import pytest

from ggik_core.api import Solver
from ggik_core.errors import GGIKError
from ggik_core.robots.catalog import load_arm
from ggik_core.solve.collision_solve import parse_pairs
from ggik_core.solve.multistart import forward_kinematics
from tests.pipeline.commands.test_solve_cli_urdf_errors import erd


def goals_of(arm: str, n: int, seed: int = 0) -> np.ndarray:
    r = load_arm(arm)
    rng = np.random.default_rng(seed)
    return forward_kinematics(r.chain_np, r.lower_np + rng.random((n, r.dof)) * (r.upper_np - r.lower_np))


def test_catalog_arms_check_no_collisions_by_default() -> None:
    s = Solver("panda", threads=1)
    assert s.collision.model is None and s.collision.note is None
    assert s.solve(goals_of("panda", 1), k=4).free is None


def test_method_auto_picks_closed_form_for_6r_and_lm_for_7dof() -> None:
    assert Solver("ur10", threads=1).method == "analytic"
    assert Solver("panda", threads=1).method == "lm"
    assert Solver("ur10", method="lm", threads=1).method == "lm"
    with pytest.raises(GGIKError, match="panda has 7 joints"):
        Solver("panda", method="analytic")
    with pytest.raises(GGIKError, match="--method 'fast'"):
        Solver("ur10", method="fast")


def test_analytic_rows_are_exact_and_distinct_per_branch() -> None:
    res = Solver("ur10", threads=1).solve(goals_of("ur10", 3), k=2)
    assert res.method == "analytic" and res.analytic.all()
    assert res.q.shape[1] >= 2
    d = res.distinct
    assert (res.pos_err_mm[d] < 1e-3).all() and (res.distinct_per_goal >= 2).all()


@pytest.mark.parametrize("rank, column", [("margin", "margin"), ("manipulability", "manipulability"),
                                          ("near:0,0,0,0,0,0,0", "near_rad")])
def test_rank_orders_solved_rows_by_score(rank: str, column: str) -> None:
    df = Solver("panda", threads=1).solve(goals_of("panda", 2), k=8, rank=rank).to_frame()
    for _, g in df.groupby("goal_id"):
        v = g[g["solved"]][column].to_numpy()
        assert len(v) >= 2
        steps = np.diff(v)
        assert (steps >= -1e-12).all() if column == "near_rad" else (steps <= 1e-12).all()


def test_rank_near_needs_one_value_per_joint() -> None:
    with pytest.raises(GGIKError, match="expected 7 joint values"):
        Solver("panda", threads=1).solve(goals_of("panda", 1), k=2, rank="near:1,2,3")


def test_goal_rows_are_echoed_as_given() -> None:
    row = [0.4, 0.1, 0.5, -0.7071067811865476, 0.0, 0.7071067811865476, 0.0]
    df = Solver("panda", threads=1).solve(row, k=2).to_frame()
    assert df[["goal_x", "goal_y", "goal_z", "goal_qw", "goal_qx", "goal_qy", "goal_qz"]].to_numpy().tolist() == [row, row]


def test_parse_pairs() -> None:
    assert parse_pairs("a:b, c:d") == [("a", "b"), ("c", "d")]
    assert parse_pairs([("a", "b")]) == [("a", "b")]
    with pytest.raises(GGIKError, match="not 'linkA:linkB'"):
        parse_pairs("a-b")


def test_panda_urdf_self_collision_free_solutions() -> None:
    from pipeline.bench.collide import PinocchioCheck

    urdf = erd("panda_description/urdf/panda.urdf")
    s = Solver(str(urdf), base_link="panda_link0", ee_link="panda_link8", collision="self", exclude_pairs="panda_link0:panda_link7",
               threads=1)
    assert s.collision.mode == "self" and ("panda_link0", "panda_link7") in s.collision.model.excluded
    res = s.solve([[0.3, 0.3, 0.4, 0, 1, 0, 0], [0.4, -0.2, 0.5, 0, 1, 0, 0]], k=6)
    assert res.free is not None and res.free_goals.all()
    q = res.q[res.free]
    assert PinocchioCheck(urdf, s.collision.model).free(q).all()
    assert (res.min_distance_mm[res.free] > 0).all()
