"""Matplotlib helpers: detached figures, atomic PNGs and grouped log-scale box plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ggik_core.data.io import atomic_path

#: non-positive errors are drawn at this value on the log axes
LOG_FLOOR = 1e-12
SERIES_COLORS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C")


def new_figure(width: float, height: float, ncols: int = 1) -> tuple[Figure, Any]:
    """A figure detached from pyplot (Agg canvas: no global backend switch, nothing to close)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols)
    return fig, axes


def save_png(fig: Figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, metadata={"Software": None})
    return path


def grouped_boxes(ax, groups: Sequence[str], series: Sequence[str], data: Callable[[str, str], np.ndarray],
                  colors: Sequence[str]) -> bool:
    """One cluster of boxes per group (arm), one box per series inside it, on a log y axis.

    ``data(group, series)`` gives the values (may be empty: no box). Returns whether any value was
    non-positive and drawn at :data:`LOG_FLOOR`.
    """
    width = 0.8 / max(len(series), 1)
    clipped = False
    for gi, g in enumerate(groups):
        for si, s in enumerate(series):
            v = np.asarray(data(g, s), dtype=np.float64)
            v = v[np.isfinite(v)]
            if v.size == 0:
                continue
            if (v <= 0).any():
                clipped = True
                v = np.maximum(v, LOG_FLOOR)
            pos = gi + (si - (len(series) - 1) / 2) * width
            bp = ax.boxplot([v], positions=[pos], widths=width * 0.85, patch_artist=True, whis=1.5,
                            flierprops={"marker": ".", "markersize": 2, "alpha": 0.4, "markeredgecolor": colors[si % len(colors)]},
                            medianprops={"color": "black"})
            for box in bp["boxes"]:
                box.set_facecolor(colors[si % len(colors)])
                box.set_alpha(0.8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(list(groups))
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.grid(axis="y", which="major", alpha=0.3)
    ax.legend(handles=[Patch(facecolor=colors[i % len(colors)], alpha=0.8, label=s) for i, s in enumerate(series)], fontsize=8)
    return clipped
