"""Atomic writes and checked tensor shards.

Every output is written to a temporary file beside its destination and renamed into place, so
an interrupted run never leaves a half-written file under the final name. Shards carry a SHA-256
checksum in their manifest; loading verifies it and the tensors' shapes.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from ggik_core.errors import DataError


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o644)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode())


def _finite(obj: Any) -> Any:
    """NaN and infinities become null (strict JSON)."""
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_csv_rows(path: str | Path, rows: Iterable[dict], columns: Sequence[str], missing: Any = "") -> None:
    """A CSV table with a header, atomically: one line per row dict (keys outside ``columns``
    ignored, absent ones written as ``missing``), floats to six significant digits."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for row in rows:
        w.writerow([f"{v:.6g}" if isinstance(v, float) else v for v in (row.get(k, missing) for k in columns)])
    write_text(path, buf.getvalue())


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(_finite(obj), indent=2, sort_keys=False, allow_nan=False) + "\n")


def torch_save(path: str | Path, obj: Any) -> str:
    """Save ``obj`` atomically with :func:`torch.save`; return the file's SHA-256."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    data = buf.getvalue()
    write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_checked(path: str | Path, sha256: str | None = None) -> Any:
    """Load a torch file, verifying its checksum when given; corrupt files raise :class:`DataError`."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"missing file {path}")
    data = path.read_bytes()
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise DataError(f"shard {path} is corrupt or truncated: checksum does not match the manifest (rebuild with `dvc repro build_graphs`)")
    try:
        import torch

        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise DataError(f"cannot read {path}: {type(exc).__name__}: {exc}") from None


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.exists():
        raise DataError(f"missing file {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON: {exc}") from None


def csv_text(cols: dict[str, Any]) -> str:
    """Comma-separated text with a header, formatted as pandas writes it: floats in their shortest
    round-trip form (NaN as an empty cell), booleans as True/False."""

    def cells(a: Any) -> list[str]:
        if a.dtype.kind == "f":
            return ["" if v != v else repr(v) for v in a.tolist()]
        return [str(v) for v in a.tolist()]

    rows = zip(*(cells(np.asarray(a)) for a in cols.values()))
    return ",".join(cols) + "\n" + "".join(",".join(r) + "\n" for r in rows)
