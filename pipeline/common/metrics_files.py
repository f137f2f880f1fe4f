"""Where the metric files are and how to read and check them: a missing key or a malformed file
is one :class:`DataError` naming it.

Under the metrics folder: ``eval.json`` (headline figures, the evaluate stage's DVC metrics file),
``eval_detail.json`` (every statistic), ``eval_samples.parquet`` and DVCLive's training record in
``train/`` (``metrics.json``, the train stage's DVC metrics file, and the per-epoch
``plots/metrics/<name>.tsv`` and ``plots/custom/accuracy_time.json`` tables).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pandas as pd

from ggik_core.errors import DataError

#: paths under the metrics folder
EVAL_HEADLINE = "eval.json"
EVAL_DETAIL = "eval_detail.json"
LIVE_DIR = "train"
TRAIN_SUMMARY = f"{LIVE_DIR}/metrics.json"
PROBES_PLOT = f"{LIVE_DIR}/plots/custom/accuracy_time.json"
#: the per-epoch loss-table columns and their DVCLive metric names (``train/plots/metrics/<name>.tsv``)
EPOCH_METRICS = {
    "train_rec": "train/rec", "train_kl": "train/kl", "train_total": "train/total",
    "val_rec": "val/rec", "val_kl": "val/kl", "val_total": "val/total",
    "lr": "lr", "beta": "beta", "minutes": "minutes",
}

STAT_KEYS = ("mean", "median", "min", "max", "q1", "q3")
LOSS_KEYS = ("rec", "kl", "total")
LOSS_CSV_COLUMNS = ("epoch", "train_rec", "train_kl", "train_total", "val_rec", "val_kl", "val_total")
SAMPLE_COLUMNS = ("arm", "kind", "pos_err_mm", "rot_err_deg")


def get(d: Any, path: str, source: str) -> Any:
    """``d[a][b]...`` for ``path = "a.b..."``; a missing key raises :class:`DataError` naming ``source``.

    Keys may themselves contain dots (``0.1mm_0.1deg``): the longest matching key wins.
    """
    parts = path.split(".")
    cur = d
    i = 0
    while i < len(parts):
        if not isinstance(cur, dict):
            raise DataError(f"{source}: malformed: {'.'.join(parts[:i])} is not an object")
        for j in range(len(parts), i, -1):
            key = ".".join(parts[i:j])
            if key in cur:
                cur = cur[key]
                i = j
                break
        else:
            raise DataError(f"{source}: malformed: missing key {path!r}")
    return cur


def num(d: Any, path: str, source: str) -> float:
    """A number (or null, read as NaN) at ``path``."""
    v = get(d, path, source)
    if v is None:
        return float("nan")
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise DataError(f"{source}: malformed: {path!r} is not a number")
    return float(v)


def parse_json(text: str | bytes, source: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{source} is not valid JSON: {exc}") from None


def read_json_file(path: Path) -> Any:
    if not path.is_file():
        raise DataError(f"missing file {path}")
    return parse_json(path.read_bytes(), str(path))


def check_eval(ev: Any, source: str, full: bool = True) -> dict:
    """Validate the structure of an ``eval.json`` (``full``: every error statistic of every arm);
    return its ``arms`` mapping."""
    if not isinstance(ev, dict):
        raise DataError(f"{source}: malformed: not a JSON object")
    arms = get(ev, "arms", source)
    if not isinstance(arms, dict) or not arms:
        raise DataError(f"{source}: malformed: 'arms' is empty or not an object")
    for arm, res in arms.items():
        if not isinstance(res, dict):
            raise DataError(f"{source}: malformed: arm {arm!r} is not an object")
        if not full:
            continue
        for kind in ("raw", "refined"):
            for q in ("position_mm", "rotation_deg"):
                for s in STAT_KEYS:
                    num(res, f"{kind}.{q}.{s}", f"{source} (arm {arm})")
    return arms


def parse_samples(data: bytes | Path, source: str) -> pd.DataFrame:
    try:
        df = pd.read_parquet(io.BytesIO(data) if isinstance(data, bytes) else data)
    except Exception as exc:  # noqa: BLE001 - any reader failure means a bad file
        raise DataError(f"cannot read {source}: {type(exc).__name__}: {exc}") from None
    missing = [c for c in SAMPLE_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{source}: malformed: missing columns {', '.join(missing)}")
    return df


def read_samples(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"missing file {path}")
    return parse_samples(path, str(path))


def _numeric(df: pd.DataFrame, columns: list[str], path: Path) -> pd.DataFrame:
    try:
        return df.astype({c: float for c in columns})
    except (TypeError, ValueError):
        raise DataError(f"{path}: malformed: non-numeric values") from None


def read_losses(metrics_dir: Path) -> pd.DataFrame:
    """The per-epoch table (``epoch`` and the columns of :data:`EPOCH_METRICS`) from DVCLive's
    files under ``metrics_dir/train``; the epoch is DVCLive's step + 1."""
    plots = Path(metrics_dir) / LIVE_DIR / "plots" / "metrics"
    table = None
    for column, name in EPOCH_METRICS.items():
        path = plots / f"{name}.tsv"
        leaf = name.rsplit("/", 1)[-1]
        if not path.is_file():
            if column in LOSS_CSV_COLUMNS:
                raise DataError(f"missing file {path}")
            continue
        try:
            df = pd.read_csv(path, sep="\t")
        except Exception as exc:  # noqa: BLE001
            raise DataError(f"cannot read {path}: {type(exc).__name__}: {' '.join(str(exc).split())}") from None
        if "step" not in df.columns or leaf not in df.columns:
            raise DataError(f"{path}: malformed: missing columns step or {leaf}")
        df = _numeric(df[["step", leaf]].drop_duplicates("step", keep="last"), ["step", leaf], path).rename(columns={leaf: column})
        table = df if table is None else table.merge(df, on="step", how="outer")
    if table is None or table.empty:
        raise DataError(f"{plots}: no epochs recorded")
    table = table.sort_values("step").reset_index(drop=True)
    table.insert(0, "epoch", table.pop("step").astype(int) + 1)
    return table


def loss_minima(losses: pd.DataFrame) -> dict:
    """``{"train": {"rec_min", "kl_min", "total_min"}, "val": {...}}``: each loss's lowest value over the epochs."""
    return {split: {f"{k}_min": float(losses[f"{split}_{k}"].min()) for k in LOSS_KEYS} for split in ("train", "val")}


#: columns every accuracy probe has (the per-arm columns follow them)
PROBE_COLUMNS = ("step", "minutes", "raw_median_mm", "best_of_k_mm")


def read_probes(metrics_dir: Path) -> pd.DataFrame | None:
    """The accuracy probes (DVCLive's custom plot ``train/plots/custom/accuracy_time.json``);
    None when the file is absent (no probe ran: ``train.probes`` = 0)."""
    path = Path(metrics_dir) / PROBES_PLOT
    if not path.is_file():
        return None
    rows = read_json_file(path)
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise DataError(f"{path}: malformed: not a list of rows")
    if not rows:
        return None
    df = pd.DataFrame(rows)
    missing = [c for c in PROBE_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{path}: malformed: missing columns {', '.join(missing)}")
    return _numeric(df, [c for c in df.columns if c != "step"], path)


def check_train(tr: Any, source: str) -> dict:
    """Validate DVCLive's training summary (``train/metrics.json``): the last epoch's losses."""
    if not isinstance(tr, dict):
        raise DataError(f"{source}: malformed: not a JSON object")
    for split in ("train", "val"):
        for k in LOSS_KEYS:
            num(tr, f"{split}.{k}", source)
    return tr
