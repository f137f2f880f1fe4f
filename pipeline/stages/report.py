"""Stage `report`: tables and figures from the train and evaluate metrics.

Reads the training record DVCLive keeps in ``metrics/train/`` (summary and per-epoch tables),
``metrics/eval_detail.json`` and ``metrics/eval_samples.parquet`` and writes, atomically, into the output folder:

* ``losses.md`` / ``losses.csv``: minimum train and validation losses (GGIK+ Table II layout);
* ``errors.md`` / ``errors.csv``: position and rotation error statistics over all arms
  (GGIK+ Table III layout) with the published GGIK figure for context;
* ``arms.md`` / ``arms.csv``: per-arm accuracy, success rates, diversity and timing;
* ``box_position.png`` / ``box_rotation.png``: per-sample errors per arm, raw, re-encoded (when
  evaluated) and refined;
* ``loss_curves.png``: train and validation losses per epoch;
* ``loss_vs_time.png``: reconstruction loss against wall-clock training minutes;
* ``accuracy_vs_time.png``: raw-sample position error (mm) against training minutes, from the
  training stage's accuracy probes (``metrics/train/plots/custom/accuracy_time.json``, when any ran);
* ``arm_<arm>.png``: each arm drawn in the distinct refined solutions of its first goal
  (from ``metrics/eval_solutions.parquet``);
* ``index.md``: links to all of the above.

Markdown numbers are rounded to three significant figures; the CSV files keep six.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from ggik_core.data.io import write_text
from pipeline.common.figures import LOG_FLOOR, grouped_boxes, new_figure, save_png
from pipeline.common.metrics_files import (
    EVAL_DETAIL, LOSS_KEYS, STAT_KEYS, TRAIN_SUMMARY, check_eval, check_train, get, loss_minima, num, read_json_file, read_losses,
    read_probes, read_samples,
)
from pipeline.common.tables import csv_num, csv_text, fmt, fmt_pct, md_table

#: success thresholds in eval_detail.json and their labels
SUCCESS_KEYS = (("10mm", "10 mm"), ("5mm_2deg", "5 mm & 2°"), ("1mm_1deg", "1 mm & 1°"), ("0.1mm_0.1deg", "0.1 mm & 0.1°"))
STAT_LABELS = ("mean", "median", "min", "max", "Q1", "Q3")

#: the GGIK paper's architecture table (EGNN, their random-robot test set): not our result
PUBLISHED_GGIK = {
    "position_mm": {"mean": 4.6, "q1": 3.3, "q3": 5.8},
    "rotation_deg": {"mean": 0.4},
}
PUBLISHED_LABEL = "GGIK paper (published, architecture table; not ours)"

RAW_COLOR, REFINED_COLOR, REENCODED_COLOR = "#4C72B0", "#DD8452", "#55A868"

#: the sample kinds of eval_detail.json in drawing order ("reencoded" only when eval.passes > 0)
KINDS = ("raw", "reencoded", "refined")
KIND_COLORS = {"raw": RAW_COLOR, "reencoded": REENCODED_COLOR, "refined": REFINED_COLOR}


def _kinds(present: Any) -> tuple[str, ...]:
    """The kinds of :data:`KINDS` found in ``present`` (a mapping or a sequence of names)."""
    return tuple(k for k in KINDS if k in present)


def _box_figure(samples: pd.DataFrame, arms: list[str], column: str, title: str, ylabel: str, path: Path) -> Path:
    fig, ax = new_figure(max(6.0, 1.3 * len(arms) + 2), 4.5)
    groups = {key: g[column].to_numpy() for key, g in samples.groupby(["arm", "kind"], sort=False)}
    kinds = _kinds(set(samples["kind"]))
    clipped = grouped_boxes(ax, arms, kinds, lambda a, k: groups.get((a, k), np.empty(0)), [KIND_COLORS[k] for k in kinds])
    ax.set_title(title)
    ax.set_xlabel("arm")
    ax.set_ylabel(ylabel + (f" (zeros drawn at {LOG_FLOOR:g})" if clipped else ""))
    return save_png(fig, path)


def _loss_figure(losses: pd.DataFrame, layer: str, path: Path) -> Path:
    fig, axes = new_figure(13, 3.8, ncols=3)
    marker = "o" if len(losses) <= 30 else None
    for ax, key, name in zip(axes, LOSS_KEYS, ("reconstruction", "KL", "total")):
        ax.plot(losses["epoch"], losses[f"train_{key}"], marker=marker, markersize=3, label="train")
        ax.plot(losses["epoch"], losses[f"val_{key}"], marker=marker, markersize=3, label="validation")
        ax.set_title(f"{name} loss")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Training losses ({layer})")
    return save_png(fig, path)


def _arm_pictures(solutions: pd.DataFrame, out_dir: Path) -> list[Path]:
    """One picture per arm: the arm in each distinct refined solution of its first goal."""
    from ggik_core.robots.catalog import load_arm
    from pipeline.common.arm_figure import plot_frame

    # arms of fewer joints have empty q_n columns in the pooled table
    return [plot_frame(load_arm(arm), rows.drop(columns="arm").dropna(axis=1, how="all"), 0, out_dir / f"arm_{arm}.png")
            for arm, rows in solutions.groupby("arm", sort=False)]


def _time_figure(losses: pd.DataFrame, layer: str, path: Path) -> Path:
    """Validation reconstruction against wall-clock training minutes (the accuracy-versus-time curve)."""
    fig, ax = new_figure(6.5, 4.0)
    ax.plot(losses["minutes"], losses["val_rec"], marker="o", markersize=3, label="validation reconstruction")
    ax.plot(losses["minutes"], losses["train_rec"], marker=".", markersize=3, alpha=0.6, label="train reconstruction")
    ax.set_xlabel("training time (minutes, wall clock)")
    ax.set_ylabel("reconstruction loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title(f"Loss against training time ({layer})")
    return save_png(fig, path)


def _accuracy_figure(probes: pd.DataFrame, layer: str, path: Path) -> Path:
    """Raw-sample position error against training minutes: the median over all probed arms' samples,
    the median best of K, and each arm's raw median (the accuracy-versus-time curve, in mm)."""
    fig, ax = new_figure(6.5, 4.0)
    t = probes["minutes"]
    ax.plot(t, probes["raw_median_mm"], marker="o", markersize=3, color=RAW_COLOR, linewidth=2, label="raw median, all arms")
    ax.plot(t, probes["best_of_k_mm"], marker="s", markersize=3, color=REFINED_COLOR, linewidth=2, label="best of 32, median")
    for col in [c for c in probes.columns if c.endswith("_raw_mm")]:
        ax.plot(t, probes[col], linewidth=0.8, alpha=0.6, label=f"{col[:-len('_raw_mm')]} raw median")
    ax.set_xlabel("training time (minutes, wall clock, probes excluded)")
    ax.set_ylabel("position error (mm, log scale)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(f"Raw-sample accuracy against training time ({layer})")
    return save_png(fig, path)


# --------------------------------------------------------------------------- tables


def _losses(tr: dict, losses: pd.DataFrame, out_dir: Path, src: str) -> list[Path]:
    layer = str(tr.get("layer", "unknown"))
    minima = loss_minima(losses)
    rows = [(name, *(num(minima, f"{split}.{k}_min", src) for k in LOSS_KEYS))
            for split, name in (("train", "train"), ("val", "validation"))]
    md = [f"# Minimum losses: {layer}\n",
          f"Lowest value over {tr.get('epochs_done', '?')} epochs{'' if tr.get('complete', True) else ' (training incomplete)'}"
          f", device {tr.get('device', '?')}; each column is minimised separately (GGIK+ Table II layout).\n",
          md_table(("split", "reconstruction", "KL", "total"), [(r[0], *map(fmt, r[1:])) for r in rows])]
    csv = csv_text(("layer", "split", "rec", "kl", "total"), [(layer, r[0], *map(csv_num, r[1:])) for r in rows])
    write_text(out_dir / "losses.md", "\n".join(md))
    write_text(out_dir / "losses.csv", csv)
    return [out_dir / "losses.md", out_dir / "losses.csv"]


def _errors(ev: dict, out_dir: Path, src: str) -> list[Path]:
    ov = get(ev, "overall", src)
    row_defs = [
        ("raw samples", "raw", "{q}"),
        ("best-of-k (raw)", "raw", "best_of_k_{q}"),
        ("refined samples", "refined", "{q}"),
        ("GGIK table protocol (raw)", "raw", "table_protocol.{q}"),
    ]
    if "reencoded" in ov:
        row_defs[2:2] = [("re-encoded samples", "reencoded", "{q}"), ("best-of-k (re-encoded)", "reencoded", "best_of_k_{q}")]
    md = ["# Error statistics over all arms\n"]
    params = ev.get("params", {}) if isinstance(ev.get("params"), dict) else {}
    md.append(f"{params.get('problems_per_arm', '?')} goals per arm, {params.get('samples', '?')} samples per goal, "
              f"{len(get(ev, 'arms', src))} arms ({', '.join(get(ev, 'arms', src))}). GGIK+ Table III layout.\n")
    csv_rows = []
    for q, title, unit in (("position_mm", "Position error", "mm"), ("rotation_deg", "Rotation error", "deg")):
        rows = []
        for label, kind, key in row_defs:
            vals = [num(ov, f"{kind}.{key.format(q=q)}.{s}", f"{src} (overall)") for s in STAT_KEYS]
            rows.append((label, *map(fmt, vals)))
            csv_rows.append((q, label, "ours", *map(csv_num, vals)))
        pub = PUBLISHED_GGIK[q]
        rows.append((f"*{PUBLISHED_LABEL}*", *(fmt(pub[s]) if s in pub else "–" for s in STAT_KEYS)))
        csv_rows.append((q, "GGIK paper", "published", *(csv_num(pub.get(s)) for s in STAT_KEYS)))
        md.append(f"## {title} ({unit})\n")
        md.append(md_table(("", *STAT_LABELS), rows))
    passes = params.get("passes", 0)
    relaxed = f", the passes after the first over-relaxed by {params['relax']:g}" if params.get("relax", 1.0) != 1.0 else ""
    md.append("Rows: *raw samples*: every network sample, pooled over arms. *best-of-k*: per goal the sample with "
              "the smallest mm + deg error, statistics averaged over arms. "
              + (f"*re-encoded samples*: the same samples re-encoded {passes} times (joints recovered, that "
                 f"configuration encoded, its posterior mean decoded{relaxed}). " if "reencoded" in ov else "")
              + "*refined samples*: every raw sample after LM refinement. *GGIK table protocol*: samples above the 99th percentile dropped, per-goal statistics "
              "averaged over goals, then over arms.\n")
    md.append("The last row of each table is the figure **published** in the GGIK paper (4.6 mm mean, Q1 3.3, "
              "Q3 5.8 mm; 0.4° mean) on the paper's own test set, shown for context only: it is not a result of "
              "this pipeline.\n")
    write_text(out_dir / "errors.md", "\n".join(md))
    write_text(out_dir / "errors.csv", csv_text(("quantity", "row", "source", *STAT_KEYS), csv_rows))
    return [out_dir / "errors.md", out_dir / "errors.csv"]


ARM_CSV_COLUMNS = (
    "arm", "dof",
    "raw_pos_mean_mm", "raw_pos_median_mm", "raw_rot_mean_deg", "raw_rot_median_deg",
    "bestk_pos_median_mm", "bestk_rot_median_deg",
    "reenc_pos_median_mm", "reenc_rot_median_deg", "reenc_bestk_pos_median_mm",
    *(f"raw_success_{k}" for k, _ in SUCCESS_KEYS), *(f"refined_success_{k}" for k, _ in SUCCESS_KEYS),
    "raw_within_limits", "refined_within_limits",
    "refined_distinct_1mm_1deg_per_goal", "raw_diversity_rad", "refined_diversity_rad",
    "raw_seconds", "refined_seconds",
)


def _arm_values(name: str, res: dict, source: str) -> dict[str, Any]:
    v: dict[str, Any] = {"arm": name, "dof": res.get("dof", "")}
    for col, path in (
        ("raw_pos_mean_mm", "raw.position_mm.mean"), ("raw_pos_median_mm", "raw.position_mm.median"),
        ("raw_rot_mean_deg", "raw.rotation_deg.mean"), ("raw_rot_median_deg", "raw.rotation_deg.median"),
        ("bestk_pos_median_mm", "raw.best_of_k_position_mm.median"),
        ("bestk_rot_median_deg", "raw.best_of_k_rotation_deg.median"),
        ("raw_within_limits", "raw.within_limits"), ("refined_within_limits", "refined.within_limits"),
        ("refined_distinct_1mm_1deg_per_goal", "refined.distinct_1mm_1deg_per_goal"),
        ("raw_diversity_rad", "raw.diversity_rad"), ("refined_diversity_rad", "refined.diversity_rad"),
        ("raw_seconds", "raw.seconds"), ("refined_seconds", "refined.seconds"),
    ):
        v[col] = num(res, path, source)
    for col, path in (("reenc_pos_median_mm", "reencoded.position_mm.median"), ("reenc_rot_median_deg", "reencoded.rotation_deg.median"),
                      ("reenc_bestk_pos_median_mm", "reencoded.best_of_k_position_mm.median")):
        v[col] = num(res, path, source) if "reencoded" in res else float("nan")  # absent when eval.passes = 0
    for kind in ("raw", "refined"):
        for k, _ in SUCCESS_KEYS:
            v[f"{kind}_success_{k}"] = num(res, f"{kind}.success.{k}", source)
    return v


def _arms(ev: dict, out_dir: Path, src: str) -> list[Path]:
    rows = [_arm_values(arm, res, f"{src} (arm {arm})") for arm, res in get(ev, "arms", src).items()]
    rows.append(_arm_values("overall", get(ev, "overall", src), f"{src} (overall)") | {"dof": ""})
    cols = [("raw pos mean (mm)", "raw_pos_mean_mm"), ("raw pos median (mm)", "raw_pos_median_mm"),
            ("raw rot mean (°)", "raw_rot_mean_deg"), ("raw rot median (°)", "raw_rot_median_deg"),
            ("best-of-k pos median (mm)", "bestk_pos_median_mm"), ("best-of-k rot median (°)", "bestk_rot_median_deg")]
    if "reencoded" in get(ev, "overall", src):
        cols += [("re-encoded pos median (mm)", "reenc_pos_median_mm"), ("re-encoded rot median (°)", "reenc_rot_median_deg"),
                 ("re-encoded best-of-k pos median (mm)", "reenc_bestk_pos_median_mm")]
    cols += [("seconds raw", "raw_seconds"), ("seconds refined", "refined_seconds")]
    acc = md_table(("arm", "DOF", *(lab for lab, _ in cols)),
                   [(r["arm"], str(r["dof"]), *(fmt(r[c]) for _, c in cols)) for r in rows])
    succ = md_table(
        ("arm", *(f"raw {lab}" for _, lab in SUCCESS_KEYS), *(f"refined {lab}" for _, lab in SUCCESS_KEYS),
         "within limits raw", "within limits refined", "distinct refined / goal", "diversity raw (rad)",
         "diversity refined (rad)"),
        [(r["arm"], *(fmt_pct(r[f"{kind}_success_{k}"]) for kind in ("raw", "refined") for k, _ in SUCCESS_KEYS),
          fmt_pct(r["raw_within_limits"]), fmt_pct(r["refined_within_limits"]),
          fmt(r["refined_distinct_1mm_1deg_per_goal"]), fmt(r["raw_diversity_rad"]), fmt(r["refined_diversity_rad"]))
         for r in rows])
    md = ["# Results per arm\n", "## Accuracy and time\n", acc,
          "## Success, joint limits and diversity\n", succ,
          "Success: share of all samples below the thresholds. *distinct refined / goal*: distinct refined "
          "solutions within 1 mm & 1° and the joint limits, per goal. Diversity: mean pairwise joint-space "
          "distance among valid samples (10 mm & 5°, inside limits). The *overall* row pools samples for errors "
          "and success rates and averages the per-arm figures for best-of-k, diversity and distinct solutions; "
          "its seconds are the sum over arms.\n"]
    write_text(out_dir / "arms.md", "\n".join(md))
    write_text(out_dir / "arms.csv", csv_text(ARM_CSV_COLUMNS, [
        [str(r[c]) if c in ("arm", "dof") else csv_num(r[c]) for c in ARM_CSV_COLUMNS] for r in rows]))
    return [out_dir / "arms.md", out_dir / "arms.csv"]


def _index(tr: dict, ev: dict, out_dir: Path, probed: bool) -> Path:
    ov = ev["overall"]
    params = ev.get("params", {}) if isinstance(ev.get("params"), dict) else {}
    lines = [
        f"# GGIK report: {tr.get('layer', 'unknown')}\n",
        f"- model layer: {tr.get('layer', '?')}, {tr.get('epochs_done', '?')} epochs"
        f"{'' if tr.get('complete', True) else ' (incomplete)'}, trained on {tr.get('device', '?')}",
        f"- evaluation: {params.get('problems_per_arm', '?')} goals per arm × {params.get('samples', '?')} samples, "
        f"arms {', '.join(ev['arms'])}",
        f"- raw samples, all arms: median position error {fmt(ov['raw']['position_mm']['median'])} mm, "
        f"median rotation error {fmt(ov['raw']['rotation_deg']['median'])}°",
        *([f"- re-encoded samples ({params.get('passes', '?')} passes), all arms: median position error "
           f"{fmt(ov['reencoded']['position_mm']['median'])} mm, median rotation error {fmt(ov['reencoded']['rotation_deg']['median'])}°"]
          if "reencoded" in ov else []),
        f"- refined samples within 1 mm & 1°: {fmt_pct(ov['refined']['success']['1mm_1deg'])}\n",
        "## Tables\n",
        "- [Minimum losses](losses.md) ([CSV](losses.csv))",
        "- [Error statistics over all arms](errors.md) ([CSV](errors.csv))",
        "- [Results per arm](arms.md) ([CSV](arms.csv))\n",
        "## Figures\n",
        "- [Position error per arm](box_position.png)",
        "- [Rotation error per arm](box_rotation.png)",
        "- [Loss curves](loss_curves.png), [against training time](loss_vs_time.png)\n",
        "![Position error per arm](box_position.png)\n",
        "![Rotation error per arm](box_rotation.png)\n",
        "![Loss curves](loss_curves.png)\n",
        "![Loss against training time](loss_vs_time.png)\n",
    ]
    if probed:
        lines[-5:-5] = ["- [Raw-sample accuracy against training time](accuracy_vs_time.png)"]
        lines.append("![Raw-sample accuracy against training time](accuracy_vs_time.png)\n")
    write_text(out_dir / "index.md", "\n".join(lines))
    return out_dir / "index.md"


def report(metrics_dir: Path, out_dir: Path) -> list[Path]:
    """Write the report tables and figures for ``metrics_dir`` into ``out_dir``; return the files written."""
    metrics_dir, out_dir = Path(metrics_dir), Path(out_dir)
    tr = check_train(read_json_file(metrics_dir / TRAIN_SUMMARY), str(metrics_dir / TRAIN_SUMMARY))
    losses = read_losses(metrics_dir)
    ev_path = metrics_dir / EVAL_DETAIL
    ev = read_json_file(ev_path)
    arms = list(check_eval(ev, str(ev_path)))
    for kind in ("raw", "refined"):
        for q in ("position_mm", "rotation_deg"):
            for s in STAT_KEYS:
                num(ev, f"overall.{kind}.{q}.{s}", str(ev_path))
    samples = read_samples(metrics_dir / "eval_samples.parquet")
    arms += [a for a in samples["arm"].drop_duplicates() if a not in arms]
    written = (_losses(tr, losses, out_dir, str(metrics_dir / TRAIN_SUMMARY)) + _errors(ev, out_dir, str(ev_path))
               + _arms(ev, out_dir, str(ev_path)))
    layer = str(tr.get("layer", "unknown"))
    written.append(_box_figure(samples, arms, "pos_err_mm", f"Position error per sample ({layer})",
                               "position error (mm, log scale)", out_dir / "box_position.png"))
    written.append(_box_figure(samples, arms, "rot_err_deg", f"Rotation error per sample ({layer})",
                               "rotation error (deg, log scale)", out_dir / "box_rotation.png"))
    written.append(_loss_figure(losses, layer, out_dir / "loss_curves.png"))
    if "minutes" in losses.columns:
        written.append(_time_figure(losses, layer, out_dir / "loss_vs_time.png"))
    probes = read_probes(metrics_dir)
    if probes is not None:
        written.append(_accuracy_figure(probes, layer, out_dir / "accuracy_vs_time.png"))
    solutions = metrics_dir / "eval_solutions.parquet"
    if solutions.is_file():  # evaluate writes it; older metrics folders lack it
        written += _arm_pictures(pd.read_parquet(solutions), out_dir)
    written.append(_index(tr, ev, out_dir, probes is not None))
    return written
