"""Evaluation statistics of IK solutions (spec §6)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ggik_core.solve.solver import distinct_count
from ggik_core.robots.transforms import wrap_angle

#: (name, position mm, rotation deg) success thresholds; rotation None = position only.
THRESHOLDS = (("10mm", 10.0, None), ("5mm_2deg", 5.0, 2.0), ("1mm_1deg", 1.0, 1.0), ("0.1mm_0.1deg", 0.1, 0.1))
#: a "valid" solution for diversity: inside the limits and within 10 mm and 5 degrees.
VALID_MM, VALID_DEG = 10.0, 5.0


def summary(x: np.ndarray) -> dict[str, float]:
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if x.size == 0:
        return {k: float("nan") for k in ("mean", "median", "min", "max", "q1", "q3")}
    q1, med, q3 = np.percentile(x, [25, 50, 75])
    return {"mean": float(x.mean()), "median": float(med), "min": float(x.min()), "max": float(x.max()), "q1": float(q1), "q3": float(q3)}


def success(pos_mm: np.ndarray, rot_deg: np.ndarray, mm: float, deg: float | None) -> np.ndarray:
    ok = pos_mm < mm
    return ok if deg is None else ok & (rot_deg < deg)


def best_of_k(pos_mm: np.ndarray, rot_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per goal, the candidate with the smallest ``pos_mm + rot_deg`` (1 mm weighs as 1 degree)."""
    idx = np.argmin(pos_mm + rot_deg, axis=1)
    rows = np.arange(pos_mm.shape[0])
    return pos_mm[rows, idx], rot_deg[rows, idx]


def table_protocol(err: np.ndarray) -> dict[str, float]:
    """The GGIK paper's table protocol: drop samples above the 99th percentile, take per-goal
    statistics, average them over goals. ``err``: ``(G, k)``."""
    cut = np.percentile(err, 99)
    stats = {k: [] for k in ("mean", "min", "max", "median", "q1", "q3")}
    for row in np.where(err <= cut, err, np.nan):  # loop over goals (summary statistics only)
        row = row[~np.isnan(row)]
        if row.size == 0:
            continue
        q1, med, q3 = np.percentile(row, [25, 50, 75])
        for key, v in zip(stats, (row.mean(), row.min(), row.max(), med, q1, q3)):
            stats[key].append(v)
    return {k: float(np.mean(v)) if v else float("nan") for k, v in stats.items()}


def diversity(q: Tensor, valid: Tensor) -> float:
    """Mean pairwise joint-space distance (RMS of wrapped angle differences, rad) among the valid
    solutions of each goal, averaged over goals with at least two."""
    rms = wrap_angle(q[:, :, None, :] - q[:, None, :, :]).pow(2).mean(-1).sqrt()  # (G, k, k)
    pair = valid[:, :, None] & valid[:, None, :]
    pair &= ~torch.eye(valid.shape[1], dtype=torch.bool)[None]
    n = pair.sum((1, 2))
    has = n > 0
    if not bool(has.any()):
        return float("nan")
    per_goal = (rms * pair).sum((1, 2))[has] / n[has]
    return float(per_goal.mean())


def solution_metrics(q: Tensor, pos_m: Tensor, rot_rad: Tensor, within: Tensor, distinct_tol: float) -> dict:
    """Every statistic of one set of ``(G, k)`` candidates."""
    pos_mm = pos_m.numpy() * 1000.0
    rot_deg = np.degrees(rot_rad.numpy())
    within_np = within.numpy()
    b_pos, b_rot = best_of_k(pos_mm, rot_deg)
    out: dict = {
        "position_mm": summary(pos_mm),
        "rotation_deg": summary(rot_deg),
        "best_of_k_position_mm": summary(b_pos),
        "best_of_k_rotation_deg": summary(b_rot),
        "success": {},
        "goal_success": {},
        "within_limits": float(within_np.mean()),
    }
    for name, mm, deg in THRESHOLDS:
        ok = success(pos_mm, rot_deg, mm, deg)
        out["success"][name] = float(ok.mean())
        out["goal_success"][name] = float(ok.any(1).mean())
    valid = torch.from_numpy(success(pos_mm, rot_deg, VALID_MM, VALID_DEG) & within_np)
    out["diversity_rad"] = diversity(q, valid)
    out["distinct_valid_per_goal"] = float(distinct_count(q, valid, distinct_tol).float().mean())
    exact = torch.from_numpy(success(pos_mm, rot_deg, 1.0, 1.0) & within_np)
    out["distinct_1mm_1deg_per_goal"] = float(distinct_count(q, exact, distinct_tol).float().mean())
    out["table_protocol"] = {"position_mm": table_protocol(pos_mm), "rotation_deg": table_protocol(rot_deg)}
    return out
