"""``ggik bench curve``: where a long run stands against GGIK and against the extrapolation.

A run folder (``docs/runs/<name>/``) holds the training probes (``accuracy_time.csv``: raw medians
per arm against training minutes) and one evaluation per chunk (``evals/chunk-<k>.json``, written by
``ggik evaluate`` and stamped with the run's training hours and steps). This draws, per arm, the raw
and re-encoded medians against training hours on log-log axes, beside the power-law extrapolation
of ``docs/ablation.md`` (``err ∝ steps^-a`` through the shipped ``all_arms`` model, at the run's
own steps per hour) and 2× GGIK's median, and tabulates every chunk against the targets.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ggik_core.data.io import atomic_path
from ggik_core.errors import DataError
from ggik_core.robots.catalog import ARM_NAMES
from pipeline.common.figures import SERIES_COLORS, new_figure, save_png

#: GGIK's all-arms model per arm: raw median over 80 problems × 32 samples (mm); the targets are
#: re-encoded ≤ 2× and one-pass ≤ 3× these, and the best of 32 within GGIK's 1.8–4.8 mm (its
#: published range over the five arms; compared with the range's top)
GGIK_MM = {"ur10": 12.8, "kuka": 6.6, "lwa4d": 5.8, "lwa4p": 6.6, "panda": 35.2}
GGIK_BEST_MM = (1.8, 4.8)
#: the shipped all_arms model (118,750 steps of 8 graphs): raw median per arm (mm) and the
#: extrapolation's exponent per step (docs/ablation.md, "How much training would reach GGIK?")
ANCHOR_STEPS = 118_750
EXTRAPOLATION = {"ur10": (89.7, 0.46), "kuka": (60.3, 0.52), "lwa4d": (46.2, 0.49), "lwa4p": (50.8, 0.48), "panda": (163.8, 0.36)}


def chunk_rows(run: Path) -> pd.DataFrame:
    """One row per chunk evaluation: hours, steps and per arm the raw, re-encoded and best-of-32 medians."""
    rows = []
    for path in sorted((run / "evals").glob("chunk-*.json"), key=lambda p: int(p.stem.split("-")[1])):
        try:
            ev = json.loads(path.read_text())
            row = {"chunk": int(path.stem.split("-")[1]), "hours": float(ev["hours"]), "steps": int(ev["steps"])}
            for arm in ARM_NAMES:
                a = ev["arms"][arm]
                row[f"{arm}_raw"] = a["raw"]["position_mm"]["median"]
                row[f"{arm}_reencoded"] = a["reencoded"]["position_mm"]["median"]
                row[f"{arm}_best"] = a["raw"]["best_of_k_position_mm"]["median"]
        except (KeyError, ValueError, TypeError) as exc:
            raise DataError(f"{path}: not a stamped chunk evaluation ({type(exc).__name__}: {exc})") from None
        rows.append(row)
    return pd.DataFrame(rows)


def extrapolated_mm(arm: str, steps: np.ndarray) -> np.ndarray:
    """The extrapolation's raw median (mm) of ``arm`` after ``steps`` optimiser steps."""
    err, a = EXTRAPOLATION[arm]
    return err * (np.asarray(steps, dtype=np.float64) / ANCHOR_STEPS) ** -a


def table(chunks: pd.DataFrame) -> str:
    """Markdown: per chunk and arm, re-encoded / one-pass / best-of-32 medians against the targets."""
    head = "| chunk | hours | steps | " + " | ".join(ARM_NAMES) + " |"
    lines = [head, "| " + " | ".join(["---:"] * (3 + len(ARM_NAMES))) + " |"]
    lines.append("| target | | | " + " | ".join(f"≤ {2 * GGIK_MM[a]:.1f} / {3 * GGIK_MM[a]:.1f} / {GGIK_BEST_MM[1]:.1f}"
                                                  for a in ARM_NAMES) + " |")
    for _, r in chunks.iterrows():
        cells = [f"{r[f'{a}_reencoded']:.1f} / {r[f'{a}_raw']:.1f} / {r[f'{a}_best']:.1f}" for a in ARM_NAMES]
        lines.append(f"| {int(r['chunk'])} | {r['hours']:.2f} | {int(r['steps']):,} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def draw(run: Path, out: Path, chunks: pd.DataFrame) -> Path:
    """The log-log figure of the run's probes and the chunk evaluations ``chunks`` (:func:`chunk_rows`)
    per arm (see the module docstring)."""
    probes_path = run / "accuracy_time.csv"
    if not probes_path.is_file():
        raise DataError(f"{probes_path} is missing: copy the run's probes (metrics/train/plots/custom/accuracy_time.json) there as CSV")
    probes = pd.read_csv(probes_path)
    hours = probes["minutes"].to_numpy() / 60
    steps_per_hour = float(np.median(probes["step"].to_numpy() / np.maximum(hours, 1e-9)))
    fig, axes = new_figure(4.0 * len(ARM_NAMES), 3.6, ncols=len(ARM_NAMES))
    for ax, arm in zip(axes, ARM_NAMES):
        ax.plot(hours, probes[f"{arm}_raw_mm"], color=SERIES_COLORS[0], lw=1, label="raw (probes, 16 goals)")
        if len(chunks):
            ax.plot(chunks["hours"], chunks[f"{arm}_raw"], "o", color=SERIES_COLORS[0], label="raw (evaluation, 100 goals)")
            ax.plot(chunks["hours"], chunks[f"{arm}_reencoded"], "s", color=SERIES_COLORS[1], label="re-encoded (evaluation)")
        span = np.geomspace(max(hours.min(), 1e-2), max(hours.max(), 16.0), 50)
        ax.plot(span, extrapolated_mm(arm, span * steps_per_hour), "--", color="gray", lw=1, label="extrapolation (raw)")
        ax.axhline(2 * GGIK_MM[arm], color=SERIES_COLORS[3], lw=0.8, ls=":", label="2× GGIK")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(arm)
        ax.set_xlabel("training hours (one thread)")
    axes[0].set_ylabel("median position error (mm)")
    axes[0].legend(fontsize=7)
    return save_png(fig, out)


def training_clock(ckpt: dict) -> tuple[float, int]:
    """(training hours, optimiser steps) of a checkpoint, mid-epoch ones included (steps: the
    per-batch schedule's count)."""
    part = ckpt.get("partial")
    minutes = part["minutes"] if part else (ckpt["history"][-1]["minutes"] if ckpt["history"] else 0.0)
    return minutes / 60, int(ckpt["scheduler"]["last_epoch"])


def record_chunk(run: Path, model_dir: Path, eval_dir: Path) -> int:
    """Copy a finished chunk into the run folder: its checkpoint and model, the probes and losses so
    far, and its evaluation stamped with the training hours and steps; returns the chunk number."""
    import shutil

    import torch

    ckpt = torch.load(model_dir / "checkpoint.pt", map_location="cpu", weights_only=False)
    hours, steps = training_clock(ckpt)
    detail = json.loads((eval_dir / "eval_detail.json").read_text())
    done = chunk_rows(run)
    chunk = int(done["chunk"].max()) + 1 if len(done) else 1
    evals = run / "evals"
    evals.mkdir(parents=True, exist_ok=True)
    with atomic_path(evals / f"chunk-{chunk}.json") as tmp:
        tmp.write_text(json.dumps({"hours": hours, "steps": steps, **detail}, indent=1))
    for name in ("checkpoint.pt", "model.pt"):
        with atomic_path(run / name) as tmp:
            shutil.copyfile(model_dir / name, tmp)
    for name, rows in (("accuracy_time.csv", ckpt["probes"]), ("train_loss.csv", ckpt["history"])):
        with atomic_path(run / name) as tmp:
            pd.DataFrame(rows).to_csv(tmp, index=False)
    return chunk


def report(run: Path, out: Path | None = None) -> str:
    """Draw the figure (``out``, default ``<run>/curve.png``), write ``<run>/chunks.md`` and return the table."""
    chunks = chunk_rows(run)
    draw(run, out or run / "curve.png", chunks)
    text = table(chunks)
    with atomic_path(run / "chunks.md") as tmp:
        tmp.write_text(text)
    return text
