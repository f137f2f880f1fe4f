"""`ggik bench ik`'s scoring and its Markdown table: the thresholds, the methods, each method's
rates per threshold and their ratios to the best baseline (:mod:`pipeline.bench.ik` runs them)."""

from __future__ import annotations

import math

from torch import Tensor

from ggik_core.solve.solver import Solutions, distinct_count

#: name -> (position tolerance in metres, rotation tolerance in radians)
THRESHOLDS: dict[str, tuple[float, float]] = {
    "1mm_1deg": (1e-3, math.radians(1.0)),
    "0.1mm_0.1deg": (1e-4, math.radians(0.1)),
}
THRESHOLD_LABELS = {"1mm_1deg": "1 mm & 1°", "0.1mm_0.1deg": "0.1 mm & 0.1°"}
DISTINCT_TOL = 0.05  # radians, per joint

METHODS: dict[str, str] = {
    "ggik": "(a) GGIK",
    "ggik_refined": "(b) GGIK + LM",
    "random_refined": "(c) random seeds + LM",
    "pytorch_kinematics": "(d) pytorch-kinematics PseudoInverseIK",
    "trac_ik": "(d) TRAC-IK (pytracik)",
}
BASELINES = ("random_refined", "pytorch_kinematics", "trac_ik")
#: metrics per threshold; all "higher is better"
RATE_METRICS = ("success_candidates", "success_goals", "solutions_per_s", "distinct_per_goal", "distinct_per_s")
#: repeats of the warm single-goal latency measurement (median reported)
LATENCY_REPEATS = 15



# --- scoring -------------------------------------------------------------------------------------
def success_mask(sol: Solutions, key: str) -> Tensor:
    """``(G, k)``: candidates inside the limits and within the :data:`THRESHOLDS` ``key``."""
    pos_tol, rot_tol = THRESHOLDS[key]
    return (sol.pos_err < pos_tol) & (sol.rot_err < rot_tol) & sol.within_limits


def score(sol: Solutions) -> dict:
    """Success rates, throughput and distinct solutions of ``sol`` at every threshold."""
    G, k = sol.pos_err.shape
    seconds = max(sol.seconds, 1e-12)
    out: dict = {"status": "ok", "wall_s": sol.seconds, "goals": G, "candidates": G * k}
    for key in THRESHOLDS:
        ok = success_mask(sol, key)
        n_ok = int(ok.sum())
        solved = int(ok.any(-1).sum())
        distinct = int(distinct_count(sol.q, ok, DISTINCT_TOL).sum())
        out[key] = {
            "successes": n_ok,
            "goals_solved": solved,
            "distinct_total": distinct,
            "success_candidates": n_ok / (G * k),
            "success_goals": solved / G,
            "solutions_per_s": n_ok / seconds,
            "distinct_per_goal": distinct / G,
            "distinct_per_s": distinct / seconds,
        }
    return out


def pooled(entries: list[dict]) -> dict:
    """One figure set over several arms: counts and wall times summed, rates recomputed."""
    if not entries:
        return {"status": "skipped: no arms"}
    statuses = {e.get("status") for e in entries}
    if statuses != {"ok"}:
        if len(statuses) == 1:  # the same reason on every arm (not installed, skipped, ...)
            return {"status": statuses.pop()}
        bad = next(s for s in statuses if s != "ok")
        return {"status": f"incomplete: {bad}"}
    G = sum(e["goals"] for e in entries)
    C = sum(e["candidates"] for e in entries)
    wall = sum(e["wall_s"] for e in entries)
    out: dict = {"status": "ok", "wall_s": wall, "goals": G, "candidates": C}
    for key in THRESHOLDS:
        n_ok = sum(e[key]["successes"] for e in entries)
        solved = sum(e[key]["goals_solved"] for e in entries)
        distinct = sum(e[key]["distinct_total"] for e in entries)
        out[key] = {
            "successes": n_ok,
            "goals_solved": solved,
            "distinct_total": distinct,
            "success_candidates": n_ok / C,
            "success_goals": solved / G,
            "solutions_per_s": n_ok / max(wall, 1e-12),
            "distinct_per_goal": distinct / G,
            "distinct_per_s": distinct / max(wall, 1e-12),
        }
    return out


def add_ratios(methods: dict[str, dict]) -> None:
    """Attach ``ratio_to_best_baseline`` (and which baseline was best) to every method that ran."""
    ran = {m: methods[m] for m in BASELINES if methods.get(m, {}).get("status") == "ok"}
    best: dict = {}
    if ran:
        m = min(ran, key=lambda name: ran[name]["wall_s"])
        best["wall_s"] = (m, ran[m]["wall_s"])
        for key in THRESHOLDS:
            for metric in RATE_METRICS:
                m = max(ran, key=lambda name: ran[name][key][metric])
                best[f"{key}.{metric}"] = (m, ran[m][key][metric])

    def ratio(value: float, ref: float) -> float | None:
        return value / ref if ref > 0 else None

    for entry in methods.values():
        if entry.get("status") != "ok":
            continue
        if not best:
            entry["ratio_to_best_baseline"] = None
            entry["best_baseline"] = None
            continue
        r: dict = {"wall_s": ratio(entry["wall_s"], best["wall_s"][1])}
        which: dict = {"wall_s": best["wall_s"][0]}
        for key in THRESHOLDS:
            r[key] = {metric: ratio(entry[key][metric], best[f"{key}.{metric}"][1]) for metric in RATE_METRICS}
            which[key] = {metric: best[f"{key}.{metric}"][0] for metric in RATE_METRICS}
        entry["ratio_to_best_baseline"] = r
        entry["best_baseline"] = which


# --- Markdown ------------------------------------------------------------------------------------
def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _ratio(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}×"


def _rows(block: dict[str, dict], label: str, ratios: bool) -> list[str]:
    lines = []
    for m, title in METHODS.items():
        e = block[m]
        if e.get("status") != "ok":
            status = str(e.get("status", "?")).replace("|", "\\|")
            lines.append(f"| {label} | {title} | {status} |" + " |" * (len(THRESHOLDS) * len(RATE_METRICS)))
            continue
        src = e["ratio_to_best_baseline"] if ratios else e
        if src is None:
            lines.append(f"| {label} | {title} | no baseline ran |" + " |" * (len(THRESHOLDS) * len(RATE_METRICS)))
            continue
        cells = []
        for key in THRESHOLDS:
            t = src[key]
            if ratios:
                cells += [_ratio(t["success_candidates"]), _ratio(t["success_goals"]), _ratio(t["solutions_per_s"]), _ratio(t["distinct_per_goal"]), _ratio(t["distinct_per_s"])]
            else:
                cells += [_pct(t["success_candidates"]), _pct(t["success_goals"]), f"{t['solutions_per_s']:,.0f}", f"{t['distinct_per_goal']:.2f}", f"{t['distinct_per_s']:,.0f}"]
        cells.append(_ratio(src["wall_s"]) if ratios else f"{src['wall_s']:.3f}")
        lines.append(f"| {label} | {title} | " + " | ".join(cells) + " |")
    return lines


def markdown(report: dict) -> str:
    c = report["config"]
    head_cells = []
    for key in THRESHOLDS:
        lab = THRESHOLD_LABELS[key]
        head_cells += [f"cand. @ {lab}", f"goals @ {lab}", f"sol/s @ {lab}", f"distinct/goal @ {lab}", f"distinct/s @ {lab}"]
    header = "| arm | method | " + " | ".join(head_cells) + " | wall s |"
    rule = "|" + "---|" * (3 + len(head_cells))
    out = [
        "# ggik bench ik",
        "",
        f"{c['goals_per_arm']} goals x {c['samples']} candidates per arm, seed {c['seed']}, device {c['device']} "
        f"({c['threads']} threads), LM max_iter {c['refine']['max_iter']} (backend {c['refine'].get('backend', 'auto')}), "
        f"model {c['model'] or '(none)'}.",
        "",
        "Success: FK error below the threshold and inside the joint limits. cand. = share of all candidates, "
        "goals = share of goals with at least one success, sol/s = successful candidates per second of wall time, "
        f"distinct/goal = distinct successful solutions per goal (every joint within {c['distinct_tol_rad']} rad = same), "
        "distinct/s = distinct successful solutions per second of wall time.",
        "",
        "## Figures",
        "",
        header,
        rule,
    ]
    for arm in c["arms"]:
        out += _rows(report["results"][arm], arm, ratios=False)
    out += _rows(report["overall"], "all", ratios=False)
    out += [
        "",
        "## Ratio to the best baseline (best of (c), (d) per metric; wall s: lower is better)",
        "",
        header,
        rule,
    ]
    for arm in c["arms"]:
        out += _rows(report["results"][arm], arm, ratios=True)
    out += _rows(report["overall"], "all", ratios=True)
    out += _vs_trac_ik(report)
    lat = report.get("latency_1_goal") or {}
    if lat:
        out += ["", "## Warm latency, random seeds + LM, one goal", "",
                "| arm | candidates | median ms | best ms | exact | distinct |", "|---|---|---|---|---|---|"]
        out += [f"| {a} | {v['candidates']} | {v['median_ms']:.1f} | {v['min_ms']:.1f} | {v['successes']} | {v['distinct']} |"
                for a, v in lat.items()]
    out += _branch_rows(report.get("branch_coverage") or {})
    out.append("")
    return "\n".join(out) + "\n"


def _branch_rows(branches: dict[str, dict]) -> list[str]:
    """Branch coverage on the 6R arms: the share of each goal's analytic solutions (eaik) that the
    method's exact candidates reach (pipeline/bench/branches.py)."""
    if not branches:
        return []
    lines = ["", f"## Solution-branch coverage on the 6R arms (oracle: eaik's analytic IK; share of a goal's analytic "
             f"solutions inside the limits reached by an exact candidate within {DISTINCT_TOL} rad)", "",
             "| arm | analytic solutions per goal | method | coverage |", "|---|---|---|---|"]
    for arm, b in branches.items():
        if b.get("status") != "ok":
            lines.append(f"| {arm} | {b.get('status')} | | |")
            continue
        sols = f"{b['solutions_per_goal']:.2f} ({b['family']}{'' if b['exact_geometry'] else ', idealised twin + LM polish'})"
        for m, c in b["coverage"].items():
            lines.append(f"| {arm} | {sols} | {METHODS[m]} | {'–' if c is None else f'{100 * c:.1f}%'} |")
    return lines


def _vs_trac_ik(report: dict) -> list[str]:
    """Throughput of our LM methods as multiples of TRAC-IK's, at 1 mm & 1°, per arm and pooled."""
    blocks = ([(arm, report["results"][arm]) for arm in report["config"]["arms"]] + list((report.get("pools") or {}).items())
              + [("all", report["overall"])])
    lines = ["", "## Against TRAC-IK (1 mm & 1°): solutions/s and distinct solutions/s as multiples of TRAC-IK's", "",
             "| arm | TRAC-IK sol/s | TRAC-IK distinct/s | method | sol/s | × | distinct/s | × |", "|---|---|---|---|---|---|---|---|"]
    for label, block in blocks:
        tk = block.get("trac_ik", {})
        if tk.get("status") != "ok":
            continue
        t = tk["1mm_1deg"]
        for m in ("ggik_refined", "random_refined"):
            e = block.get(m, {})
            if e.get("status") != "ok":
                continue
            x = e["1mm_1deg"]
            lines.append(f"| {label} | {t['solutions_per_s']:,.0f} | {t['distinct_per_s']:,.0f} | {METHODS[m]} | {x['solutions_per_s']:,.0f} | "
                         f"{_ratio(x['solutions_per_s'] / t['solutions_per_s'] if t['solutions_per_s'] else None)} | {x['distinct_per_s']:,.0f} | "
                         f"{_ratio(x['distinct_per_s'] / t['distinct_per_s'] if t['distinct_per_s'] else None)} |")
    return lines if len(lines) > 4 else []
