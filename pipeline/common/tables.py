"""Number formatting and Markdown/CSV tables shared by `report`, `compare` and the benches."""

from __future__ import annotations

import io
import math
from typing import Any, Sequence

import pandas as pd


def _finite(x: Any) -> float | None:
    if x is None or isinstance(x, bool):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def fmt(x: Any) -> str:
    """Three significant figures, plain notation from 0.01 to 999, scientific below, integers above."""
    v = _finite(x)
    if v is None:
        return "n/a"
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 999.5:
        return f"{v:.0f}"
    if a >= 0.01:
        return f"{v:.3g}"
    return f"{v:.2e}"


def fmt_pct(x: Any) -> str:
    v = _finite(x)
    return "n/a" if v is None else f"{100.0 * v:.1f}%"


def csv_num(x: Any) -> str:
    v = _finite(x)
    return "" if v is None else f"{v:.6g}"


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str | None = None) -> str:
    """A plain pipe table; ``align``: one letter per column (l or r), default: first left, rest right."""
    align = align or ("l" + "r" * (len(header) - 1))
    sep = ["---:" if a == "r" else ":---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def csv_text(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buf = io.StringIO()
    pd.DataFrame([list(r) for r in rows], columns=list(header)).to_csv(buf, index=False, lineterminator="\n")
    return buf.getvalue()
