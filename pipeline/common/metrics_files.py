"""Reading and checking the metric files (``train.json``, ``train_loss.csv``, ``eval.json``,
``eval_samples.parquet``): a missing key or a malformed file is one :class:`DataError` naming it."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pandas as pd

from ggik_core.errors import DataError

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


def _read_table(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    """A CSV file that must have ``columns``; one-line errors for unreadable or malformed files."""
    if not path.is_file():
        raise DataError(f"missing file {path}")
    try:
        df = pd.read_csv(path)
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"cannot read {path}: {type(exc).__name__}: {' '.join(str(exc).split())}") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"{path}: malformed: missing columns {', '.join(missing)}")
    return df


def _numeric(df: pd.DataFrame, columns: list[str], path: Path) -> pd.DataFrame:
    try:
        return df.astype({c: float for c in columns})
    except (TypeError, ValueError):
        raise DataError(f"{path}: malformed: non-numeric values") from None


def read_losses(path: Path) -> pd.DataFrame:
    df = _read_table(path, LOSS_CSV_COLUMNS)
    if df.empty:
        raise DataError(f"{path}: no epochs recorded")
    return _numeric(df, list(LOSS_CSV_COLUMNS), path)


#: columns every accuracy_time.csv has (the per-arm columns follow them)
PROBE_COLUMNS = ("step", "minutes", "raw_median_mm", "best_of_k_mm")


def read_probes(path: Path) -> pd.DataFrame | None:
    """The accuracy probes of ``accuracy_time.csv``; None when the file is absent (older metrics
    folders) or has no rows (``train.probes`` = 0)."""
    if not path.is_file():
        return None
    df = _read_table(path, PROBE_COLUMNS)
    return None if df.empty else _numeric(df, [c for c in df.columns if c != "step"], path)


def check_train(tr: Any, source: str) -> dict:
    if not isinstance(tr, dict):
        raise DataError(f"{source}: malformed: not a JSON object")
    for split in ("train", "val"):
        for k in LOSS_KEYS:
            num(tr, f"{split}.{k}_min", source)
    return tr
