"""Stage `evaluate` on a tiny random model: strict JSON, per-arm statistics, sample table, seeding."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from ggik_core.model.cvae import GGIK, ModelConfig
from pipeline.stages.evaluate import evaluate
from pipeline.stages.eval_params import EvalParams
from ggik_core.model.files import save_model

ARMS = ("ur10", "panda")
PARAMS = EvalParams(problems_per_arm=3, samples=4, refine_max_iter=5, passes=1)
KINDS = ("raw", "reencoded", "refined")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("evaluate")
    torch.manual_seed(0)
    m = GGIK(ModelConfig(hidden=16, layers=2, latent=4, components=3, message=16))
    model_path = base / "model.pt"
    save_model(m, m.cfg, [], model_path)
    out = []
    for name in ("first", "second"):
        d = base / name
        results = evaluate(PARAMS, model_path, d, arms=ARMS)
        out.append((d, results))
    return out


def strict_json(path) -> dict:
    def no_constant(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(path.read_text(), parse_constant=no_constant)


def drop_seconds(obj):
    if isinstance(obj, dict):
        return {k: drop_seconds(v) for k, v in obj.items() if k != "seconds"}
    if isinstance(obj, list):
        return [drop_seconds(v) for v in obj]
    return obj


def test_eval_json_is_strict_and_complete(runs):
    d, _ = runs[0]
    doc = strict_json(d / "eval_detail.json")
    assert set(doc["arms"]) == set(ARMS)
    assert doc["params"]["problems_per_arm"] == 3 and doc["params"]["samples"] == 4 and doc["params"]["passes"] == 1
    for arm in ARMS:
        res = doc["arms"][arm]
        assert res["dof"] == {"ur10": 6, "panda": 7}[arm]
        for kind in KINDS:
            m = res[kind]
            for key in ("position_mm", "rotation_deg", "best_of_k_position_mm", "success", "goal_success",
                        "within_limits", "table_protocol", "distinct_valid_per_goal", "seconds"):
                assert key in m, (arm, kind, key)
            assert set(m["position_mm"]) == {"mean", "median", "min", "max", "q1", "q3"}
            assert 0.0 <= m["within_limits"] <= 1.0
            assert m["position_mm"]["min"] <= m["position_mm"]["median"] <= m["position_mm"]["max"]
            assert m["seconds"] > 0
    for kind in KINDS:
        overall = doc["overall"][kind]
        assert "position_mm" in overall and "success" in overall and "seconds" in overall
        assert overall["seconds"] == pytest.approx(sum(doc["arms"][a][kind]["seconds"] for a in ARMS))


def test_eval_json_holds_the_headline_figures_of_the_detail(runs, tmp_path):
    """eval.json (the DVC metrics file): per arm and overall, five figures copied from eval_detail.json."""
    d, _ = runs[0]
    head, detail = strict_json(d / "eval.json"), strict_json(d / "eval_detail.json")
    assert list(head) == ["overall", *ARMS]
    for name, block in (("overall", detail["overall"]), *((arm, detail["arms"][arm]) for arm in ARMS)):
        assert head[name] == {
            "raw_median_mm": block["raw"]["position_mm"]["median"],
            "raw_best_mm": block["raw"]["best_of_k_position_mm"]["median"],
            "reenc_median_mm": block["reencoded"]["position_mm"]["median"],
            "refined_success": block["refined"]["success"]["1mm_1deg"],
            "distinct_per_goal": block["refined"]["distinct_1mm_1deg_per_goal"],
        }, name


def test_nan_statistics_are_written_as_null(runs):
    """An untrained model has no valid solutions: diversity is NaN in memory, null in the file."""
    d, results = runs[0]
    doc = strict_json(d / "eval_detail.json")
    for arm in ARMS:
        value = results["arms"][arm]["raw"]["diversity_rad"]
        written = doc["arms"][arm]["raw"]["diversity_rad"]
        if isinstance(value, float) and math.isnan(value):
            assert written is None
        else:
            assert written == pytest.approx(value)


def test_refined_solutions_respect_the_limits(runs):
    _, results = runs[0]
    for arm in ARMS:
        assert results["arms"][arm]["refined"]["within_limits"] == 1.0, arm
    # the untrained model's raw Panda samples leave the Panda's narrow joint-4/6 limits
    assert results["arms"]["panda"]["raw"]["within_limits"] < 1.0


def test_eval_samples_table(runs):
    d, results = runs[0]
    df = pd.read_parquet(d / "eval_samples.parquet")
    assert len(df) == len(ARMS) * len(KINDS) * PARAMS.problems_per_arm * PARAMS.samples
    for col in ("arm", "kind", "goal_id", "sample_id", "pos_err_mm", "rot_err_deg", "within_limits"):
        assert col in df.columns, col
    counts = df.groupby(["arm", "kind"]).size()
    assert set(counts.index) == {(a, k) for a in ARMS for k in KINDS}
    assert (counts == PARAMS.problems_per_arm * PARAMS.samples).all()
    assert np.isfinite(df["pos_err_mm"]).all() and np.isfinite(df["rot_err_deg"]).all()
    # the table and the JSON describe the same samples
    for arm in ARMS:
        for kind in KINDS:
            sub = df[(df["arm"] == arm) & (df["kind"] == kind)]
            m = results["arms"][arm][kind]
            assert float(np.median(sub["pos_err_mm"])) == pytest.approx(m["position_mm"]["median"], rel=1e-12)
            assert float(sub["rot_err_deg"].max()) == pytest.approx(m["rotation_deg"]["max"], rel=1e-12)
            assert float(sub["within_limits"].mean()) == pytest.approx(m["within_limits"], rel=1e-12)


def test_seeded_runs_are_identical_but_for_seconds(runs):
    (d1, _), (d2, _) = runs
    a, b = strict_json(d1 / "eval_detail.json"), strict_json(d2 / "eval_detail.json")
    assert drop_seconds(a) == drop_seconds(b)
    assert "seconds" in a["arms"]["ur10"]["raw"]  # the filter removed something real
    pd.testing.assert_frame_equal(pd.read_parquet(d1 / "eval_samples.parquet"), pd.read_parquet(d2 / "eval_samples.parquet"))


def test_first_goal_solutions_are_pictured_in_the_report(runs, tmp_path):
    """evaluate writes each arm's first goal as a `ggik solve` table; report draws the arm in them."""
    from ggik_core.robots.catalog import load_arm
    from ggik_core.robots.transforms import pose_from_xyz_quat
    from pipeline.stages.report import _arm_pictures

    d, _ = runs[0]
    df = pd.read_parquet(d / "eval_solutions.parquet")
    assert list(df["arm"].unique()) == list(ARMS) and (df["goal_id"] == 0).all()
    assert (df.groupby("arm").size() == PARAMS.samples).all()
    for arm, rows in df.groupby("arm"):
        robot = load_arm(arm)
        q = torch.tensor(rows[[f"q_{j + 1}" for j in range(robot.dof)]].to_numpy())
        goal = pose_from_xyz_quat(torch.tensor(rows[["goal_x", "goal_y", "goal_z", "goal_qw", "goal_qx", "goal_qy", "goal_qz"]].to_numpy()[0]))
        pos_mm = (robot.fk(q)[:, :3, 3] - goal[:3, 3]).norm(dim=-1).numpy() * 1000.0
        assert np.allclose(pos_mm, rows["pos_err_mm"].to_numpy(), atol=1e-6)  # errors are FK-checked
        assert not (rows["distinct"] & ~rows["solved"]).any()
    paths = _arm_pictures(df, tmp_path)
    assert [p.name for p in paths] == [f"arm_{a}.png" for a in ARMS]
    assert all(p.stat().st_size > 10_000 for p in paths)


def test_without_passes_the_raw_samples_are_the_same_and_nothing_is_reencoded(runs, tmp_path):
    """``raw`` is always GGIK's one-pass sampler, and the refined samples start from it;
    ``reencoded`` exists only when ``passes > 0``."""
    d, _ = runs[0]
    p0 = EvalParams(problems_per_arm=3, samples=4, refine_max_iter=5, passes=0)
    evaluate(p0, d.parent / "model.pt", tmp_path, arms=ARMS)
    without, with_passes = strict_json(tmp_path / "eval_detail.json"), strict_json(d / "eval_detail.json")  # NaN written as null
    for arm in ARMS:
        assert "reencoded" not in without["arms"][arm]
        for kind in ("raw", "refined"):
            assert drop_seconds(without["arms"][arm][kind]) == drop_seconds(with_passes["arms"][arm][kind])
    assert set(without["overall"]) == {"raw", "refined"}
    assert "reenc_median_mm" not in strict_json(tmp_path / "eval.json")["overall"]
    assert "reencoded" not in set(pd.read_parquet(tmp_path / "eval_samples.parquet")["kind"])
