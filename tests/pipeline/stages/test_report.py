"""`report()`: tables and figures from synthetic train/evaluate metrics in the pipeline's formats."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from ggik_core.errors import DataError
from ggik_core.solve.metrics import solution_metrics
from pipeline.stages.report import report
from pipeline.stages.train.logbook import TrainLog
from pipeline.common.tables import fmt, fmt_pct

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ARMS = {"armalpha": 6, "armbeta": 7}
G, K = 6, 5  # goals per arm, samples per goal
TRAIN_INFO = {"layer": "egat", "device": "cpu", "processes": 1}
OUTPUTS = ("index.md", "losses.md", "losses.csv", "errors.md", "errors.csv", "arms.md", "arms.csv",
           "box_position.png", "box_rotation.png", "loss_curves.png", "loss_vs_time.png")
PROBES_PLOT = "train/plots/custom/accuracy_time.json"


def _candidates(gen: torch.Generator, dof: int, scale: float) -> tuple:
    q = (torch.rand(G, K, dof, generator=gen, dtype=torch.float64) - 0.5) * 2 * math.pi
    pos = torch.rand(G, K, generator=gen, dtype=torch.float64) * scale  # metres
    rot = torch.rand(G, K, generator=gen, dtype=torch.float64) * scale  # radians
    within = torch.rand(G, K, generator=gen) < 0.8
    return q, pos, rot, within


def _frame(arm: str, kind: str, pos: torch.Tensor, rot: torch.Tensor, within: torch.Tensor) -> pd.DataFrame:
    return pd.DataFrame({
        "arm": arm, "kind": kind,
        "goal_id": np.repeat(np.arange(G), K), "sample_id": np.tile(np.arange(K), G),
        "pos_err_mm": pos.numpy().reshape(-1) * 1000.0, "rot_err_deg": np.degrees(rot.numpy().reshape(-1)),
        "within_limits": within.numpy().reshape(-1),
    })


def write_inputs(metrics_dir, reencoded: bool = False) -> dict:
    """The training record (DVCLive, as the train stage keeps it), eval_detail.json and
    eval_samples.parquet as the train/evaluate stages write them."""
    metrics_dir.mkdir(parents=True, exist_ok=True)
    losses = pd.DataFrame({"epoch": [1, 2, 3], "lr": [3e-4] * 3, "beta": [0.0, 0.5, 1.0],
                           "train_rec": [3.0, 2.0, 1.23456], "train_kl": [0.5, 0.0456789, 0.05],
                           "train_total": [3.5, 2.02, 1.28024], "val_rec": [3.1, 2.34567, 2.4],
                           "val_kl": [0.6, 0.0678912, 0.07], "val_total": [3.7, 2.41356, 2.47], "minutes": [0.5, 1.0, 1.5]})
    TrainLog(metrics_dir, losses.to_dict("records"), [], TRAIN_INFO).finish(3, True)
    gen = torch.Generator().manual_seed(0)
    ev: dict = {"arms": {}, "params": {"problems_per_arm": G, "samples": K, "device": "cpu", "passes": 2 if reencoded else 0}}
    kinds = (("raw", 0.05), ("reencoded", 0.02), ("refined", 1e-4)) if reencoded else (("raw", 0.05), ("refined", 1e-4))
    frames, pooled = [], {kind: [] for kind, _ in kinds}
    for arm, dof in ARMS.items():
        ev["arms"][arm] = {"dof": dof}
        for kind, scale in kinds:
            q, pos, rot, within = _candidates(gen, dof, scale)
            m = solution_metrics(q, pos, rot, within, 0.05)
            m["seconds"] = 0.25 if kind == "raw" else 0.5
            ev["arms"][arm][kind] = m
            frames.append(_frame(arm, kind, pos, rot, within))
            pooled[kind].append((pos.reshape(-1, 1), rot.reshape(-1, 1), within.reshape(-1, 1)))
    ev["overall"] = {}
    for kind, parts in pooled.items():
        pos, rot, within = (torch.cat([p[i] for p in parts]) for i in range(3))
        m = solution_metrics(torch.zeros(pos.shape[0], 1, 1, dtype=torch.float64), pos, rot, within, 0.05)
        m["seconds"] = 1.5
        ev["overall"][kind] = m
    (metrics_dir / "eval_detail.json").write_text(json.dumps(ev).replace("NaN", "null"))
    pd.concat(frames, ignore_index=True).to_parquet(metrics_dir / "eval_samples.parquet", index=False)
    return ev


@pytest.fixture()
def inputs(tmp_path):
    metrics = tmp_path / "metrics"
    ev = write_inputs(metrics)
    return metrics, ev


def test_report_writes_everything(inputs, tmp_path):
    metrics, ev = inputs
    out = tmp_path / "report"
    written = report(metrics, out)
    assert {p.name for p in written} == set(OUTPUTS)
    for name in OUTPUTS:
        assert (out / name).is_file(), name
    for name in ("box_position.png", "box_rotation.png", "loss_curves.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
    assert not list(out.glob(".*.tmp")), "temporary files left behind"
    index = (out / "index.md").read_text()
    for name in OUTPUTS[1:]:
        assert f"({name})" in index


def test_losses_table(inputs, tmp_path):
    metrics, _ = inputs
    out = tmp_path / "report"
    report(metrics, out)
    md = (out / "losses.md").read_text()
    assert "egat" in md
    assert "| train | 1.23 | 0.0457 | 1.28 |" in md
    assert "| validation | 2.35 | 0.0679 | 2.41 |" in md
    df = pd.read_csv(out / "losses.csv")
    assert list(df["split"]) == ["train", "validation"]
    assert df.loc[0, "rec"] == pytest.approx(1.23456)
    assert df.loc[1, "kl"] == pytest.approx(0.0678912)
    assert set(df["layer"]) == {"egat"}


def test_errors_table(inputs, tmp_path):
    metrics, ev = inputs
    out = tmp_path / "report"
    report(metrics, out)
    md = (out / "errors.md").read_text()
    raw_pos = ev["overall"]["raw"]["position_mm"]
    assert f"| raw samples | {fmt(raw_pos['mean'])} | {fmt(raw_pos['median'])} |" in md
    assert "published" in md.lower() and "not ours" in md
    assert "| 4.6 |" in md and "| 3.3 |" in md and "| 5.8 |" in md and "| 0.4 |" in md
    df = pd.read_csv(out / "errors.csv")
    assert set(df["row"]) == {"raw samples", "best-of-k (raw)", "refined samples", "GGIK table protocol (raw)", "GGIK paper"}
    pub = df[(df["source"] == "published") & (df["quantity"] == "position_mm")].iloc[0]
    assert (pub["mean"], pub["q1"], pub["q3"]) == (4.6, 3.3, 5.8)
    ours = df[(df["row"] == "refined samples") & (df["quantity"] == "rotation_deg")].iloc[0]
    assert ours["median"] == pytest.approx(ev["overall"]["refined"]["rotation_deg"]["median"], rel=1e-5)
    tp = df[(df["row"] == "GGIK table protocol (raw)") & (df["quantity"] == "position_mm")].iloc[0]
    assert tp["q3"] == pytest.approx(ev["overall"]["raw"]["table_protocol"]["position_mm"]["q3"], rel=1e-5)


def test_arms_table(inputs, tmp_path):
    metrics, ev = inputs
    out = tmp_path / "report"
    report(metrics, out)
    md = (out / "arms.md").read_text()
    df = pd.read_csv(out / "arms.csv")
    assert list(df["arm"]) == [*ARMS, "overall"]
    for arm, dof in ARMS.items():
        res = ev["arms"][arm]
        assert f"| {arm} | {dof} | {fmt(res['raw']['position_mm']['mean'])} | {fmt(res['raw']['position_mm']['median'])} |" in md
        assert f"| {arm} | {fmt_pct(res['raw']['success']['10mm'])} |" in md
        row = df[df["arm"] == arm].iloc[0]
        assert row["dof"] == dof
        assert row["raw_rot_median_deg"] == pytest.approx(res["raw"]["rotation_deg"]["median"], rel=1e-5)
        assert row["bestk_pos_median_mm"] == pytest.approx(res["raw"]["best_of_k_position_mm"]["median"], rel=1e-5)
        assert row["refined_success_1mm_1deg"] == pytest.approx(res["refined"]["success"]["1mm_1deg"], rel=1e-5)
        assert row["refined_within_limits"] == pytest.approx(res["refined"]["within_limits"], rel=1e-5)
        assert row["refined_distinct_1mm_1deg_per_goal"] == pytest.approx(res["refined"]["distinct_1mm_1deg_per_goal"], rel=1e-5)
        assert row["raw_seconds"] == pytest.approx(0.25)
    assert df[df["arm"] == "overall"].iloc[0]["refined_seconds"] == pytest.approx(1.5)


def test_zero_errors_on_log_axes(inputs, tmp_path):
    metrics, _ = inputs
    df = pd.read_parquet(metrics / "eval_samples.parquet")
    df.loc[df["kind"] == "refined", ["pos_err_mm", "rot_err_deg"]] = 0.0
    df.to_parquet(metrics / "eval_samples.parquet", index=False)
    out = tmp_path / "report"
    report(metrics, out)
    assert (out / "box_position.png").read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize("name", ["eval_detail.json", "train/metrics.json", "train/plots/metrics/val/rec.tsv", "eval_samples.parquet"])
def test_missing_input(inputs, tmp_path, name):
    metrics, _ = inputs
    (metrics / name).unlink()
    with pytest.raises(DataError, match=name.replace(".", r"\.")):
        report(metrics, tmp_path / "report")


def test_malformed_inputs(inputs, tmp_path):
    metrics, ev = inputs
    (metrics / "eval_detail.json").write_text("{not json")
    with pytest.raises(DataError, match=r"eval_detail\.json"):
        report(metrics, tmp_path / "report")
    del ev["arms"]["armbeta"]["raw"]["position_mm"]
    (metrics / "eval_detail.json").write_text(json.dumps(ev).replace("NaN", "null"))
    with pytest.raises(DataError, match=r"eval_detail\.json.*armbeta"):
        report(metrics, tmp_path / "report")
    write_inputs(metrics)
    pd.DataFrame({"arm": ["x"]}).to_parquet(metrics / "eval_samples.parquet")
    with pytest.raises(DataError, match=r"eval_samples\.parquet.*pos_err_mm"):
        report(metrics, tmp_path / "report")
    write_inputs(metrics)
    (metrics / "train/plots/metrics/val/rec.tsv").write_text("step\tlr\n0\t0.1\n")
    with pytest.raises(DataError, match=r"rec\.tsv.*malformed"):
        report(metrics, tmp_path / "report")
    write_inputs(metrics)
    (metrics / "train/metrics.json").write_text(json.dumps({"train": {}, "val": {}, "epochs_done": 0}))
    with pytest.raises(DataError, match=r"train/metrics\.json"):
        report(metrics, tmp_path / "report")


def test_fmt():
    assert fmt(1234.56) == "1235"
    assert fmt(999.7) == "1000"
    assert fmt(12.345) == "12.3"
    assert fmt(0.0456789) == "0.0457"
    assert fmt(4.5e-7) == "4.50e-07"
    assert fmt(0) == "0"
    assert fmt(None) == "n/a" and fmt(float("nan")) == "n/a"
    assert fmt_pct(0.625) == "62.5%"


def test_accuracy_probes_are_drawn_when_training_probed(inputs, tmp_path):
    metrics, _ = inputs
    assert not (tmp_path / "r0" / "accuracy_vs_time.png").exists() and "accuracy_vs_time.png" not in {
        p.name for p in report(metrics, tmp_path / "r0")}
    probes = pd.DataFrame({"step": [10, 20], "graphs": [80, 160], "minutes": [0.5, 1.0], "beta": [0.1, 1.0],
                           "raw_median_mm": [300.0, 80.0], "best_of_k_mm": [60.0, 9.0],
                           "kuka_raw_mm": [290.0, 70.0], "kuka_best_mm": [50.0, 8.0]})
    (metrics / PROBES_PLOT).parent.mkdir(parents=True, exist_ok=True)
    (metrics / PROBES_PLOT).write_text(probes.to_json(orient="records"))
    out = tmp_path / "r1"
    assert "accuracy_vs_time.png" in {p.name for p in report(metrics, out)}
    assert (out / "accuracy_vs_time.png").read_bytes()[:8] == PNG_MAGIC
    assert "(accuracy_vs_time.png)" in (out / "index.md").read_text()
    (metrics / PROBES_PLOT).write_text(json.dumps([{"step": 1, "minutes": 0.5}]))
    with pytest.raises(DataError, match=r"accuracy_time\.json.*raw_median_mm"):
        report(metrics, tmp_path / "r2")


def test_reencoded_samples_get_rows_columns_and_boxes(tmp_path):
    metrics = tmp_path / "metrics"
    ev = write_inputs(metrics, reencoded=True)
    out = tmp_path / "report"
    report(metrics, out)
    errors = pd.read_csv(out / "errors.csv")
    assert {"re-encoded samples", "best-of-k (re-encoded)"} <= set(errors["row"])
    row = errors[(errors["row"] == "re-encoded samples") & (errors["quantity"] == "position_mm")].iloc[0]
    assert row["median"] == pytest.approx(ev["overall"]["reencoded"]["position_mm"]["median"], rel=1e-5)
    arms = pd.read_csv(out / "arms.csv")
    for arm in ARMS:
        r = arms[arms["arm"] == arm].iloc[0]
        assert r["reenc_pos_median_mm"] == pytest.approx(ev["arms"][arm]["reencoded"]["position_mm"]["median"], rel=1e-5)
        assert r["reenc_bestk_pos_median_mm"] == pytest.approx(
            ev["arms"][arm]["reencoded"]["best_of_k_position_mm"]["median"], rel=1e-5)
    assert "re-encoded pos median (mm)" in (out / "arms.md").read_text()
    assert "re-encoded samples (2 passes)" in (out / "index.md").read_text()


def test_without_reencoded_samples_their_columns_are_empty(inputs, tmp_path):
    metrics, _ = inputs
    out = tmp_path / "report"
    report(metrics, out)
    arms = pd.read_csv(out / "arms.csv")
    assert arms["reenc_pos_median_mm"].isna().all()
    assert "re-encoded" not in (out / "arms.md").read_text() and "re-encoded" not in (out / "index.md").read_text()
