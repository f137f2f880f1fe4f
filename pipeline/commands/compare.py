"""The four-model study: GGIK (EGNN) vs GGIK+ (EGAT), coplanar vs non-coplanar training data.

Each model is one DVC experiment (``dvc exp run -S model.layer=egat -S data.geometry=...``) or
commit. :func:`compare` reads, through DVC, each selected revision's params (``model.layer``,
``data.geometry``), ``metrics/eval_detail.json`` and ``metrics/eval_samples.parquet`` (git-tracked
outputs, ``cache: false``, so every experiment commit holds them) and writes

* ``compare.md`` / ``compare.csv``: one row per model and arm plus an ``overall`` row per model;
* ``compare_box.png``: raw position error per arm, one box per model.

Default selection: the workspace, the ``HEAD`` baseline commit, and every experiment of that
baseline (oldest first). The workspace is left out when its ``eval_detail.json`` equals that of another
selected revision (``dvc exp run`` leaves the last experiment's results in the workspace), and the
workspace and baseline are left out when they hold no ``eval_detail.json`` yet. Revisions named
explicitly (experiment names, branches, tags, SHAs, ``workspace``) must all have results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ggik_core.errors import DataError, GGIKError
from ggik_core.data.io import write_text
from pipeline.common.figures import SERIES_COLORS, grouped_boxes, new_figure, save_png
from pipeline.common.metrics_files import check_eval, num, parse_json, parse_samples
from pipeline.common.tables import csv_num, csv_text, fmt, fmt_pct, md_table

EVAL_JSON = "metrics/eval_detail.json"
EVAL_SAMPLES = "metrics/eval_samples.parquet"
WORKSPACE = "workspace"

COMPARE_COLUMNS = (
    "model", "layer", "geometry", "experiment", "rev", "arm", "dof",
    "raw_pos_mean_mm", "raw_pos_median_mm", "raw_rot_mean_deg", "raw_rot_median_deg",
    "refined_success_1mm_1deg", "refined_distinct_1mm_1deg_per_goal", "raw_within_limits", "refined_within_limits",
)
_VALUE_PATHS = (
    ("raw_pos_mean_mm", "raw.position_mm.mean"), ("raw_pos_median_mm", "raw.position_mm.median"),
    ("raw_rot_mean_deg", "raw.rotation_deg.mean"), ("raw_rot_median_deg", "raw.rotation_deg.median"),
    ("refined_success_1mm_1deg", "refined.success.1mm_1deg"),
    ("refined_distinct_1mm_1deg_per_goal", "refined.distinct_1mm_1deg_per_goal"),
    ("raw_within_limits", "raw.within_limits"), ("refined_within_limits", "refined.within_limits"),
)


@dataclass
class Selected:
    """One revision to read: ``rev`` is a full SHA, or None for the workspace."""

    rev: str | None
    name: str  # what the user sees: "workspace", a branch, an experiment name or a short SHA
    experiment: str | None = None
    explicit: bool = True  # named by the user (or an experiment): missing results are an error


@dataclass
class Model:
    sel: Selected
    layer: str
    geometry: str
    eval_bytes: bytes
    eval: dict
    samples: pd.DataFrame
    label: str = field(default="")


def _dvc_error(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _select(repo: Path, revs: list[str] | None) -> list[Selected]:
    from dvc.exceptions import DvcException
    from dvc.repo import Repo
    from dvc.scm import Git, resolve_rev

    try:
        with Repo(str(repo)) as r:
            scm = r.scm
            if not isinstance(scm, Git):
                raise GGIKError(f"{repo} is not a Git repository: DVC experiments need Git")
            try:
                head = scm.get_rev()
            except Exception:  # noqa: BLE001 - scmrepo raises several types for an empty repo
                raise GGIKError(f"{repo}: the Git repository has no commits, so no experiments") from None
            names: dict[str, str] = {}  # experiment SHA -> name, over all baselines
            for exps in r.experiments.ls(all_commits=True).values():
                for name, sha in exps:
                    if sha:
                        names[sha] = name
            if revs is None:
                try:
                    base = scm.active_branch()
                except Exception:  # noqa: BLE001 - detached HEAD
                    base = head[:7]
                exps = [(name, sha) for name, sha in r.experiments.ls(rev=head).get(head, []) if sha]
                exps.sort(key=lambda e: (scm.resolve_commit(e[1]).commit_time, e[0]))
                return ([Selected(None, WORKSPACE, explicit=False), Selected(head, base, explicit=False)]
                        + [Selected(sha, name, name) for name, sha in exps])
            selected = []
            for rv in revs:
                if rv == WORKSPACE:
                    selected.append(Selected(None, WORKSPACE))
                    continue
                try:
                    sha = resolve_rev(scm, rv)
                except DvcException as exc:
                    raise GGIKError(f"unknown revision or experiment {rv!r} in {repo}: {_dvc_error(exc)}") from None
                selected.append(Selected(sha, rv, names.get(sha)))
            return selected
    except GGIKError:
        raise
    except DvcException as exc:
        raise GGIKError(f"cannot list DVC experiments in {repo}: {_dvc_error(exc)}") from None


def _read(repo: Path, path: str, sel: Selected) -> bytes | None:
    """The bytes of ``path`` at ``sel`` through DVC; None when the revision has no such file."""
    import dvc.api
    from dvc.exceptions import DvcException, PathMissingError

    try:
        return dvc.api.read(path, repo=str(repo), rev=sel.rev, mode="rb")
    except (PathMissingError, FileNotFoundError):
        return None
    except DvcException as exc:
        raise GGIKError(f"cannot read {path} at {sel.name}: {_dvc_error(exc)}") from None


def _params(repo: Path, sel: Selected) -> dict:
    import dvc.api
    import yaml

    try:
        return dvc.api.params_show(repo=str(repo), rev=sel.rev)
    except Exception:  # noqa: BLE001 - fall back to the raw params file
        data = _read(repo, "params.yaml", sel)
        try:
            out = yaml.safe_load(data) if data is not None else None
        except yaml.YAMLError:
            out = None
        return out if isinstance(out, dict) else {}


def _param(params: dict, section: str, key: str) -> str:
    v = params.get(section, {})
    v = v.get(key) if isinstance(v, dict) else None
    return "unknown" if v is None else str(v)


def _load(repo: Path, selected: list[Selected]) -> tuple[list[Model], list[str]]:
    models: list[Model] = []
    skipped: list[str] = []
    for sel in selected:
        ev_bytes = _read(repo, EVAL_JSON, sel)
        if ev_bytes is None:
            if not sel.explicit:
                skipped.append(f"{sel.name}: no {EVAL_JSON}")
                continue
            raise GGIKError(f"revision {sel.name!r} has no {EVAL_JSON} (run the pipeline there first)")
        where = f"{EVAL_JSON} at {sel.name}"
        try:
            ev = parse_json(ev_bytes, where)
            check_eval(ev, where, full=False)
        except DataError as exc:
            raise GGIKError(str(exc)) from None
        sm_bytes = _read(repo, EVAL_SAMPLES, sel)
        if sm_bytes is None:
            raise GGIKError(f"revision {sel.name!r} has {EVAL_JSON} but no {EVAL_SAMPLES}")
        try:
            samples = parse_samples(sm_bytes, f"{EVAL_SAMPLES} at {sel.name}")
        except DataError as exc:
            raise GGIKError(str(exc)) from None
        params = _params(repo, sel)
        models.append(Model(sel, _param(params, "model", "layer"), _param(params, "data", "geometry"), ev_bytes, ev, samples))
    # the workspace comes first in the listing but compares against everything after it
    ws = [m for m in models if m.sel.rev is None and not m.sel.explicit]
    if ws and any(m.eval_bytes == ws[0].eval_bytes for m in models if m is not ws[0]):
        twin = next(m for m in models if m is not ws[0] and m.eval_bytes == ws[0].eval_bytes)
        models.remove(ws[0])
        skipped.append(f"{WORKSPACE}: same results as {twin.sel.name}")
    return models, skipped


def _label(models: list[Model]) -> None:
    base = [f"{m.layer}/{m.geometry}" for m in models]
    for m, b in zip(models, base):
        m.label = b if base.count(b) == 1 else f"{b} ({m.sel.experiment or m.sel.name})"
    labels = [m.label for m in models]
    for i, m in enumerate(models):  # the same experiment named twice
        if labels.count(m.label) > 1:
            m.label = f"{m.label} #{labels[:i + 1].count(m.label)}"


def _rows(models: list[Model]) -> tuple[list[str], list[dict[str, Any]]]:
    arms: list[str] = []
    for m in models:
        arms += [a for a in m.eval["arms"] if a not in arms]
    rows = []
    for arm in [*arms, "overall"]:
        for m in models:
            res = m.eval["arms"].get(arm) if arm != "overall" else m.eval.get("overall")
            if not isinstance(res, dict):
                continue
            where = f"{EVAL_JSON} at {m.sel.name} ({arm})"
            try:
                vals = {col: num(res, path, where) for col, path in _VALUE_PATHS}
            except DataError as exc:
                raise GGIKError(str(exc)) from None
            rows.append({"model": m.label, "layer": m.layer, "geometry": m.geometry, "experiment": m.sel.experiment or "",
                         "rev": m.sel.rev or WORKSPACE,
                         "arm": arm, "dof": res.get("dof", "") if arm != "overall" else "", **vals})
    return arms, rows


def _write_tables(models: list[Model], rows: list[dict], skipped: list[str], out_dir: Path) -> list[Path]:
    md = ["# Model comparison\n",
          md_table(("model", "experiment", "revision", "layer", "geometry", "goals / arm", "samples / goal"),
                   [(m.label, m.sel.experiment or "–", m.sel.name if m.sel.rev is None else f"{m.sel.name} ({m.sel.rev[:7]})",
                     m.layer, m.geometry, str(m.eval.get("params", {}).get("problems_per_arm", "?")),
                     str(m.eval.get("params", {}).get("samples", "?"))) for m in models], align="lllllrr")]
    if skipped:
        md.append("Not included: " + "; ".join(skipped) + ".\n")
    md.append("## Results per arm\n")
    md.append(md_table(
        ("arm", "model", "raw pos mean (mm)", "raw pos median (mm)", "raw rot mean (°)", "raw rot median (°)",
         "refined 1 mm & 1°", "distinct refined / goal", "within limits raw", "within limits refined"),
        [(r["arm"], r["model"], fmt(r["raw_pos_mean_mm"]), fmt(r["raw_pos_median_mm"]), fmt(r["raw_rot_mean_deg"]),
          fmt(r["raw_rot_median_deg"]), fmt_pct(r["refined_success_1mm_1deg"]),
          fmt(r["refined_distinct_1mm_1deg_per_goal"]), fmt_pct(r["raw_within_limits"]), fmt_pct(r["refined_within_limits"]))
         for r in rows], align="ll" + "r" * 8))
    md.append("Raw: network samples; refined: after LM refinement. *refined 1 mm & 1°*: share of refined samples "
              "within 1 mm and 1°. *distinct refined / goal*: distinct refined solutions within 1 mm & 1° and the "
              "joint limits, per goal. The *overall* rows pool all arms.\n")
    md.append("![Raw position error per arm and model](compare_box.png)\n")
    write_text(out_dir / "compare.md", "\n".join(md))
    write_text(out_dir / "compare.csv", csv_text(COMPARE_COLUMNS, [
        [csv_num(r[c]) if c.endswith(("_mm", "_deg", "_1deg", "_goal", "_limits")) else str(r[c]) for c in COMPARE_COLUMNS]
        for r in rows]))
    return [out_dir / "compare.md", out_dir / "compare.csv"]


def _write_box(models: list[Model], arms: list[str], out_dir: Path) -> Path:
    fig, ax = new_figure(max(7.0, (0.5 + 0.35 * len(models)) * len(arms) + 2), 4.8)
    raw = {m.label: {a: g["pos_err_mm"].to_numpy() for a, g in m.samples[m.samples["kind"] == "raw"].groupby("arm", sort=False)}
           for m in models}
    clipped = grouped_boxes(ax, arms, [m.label for m in models], lambda a, lab: raw[lab].get(a, np.empty(0)), SERIES_COLORS)
    ax.set_title("Raw position error per arm, one box per model (layer/geometry)")
    ax.set_xlabel("arm")
    ax.set_ylabel("position error (mm, log scale)" + (" (zeros drawn at 1e-12)" if clipped else ""))
    return save_png(fig, out_dir / "compare_box.png")


def compare(out_dir: Path, revs: list[str] | None, repo: Path = Path(".")) -> list[Path]:
    """Compare the evaluation results of DVC experiments (default: workspace, baseline, every
    experiment of ``HEAD``; or the given revisions / experiment names). Returns the files written."""
    out_dir, repo = Path(out_dir), Path(repo)
    if revs is not None and not revs:
        revs = None
    selected = _select(repo, revs)
    models, skipped = _load(repo, selected)
    if not models:
        why = f" ({'; '.join(skipped)})" if skipped else ""
        raise GGIKError(f"no experiments with results found in {repo}{why}: run `dvc exp run` first")
    _label(models)
    arms, rows = _rows(models)
    return _write_tables(models, rows, skipped, out_dir) + [_write_box(models, arms, out_dir)]
