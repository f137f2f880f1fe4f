"""`bench_ik` end to end on a tiny untrained model: report structure, ratios, missing baselines.

pytorch-kinematics is made unimportable here (its row must say "not installed"); TRAC-IK runs when
its wheel and the reference URDFs are present and is reported as missing otherwise.
"""

from __future__ import annotations

import json
import math
import sys

import pytest
import torch

from ggik_core.model.cvae import GGIK, ModelConfig
from pipeline.bench.ik import bench_ik
from pipeline.bench.ik_scores import BASELINES, METHODS, RATE_METRICS, THRESHOLDS
from ggik_core.model.files import save_model

ARMS = ["ur10", "panda"]
GOALS, SAMPLES, MAX_ITER = 3, 4, 20
MISSING = ("not installed", "unavailable")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench_ik")
    torch.manual_seed(0)
    cfg = ModelConfig(hidden=16, layers=2, latent=4, components=3)
    model_path = tmp / "model.pt"
    save_model(GGIK(cfg), cfg, [], model_path)
    mp = pytest.MonkeyPatch()
    mp.setitem(sys.modules, "pytorch_kinematics", None)  # `import pytorch_kinematics` now raises ImportError
    try:
        out = bench_ik(model_path, GOALS, SAMPLES, 0, tmp / "metrics", MAX_ITER, ARMS, "cpu")
    finally:
        mp.undo()
    return out, tmp / "metrics"


def ok(entry: dict) -> bool:
    return entry.get("status") == "ok"


def test_files_and_structure(report):
    rep, out_dir = report
    on_disk = json.loads((out_dir / "bench.json").read_text())
    assert on_disk == json.loads(json.dumps(rep))
    md = (out_dir / "bench.md").read_text()
    assert md.startswith("# ggik bench ik")
    assert rep["config"]["arms"] == ARMS
    assert rep["config"]["goals_per_arm"] == GOALS and rep["config"]["samples"] == SAMPLES
    assert rep["config"]["refine"]["max_iter"] == MAX_ITER
    assert set(rep["results"]) == set(ARMS)
    for arm in ARMS:
        assert set(rep["results"][arm]) == set(METHODS)
        for method in ("ggik", "ggik_refined", "random_refined"):
            e = rep["results"][arm][method]
            assert ok(e), e
            assert e["goals"] == GOALS and e["candidates"] == GOALS * SAMPLES
            assert e["wall_s"] > 0
            for key in THRESHOLDS:
                t = e[key]
                assert 0.0 <= t["success_candidates"] <= t["success_goals"] <= 1.0
                assert t["success_candidates"] == pytest.approx(t["successes"] / (GOALS * SAMPLES))
                assert t["solutions_per_s"] == pytest.approx(t["successes"] / e["wall_s"])
                assert t["goals_solved"] <= t["distinct_total"] <= t["successes"]
            # the strict threshold can only lose successes
            assert e["0.1mm_0.1deg"]["successes"] <= e["1mm_1deg"]["successes"]
    # pooled figures add up over the arms
    for method, e in rep["overall"].items():
        if ok(e):
            assert e["candidates"] == sum(rep["results"][a][method]["candidates"] for a in ARMS)
            for key in THRESHOLDS:
                assert e[key]["successes"] == sum(rep["results"][a][method][key]["successes"] for a in ARMS)


def test_random_seed_refinement_succeeds(report):
    rep, _ = report
    for arm in ARMS:  # every arm, not one of them
        e = rep["results"][arm]["random_refined"]["1mm_1deg"]
        assert e["goals_solved"] == GOALS and e["success_candidates"] >= 0.75, (arm, e)  # measured: all goals, 11 and 12 of 12


def test_missing_baseline_is_reported(report):
    rep, out_dir = report
    for arm in ARMS:
        e = rep["results"][arm]["pytorch_kinematics"]
        assert e["status"].startswith("not installed:"), e
        assert "ratio_to_best_baseline" not in e
        tk = rep["results"][arm]["trac_ik"]
        assert ok(tk) or tk["status"].startswith(MISSING), tk
    assert rep["overall"]["pytorch_kinematics"]["status"].startswith("not installed:")
    md = (out_dir / "bench.md").read_text()
    assert "not installed:" in md


def check_ratios(block: dict) -> None:
    ran = {m: block[m] for m in BASELINES if ok(block[m])}
    assert "random_refined" in ran
    best_wall = min(e["wall_s"] for e in ran.values())
    for method, e in block.items():
        if not ok(e):
            continue
        r, which = e["ratio_to_best_baseline"], e["best_baseline"]
        assert r["wall_s"] == pytest.approx(e["wall_s"] / best_wall)
        assert ran[which["wall_s"]]["wall_s"] == best_wall
        for key in THRESHOLDS:
            for metric in RATE_METRICS:
                best = max(b[key][metric] for b in ran.values())
                assert ran[which[key][metric]][key][metric] == best
                if best > 0:
                    assert r[key][metric] == pytest.approx(e[key][metric] / best)
                else:
                    assert r[key][metric] is None
                if method in ran:  # no baseline beats the best one
                    assert r[key][metric] is None or r[key][metric] <= 1.0 + 1e-12
        if method in ran:
            assert r["wall_s"] >= 1.0 - 1e-12
        assert math.isfinite(e["wall_s"])


def test_ratios_match_numbers(report):
    rep, _ = report
    for arm in ARMS:
        check_ratios(rep["results"][arm])
    check_ratios(rep["overall"])


def test_a_urdf_chain_with_a_continuous_joint_is_benched_beside_the_arms(tmp_path):
    """``--urdf PATH:BASE:EE``: the user's chain runs every method beside the catalog arm; its
    continuous wrist joint is unlimited for our LM and for TRAC-IK, and the pooled rows split
    the catalog arms from the URDFs."""
    from ggik_core.robots.catalog import urdf_file, urdf_links
    from pipeline.bench.baselines import urdf_dir

    src = urdf_dir() / urdf_file("ur10")
    if not src.is_file():
        pytest.skip(f"reference URDFs not found in {urdf_dir()}")
    text = src.read_text()
    head, tail = text.split('<joint name="wrist_3_joint" type="revolute">', 1)
    path = tmp_path / "ur10_cont.urdf"
    (tmp_path / "ur10.urdf").write_text(text)
    path.write_text(head + '<joint name="wrist_3_joint" type="continuous">' + tail)
    base, ee = urdf_links("ur10")
    rep = bench_ik(None, GOALS, SAMPLES, 0, tmp_path / "metrics", MAX_ITER, ["ur10"], "cpu", [f"{path}:{base}:{ee}"])
    assert rep["config"]["arms"] == ["ur10", "ur10_cont"]
    assert rep["config"]["urdfs"] == {"ur10_cont": f"{path}:{base}:{ee}"}
    # a URDF named like a catalog arm is labelled apart from it, even when the arm is not benched
    same = bench_ik(None, 1, 2, 0, tmp_path / "m2", 5, [], "cpu", [f"{tmp_path / 'ur10.urdf'}:{base}:{ee}"])
    assert same["config"]["arms"] == ["ur10_urdf"] and same["pools"] == {} and same["branch_coverage"] == {}
    e = rep["results"]["ur10_cont"]["random_refined"]
    assert ok(e) and e["1mm_1deg"]["success_goals"] == 1.0
    tk = rep["results"]["ur10_cont"]["trac_ik"]
    assert ok(tk) or tk["status"].startswith(MISSING), tk
    assert set(rep["pools"]) == {"five arms", "URDFs"}
    assert rep["pools"]["URDFs"]["random_refined"]["goals"] == GOALS
    assert rep["overall"]["random_refined"]["goals"] == 2 * GOALS


@pytest.mark.parametrize("spec, message", [("robot.urdf", "PATH:BASE_LINK:EE_LINK"), ("missing.urdf:a:b", "not found")])
def test_bad_urdf_specs_are_one_line_errors(tmp_path, spec, message):
    from ggik_core.errors import GGIKError

    with pytest.raises(GGIKError, match=message):
        bench_ik(None, GOALS, SAMPLES, 0, tmp_path, MAX_ITER, [], "cpu", [spec])
    with pytest.raises(GGIKError, match="no robots"):
        bench_ik(None, GOALS, SAMPLES, 0, tmp_path, MAX_ITER, [], "cpu", [])


def test_rounds_keep_the_median_run_of_the_seeded_methods(tmp_path):
    """``rounds`` times every seeded method several times and keeps the run of median wall time:
    our LM is deterministic, so its results are those of a single round; the count is recorded."""
    from ggik_core.errors import GGIKError

    one = bench_ik(None, GOALS, SAMPLES, 0, tmp_path / "one", MAX_ITER, ["ur10"], "cpu")
    three = bench_ik(None, GOALS, SAMPLES, 0, tmp_path / "three", MAX_ITER, ["ur10"], "cpu", rounds=3)
    assert one["config"]["rounds"] == 1 and three["config"]["rounds"] == 3
    a, b = one["results"]["ur10"]["random_refined"], three["results"]["ur10"]["random_refined"]
    assert a["1mm_1deg"]["success_candidates"] == b["1mm_1deg"]["success_candidates"] > 0
    assert a["1mm_1deg"]["distinct_per_goal"] == b["1mm_1deg"]["distinct_per_goal"]
    with pytest.raises(GGIKError, match="rounds"):
        bench_ik(None, GOALS, SAMPLES, 0, tmp_path / "zero", MAX_ITER, ["ur10"], "cpu", rounds=0)


def test_the_torch_loop_can_be_benched_beside_the_kernel(tmp_path):
    """``--lm-backend torch`` runs the batched loop the compiled kernel replaced (for side-by-side
    timings); both make every random-seeded candidate exact; a bad name is a one-line error."""
    from ggik_core.errors import GGIKError

    runs = {b: bench_ik(None, GOALS, SAMPLES, 0, tmp_path / b, MAX_ITER, ["kuka"], "cpu", backend=b) for b in ("torch", "kernel")}
    for b, rep in runs.items():
        assert rep["config"]["refine"]["backend"] == b
        assert rep["results"]["kuka"]["random_refined"]["1mm_1deg"]["success_candidates"] == 1.0
        assert f"(backend {b})" in (tmp_path / b / "bench.md").read_text()
    with pytest.raises(GGIKError, match="--lm-backend"):
        bench_ik(None, GOALS, SAMPLES, 0, tmp_path / "bad", MAX_ITER, ["kuka"], "cpu", backend="numpy")
