"""``ggik bench curve``: recording a chunk, the extrapolation and the targets table."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from ggik_core.errors import DataError
from ggik_core.robots.catalog import ARM_NAMES
from pipeline.bench.curve import ANCHOR_STEPS, EXTRAPOLATION, GGIK_MM, chunk_rows, extrapolated_mm, record_chunk, report


def _eval_detail(scale: float) -> dict:
    arm = lambda raw, re, best: {"raw": {"position_mm": {"median": raw}, "best_of_k_position_mm": {"median": best}},  # noqa: E731
                                 "reencoded": {"position_mm": {"median": re}}}
    return {"arms": {a: arm(100 * scale, 50 * scale, 10 * scale) for a in ARM_NAMES}, "overall": {}}


def _chunk(root, minutes: float, steps: int, partial: bool):
    """A training folder and an evaluation folder as a chunk leaves them."""
    model_dir, eval_dir = root / "model", root / "eval"
    model_dir.mkdir(parents=True, exist_ok=True)
    eval_dir.mkdir(parents=True, exist_ok=True)
    probes = [{"step": s, "minutes": minutes * s / steps, **{f"{a}_raw_mm": 300.0 * (steps / s) ** 0.3 for a in ARM_NAMES}}
              for s in (steps // 4, steps // 2, steps)]
    ckpt = {"scheduler": {"last_epoch": steps}, "history": [{"epoch": 1, "minutes": minutes / 2}], "probes": probes,
            "partial": {"steps": 7, "rec": 1.0, "kl": 1.0, "graphs": 8.0, "minutes": minutes} if partial else None}
    torch.save(ckpt, model_dir / "checkpoint.pt")
    torch.save({"model": {}}, model_dir / "model.pt")
    (eval_dir / "eval_detail.json").write_text(json.dumps(_eval_detail(steps / 1000)))
    return model_dir, eval_dir


def test_the_extrapolation_passes_through_the_shipped_model_and_falls_with_its_exponent():
    for arm, (err, a) in EXTRAPOLATION.items():
        assert extrapolated_mm(arm, np.array([ANCHOR_STEPS]))[0] == pytest.approx(err)
        assert extrapolated_mm(arm, np.array([2 * ANCHOR_STEPS]))[0] == pytest.approx(err * 2 ** -a)


def test_chunks_are_recorded_with_their_hours_and_steps_and_tabulated_against_the_targets(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    assert record_chunk(run, *_chunk(tmp_path / "c1", 90.0, 1000, partial=True)) == 1
    assert record_chunk(run, *_chunk(tmp_path / "c2", 180.0, 2000, partial=False)) == 2
    rows = chunk_rows(run)
    assert rows["hours"].tolist() == [1.5, 1.5]  # mid-epoch: the partial's minutes; else the last epoch's
    assert rows["steps"].tolist() == [1000, 2000]
    assert rows["kuka_reencoded"].tolist() == [50.0, 100.0]
    assert pd.read_csv(run / "accuracy_time.csv")["step"].tolist() == [500, 1000, 2000]
    text = report(run)
    assert (run / "curve.png").stat().st_size > 10_000
    lines = text.splitlines()
    assert f"≤ {2 * GGIK_MM['kuka']:.1f} / {3 * GGIK_MM['kuka']:.1f} / 4.8" in lines[2]
    assert lines[3].startswith("| 1 | 1.50 | 1,000 | 50.0 / 100.0 / 10.0")
    assert (run / "chunks.md").read_text() == text


def test_an_unstamped_evaluation_is_refused(tmp_path):
    (tmp_path / "evals").mkdir()
    (tmp_path / "evals" / "chunk-1.json").write_text(json.dumps(_eval_detail(1.0)))
    with pytest.raises(DataError, match="not a stamped chunk evaluation"):
        chunk_rows(tmp_path)
