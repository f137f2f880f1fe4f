"""Evaluation statistics (spec §6) on arrays whose answers are known by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ggik_core.solve.metrics import (
    THRESHOLDS,
    best_of_k,
    diversity,
    solution_metrics,
    success,
    summary,
    table_protocol,
)
from ggik_core.solve.solver import distinct_count


def test_summary_of_known_values():
    s = summary(np.array([5.0, 1.0, 4.0, 2.0, 3.0]))
    assert s == {"mean": 3.0, "median": 3.0, "min": 1.0, "max": 5.0, "q1": 2.0, "q3": 4.0}
    s = summary(np.array([[0.0, 10.0], [20.0, 30.0]]))  # flattened; linear interpolation of quartiles
    assert s["mean"] == 15.0 and s["median"] == 15.0
    assert s["q1"] == pytest.approx(7.5) and s["q3"] == pytest.approx(22.5)
    assert s["min"] == 0.0 and s["max"] == 30.0


def test_summary_of_nothing_is_nan():
    s = summary(np.array([]))
    assert set(s) == {"mean", "median", "min", "max", "q1", "q3"}
    assert all(math.isnan(v) for v in s.values())


def test_success_position_only_vs_combined():
    pos_mm = np.array([5.0, 15.0, 0.5, 9.9])
    rot_deg = np.array([90.0, 0.0, 0.5, 3.0])
    assert success(pos_mm, rot_deg, 10.0, None).tolist() == [True, False, True, True]  # rotation ignored
    assert success(pos_mm, rot_deg, 10.0, 5.0).tolist() == [False, False, True, True]
    assert success(pos_mm, rot_deg, 1.0, 1.0).tolist() == [False, False, True, False]
    # strict thresholds: exactly at the limit is a failure
    assert success(np.array([1.0]), np.array([0.0]), 1.0, 1.0).tolist() == [False]


def test_thresholds_table():
    names = [t[0] for t in THRESHOLDS]
    assert names[0] == "10mm" and THRESHOLDS[0][2] is None  # the reference's position-only figure
    assert "1mm_1deg" in names
    assert all(t[2] is not None for t in THRESHOLDS[1:])  # the others count rotation too


def test_best_of_k_picks_the_smallest_mm_plus_deg():
    pos = np.array([[3.0, 1.0, 2.0], [0.1, 5.0, 0.2]])
    rot = np.array([[0.0, 5.0, 0.5], [9.0, 0.0, 0.05]])
    b_pos, b_rot = best_of_k(pos, rot)
    assert b_pos.tolist() == [2.0, 0.2]
    assert b_rot.tolist() == [0.5, 0.05]


def test_table_protocol_drops_the_outlier_and_averages_per_goal():
    """100 samples (4 goals x 25): the 99th percentile cut removes exactly the one huge value."""
    rng = np.random.default_rng(0)
    err = rng.uniform(0.0, 10.0, size=(4, 25))
    err[0] += 100.0  # goal 0 is much worse: per-goal averaging differs from pooling
    err[2, 7] = 1e9  # the outlier
    out = table_protocol(err)
    rows = [err[0], err[1], np.delete(err[2], 7), err[3]]
    expect = {
        "mean": np.mean([r.mean() for r in rows]),
        "min": np.mean([r.min() for r in rows]),
        "max": np.mean([r.max() for r in rows]),
        "median": np.mean([np.median(r) for r in rows]),
        "q1": np.mean([np.percentile(r, 25) for r in rows]),
        "q3": np.mean([np.percentile(r, 75) for r in rows]),
    }
    assert set(out) == set(expect)
    for key, value in expect.items():
        assert out[key] == pytest.approx(value, rel=1e-12), key
    assert out["max"] < 200.0  # the 1e9 outlier is gone
    pooled_median = np.median(np.concatenate(rows))
    assert abs(out["median"] - pooled_median) > 1.0  # per-goal statistics, not pooled ones


def test_table_protocol_one_outlier_per_arm():
    """Each arm's errors are processed on their own: each arm loses its own outlier."""
    rng = np.random.default_rng(1)
    for arm_seed in range(3):
        err = rng.uniform(1.0, 2.0, size=(5, 20))
        g, s = arm_seed + 1, 3 * arm_seed
        err[g, s] = 1e6 * (arm_seed + 1)
        out = table_protocol(err)
        clean = [np.delete(row, s) if i == g else row for i, row in enumerate(err)]
        assert out["max"] == pytest.approx(np.mean([r.max() for r in clean]), rel=1e-12)
        assert out["mean"] == pytest.approx(np.mean([r.mean() for r in clean]), rel=1e-12)
        assert out["max"] <= 2.0


def test_distinct_count_duplicates_wraparound_and_invalid():
    base = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    q = torch.stack([
        base,  # counted
        base + 0.01,  # duplicate of 0
        base + torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64),  # distinct
        torch.tensor([math.pi - 0.01, 0.0, 0.0], dtype=torch.float64),  # counted
        torch.tensor([-math.pi + 0.01, 0.0, 0.0], dtype=torch.float64),  # 0.02 from slot 3 across ±π
        torch.tensor([1.5, 1.5, 1.5], dtype=torch.float64),  # distinct but invalid
    ])[None]
    valid = torch.tensor([[True, True, True, True, True, False]])
    assert distinct_count(q, valid, 0.05).tolist() == [3]
    assert distinct_count(q, torch.ones_like(valid), 0.05).tolist() == [4]
    assert distinct_count(q, torch.zeros_like(valid), 0.05).tolist() == [0]
    # a tight tolerance separates the near-duplicates
    assert distinct_count(q, valid, 0.005).tolist() == [5]


def test_distinct_count_invalid_slot_does_not_hide_a_valid_twin():
    q = torch.tensor([[[0.5, 0.5], [0.5, 0.5], [2.0, 2.0]], [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]], dtype=torch.float64)
    valid = torch.tensor([[False, True, True], [True, True, True]])
    assert distinct_count(q, valid, 0.05).tolist() == [2, 1]


def test_diversity_zero_for_identical_positive_otherwise():
    same = torch.tensor([[[0.1, 0.2, 0.3]] * 4], dtype=torch.float64)
    valid = torch.ones(1, 4, dtype=torch.bool)
    assert diversity(same, valid) == 0.0
    two = torch.tensor([[[0.0, 0.0], [0.2, 0.2]]], dtype=torch.float64)
    assert diversity(two, torch.ones(1, 2, dtype=torch.bool)) == pytest.approx(0.2, abs=1e-12)
    # differences are wrapped: π - 0.05 and -π + 0.05 are 0.1 apart
    wrap = torch.tensor([[[math.pi - 0.05], [-math.pi + 0.05]]], dtype=torch.float64)
    assert diversity(wrap, torch.ones(1, 2, dtype=torch.bool)) == pytest.approx(0.1, abs=1e-12)


def test_diversity_uses_only_valid_solutions_and_goals_with_two():
    q = torch.tensor([
        [[0.0, 0.0], [0.0, 0.0], [3.0, 3.0]],  # the far one is invalid: diversity 0 here
        [[0.0, 0.0], [0.4, 0.4], [1.0, 1.0]],  # only one valid: ignored
    ], dtype=torch.float64)
    valid = torch.tensor([[True, True, False], [False, True, False]])
    assert diversity(q, valid) == 0.0
    valid[0, 2] = True
    assert diversity(q, valid) > 0.0
    assert math.isnan(diversity(q, torch.zeros_like(valid)))


def test_solution_metrics_keys_and_values():
    G, k, n = 3, 4, 5
    gen = torch.Generator().manual_seed(0)
    q = torch.rand(G, k, n, generator=gen, dtype=torch.float64)
    pos_m = torch.tensor([[0.0005, 0.02, 0.004, 0.0001], [0.5, 0.3, 0.2, 0.1], [0.009, 0.0009, 0.00005, 0.001]], dtype=torch.float64)
    rot_rad = torch.deg2rad(torch.tensor([[0.5, 0.0, 1.5, 90.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.9, 0.05, 0.5]], dtype=torch.float64))
    within = torch.ones(G, k, dtype=torch.bool)
    within[0, 0] = False
    m = solution_metrics(q, pos_m, rot_rad, within, 0.05)
    for key in ("position_mm", "rotation_deg", "best_of_k_position_mm", "best_of_k_rotation_deg", "success",
                "goal_success", "within_limits", "diversity_rad", "distinct_valid_per_goal",
                "distinct_1mm_1deg_per_goal", "table_protocol"):
        assert key in m, key
    assert set(m["success"]) == {t[0] for t in THRESHOLDS} == set(m["goal_success"])
    assert set(m["table_protocol"]) == {"position_mm", "rotation_deg"}
    assert set(m["position_mm"]) == {"mean", "median", "min", "max", "q1", "q3"}
    pos_mm = pos_m.numpy() * 1000
    rot_deg = np.degrees(rot_rad.numpy())
    assert m["position_mm"]["max"] == pytest.approx(500.0)
    assert m["rotation_deg"]["max"] == pytest.approx(90.0)
    assert m["within_limits"] == pytest.approx(11 / 12)
    # 10 mm, position only: 7 of 12, the 0.1 mm / 90° one included (rotation ignored)
    assert m["success"]["10mm"] == pytest.approx((pos_mm < 10).mean())
    assert m["success"]["10mm"] == pytest.approx(7 / 12)
    # 1 mm and 1°: the 0.1 mm / 90° one fails on rotation, the 1.0 mm one on the strict limit
    assert m["success"]["1mm_1deg"] == pytest.approx(((pos_mm < 1) & (rot_deg < 1)).mean())
    assert m["success"]["1mm_1deg"] == pytest.approx(3 / 12)
    assert m["goal_success"]["10mm"] == pytest.approx(2 / 3)
    assert m["success"]["0.1mm_0.1deg"] == pytest.approx(1 / 12)
    # valid (10 mm, 5°, within limits): row 0 slot 2 only; row 2 all four -> distinct per goal (1 + 0 + 4) / 3
    assert m["distinct_valid_per_goal"] == pytest.approx(5 / 3)
    # exact (1 mm, 1°, within): row 0 slot 0 is outside the limits, row 2 slots 1 and 2
    assert m["distinct_1mm_1deg_per_goal"] == pytest.approx(2 / 3)
    assert m["diversity_rad"] > 0
