"""Stage `evaluate`: sample and score IK solutions on the five catalog arms.

For each arm: ``eval.problems_per_arm`` goals from configurations uniform inside the arm's real
joint limits (seeded), ``eval.samples`` candidates each: raw (GGIK's sampler: prior samples decoded once), re-encoded
``eval.passes`` times (the same prior draws; :meth:`ggik_core.model.cvae.GGIK.sample`) when
``passes > 0``, and the raw samples refined by batched LM (what ``ggik solve`` does by default).
Writes the headline figures per arm and overall to ``metrics/eval.json`` (the DVC metrics file:
:func:`headline`), every statistic to ``metrics/eval_detail.json`` and the per-sample errors to
``metrics/eval_samples.parquet``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ggik_core.robots.catalog import ARM_NAMES, load_arm
from ggik_core.data.io import atomic_path, write_json
from ggik_core.solve.metrics import solution_metrics
from ggik_core.solve.refine import RefineConfig
from ggik_core.solve.solver import Solutions, refine_solutions, sample_solutions
from ggik_core.runtime import set_threads
from pipeline.common.params import pick
from pipeline.stages.eval_params import EvalParams
from pipeline.common.progress import stderr
from ggik_core.model.files import load_model


def _generator(device: torch.device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def refine_config(p: EvalParams) -> RefineConfig:
    return pick(RefineConfig, p, prefix="refine_")


def _frame(arm: str, kind: str, s: Solutions) -> pd.DataFrame:
    G, k, n = s.q.shape
    return pd.DataFrame({
        "arm": arm,
        "kind": kind,
        "goal_id": np.repeat(np.arange(G), k),
        "sample_id": np.tile(np.arange(k), G),
        "pos_err_mm": s.pos_err.numpy().reshape(-1) * 1000.0,
        "rot_err_deg": np.degrees(s.rot_err.numpy().reshape(-1)),
        "within_limits": s.within_limits.numpy().reshape(-1),
    })


def evaluate(p: EvalParams, model_path: Path, metrics_dir: Path, arms: tuple[str, ...] = ARM_NAMES) -> dict:
    set_threads(0)
    model = load_model(model_path)
    device = next(model.parameters()).device
    results: dict = {"arms": {}, "params": {"problems_per_arm": p.problems_per_arm, "samples": p.samples, "passes": p.passes,
                                            "relax": p.relax, "device": device.type}}
    frames: list[pd.DataFrame] = []
    per_kind: dict[str, list[Solutions]] = {}  # raw [, reencoded], refined: one Solutions per arm
    first_goals = []
    for i, arm in enumerate(arms):
        robot = load_arm(arm)
        gen = torch.Generator().manual_seed(p.seed * 100 + i)
        goals = robot.fk(robot.sample_q(p.problems_per_arm, gen))
        sols = {"raw": sample_solutions(model, robot, goals, p.samples, generator=_generator(device, p.seed * 100 + i),
                                        kernels=p.kernels)}
        if p.passes > 0:  # the same prior draws (same seed), re-encoded
            sols["reencoded"] = sample_solutions(model, robot, goals, p.samples, generator=_generator(device, p.seed * 100 + i),
                                                 passes=p.passes, relax=p.relax, kernels=p.kernels)
        raw = sols["raw"]
        ref = refine_solutions(robot, raw.q.to(device), goals, refine_config(p))  # the raw samples refined, as ggik solve does
        ref.seconds += raw.seconds
        sols["refined"] = ref
        res = {"dof": robot.dof}
        for kind, s in sols.items():
            res[kind] = solution_metrics(s.q, s.pos_err, s.rot_err, s.within_limits, p.distinct_tol)
            res[kind]["seconds"] = s.seconds
            frames.append(_frame(arm, kind, s))
            per_kind.setdefault(kind, []).append(s)
        results["arms"][arm] = res
        first_goals.append(goals[0])
        again = (f" re-encoded ×{p.passes}: {res['reencoded']['position_mm']['median']:8.2f} mm "
                 f"{res['reencoded']['rotation_deg']['median']:7.2f}°" if p.passes > 0 else "")
        stderr.print(
            f"{arm:6s} raw: median {res['raw']['position_mm']['median']:8.2f} mm {res['raw']['rotation_deg']['median']:7.2f}°{again} "
            f"| refined: 1mm&1° {100 * res['refined']['success']['1mm_1deg']:5.1f}% "
            f"distinct {res['refined']['distinct_1mm_1deg_per_goal']:.1f}/goal ({raw.seconds:.2f}s raw, {ref.seconds:.2f}s refined)"
        )
    results["overall"] = {kind: _overall(sols, p.distinct_tol) for kind, sols in per_kind.items()}
    write_json(metrics_dir / "eval_detail.json", results)
    write_json(metrics_dir / "eval.json", headline(results))
    pictured = pd.concat([_first_goal(arm, sols, g, p) for arm, sols, g in zip(arms, per_kind["refined"], first_goals)],
                         ignore_index=True)
    with atomic_path(metrics_dir / "eval_solutions.parquet") as tmp:
        pictured.to_parquet(tmp, index=False)
    with atomic_path(metrics_dir / "eval_samples.parquet") as tmp:
        pd.concat(frames, ignore_index=True).to_parquet(tmp, index=False)
    return results


#: the headline figure names of ``eval.json`` and where each comes from in ``eval_detail.json``
HEADLINE = {
    "raw_median_mm": "raw.position_mm.median",
    "raw_best_mm": "raw.best_of_k_position_mm.median",  # best of eval.samples (32)
    "reenc_median_mm": "reencoded.position_mm.median",  # only when eval.passes > 0
    "refined_success": "refined.success.1mm_1deg",  # share of refined samples within 1 mm & 1°
    "distinct_per_goal": "refined.distinct_1mm_1deg_per_goal",
}


def headline(results: dict) -> dict:
    """The few figures ``dvc metrics show`` and ``dvc exp show`` display: :data:`HEADLINE` for the
    overall block first, then for each arm (absent sample kinds left out)."""
    def pick_figures(block: dict) -> dict:
        out = {}
        for name, path in HEADLINE.items():
            value = block
            for key in path.split("."):
                value = value.get(key) if isinstance(value, dict) else None
            if value is not None or path.split(".")[0] in block:
                out[name] = value
        return out

    return {"overall": pick_figures(results["overall"]), **{arm: pick_figures(res) for arm, res in results["arms"].items()}}


def _first_goal(arm: str, s: Solutions, goal: torch.Tensor, p: EvalParams) -> pd.DataFrame:
    """The refined candidates of the arm's first goal as a ``ggik solve`` table (plus ``arm``), for
    the report's picture of the arm in each distinct solution."""
    from ggik_core.api import Result
    from ggik_core.solve.distinct import solved_and_distinct

    q = s.q[:1].numpy()
    pos, rot = s.pos_err[:1].numpy() * 1000.0, np.degrees(s.rot_err[:1].numpy())
    within = s.within_limits[:1].numpy()
    solved, distinct = solved_and_distinct(q, pos, rot, within, 1.0, 1.0, p.distinct_tol)  # the 1 mm & 1° of eval.json
    res = Result(robot=arm, goals=goal[None].cpu().numpy(), q=q, pos_err_mm=pos, rot_err_deg=rot, within_limits=within, solved=solved,
                 distinct=distinct, out_of_reach=np.zeros(1, dtype=bool), refined=True, seeds="ggik", seconds=s.seconds)
    df = res.to_frame()
    df.insert(0, "arm", arm)
    return df


def _overall(sols: list[Solutions], distinct_tol: float) -> dict:
    """Pooled statistics over arms (DOFs differ, so joint-space figures are averaged per arm)."""
    pos = torch.cat([s.pos_err.reshape(-1) for s in sols])[:, None]
    rot = torch.cat([s.rot_err.reshape(-1) for s in sols])[:, None]
    within = torch.cat([s.within_limits.reshape(-1) for s in sols])[:, None]
    per_arm = [solution_metrics(s.q, s.pos_err, s.rot_err, s.within_limits, distinct_tol) for s in sols]
    pooled = solution_metrics(torch.zeros(pos.shape[0], 1, 1), pos, rot, within, distinct_tol)
    for key in ("best_of_k_position_mm", "best_of_k_rotation_deg", "goal_success", "table_protocol"):
        pooled[key] = _mean_dicts([m[key] for m in per_arm])
    for key in ("diversity_rad", "distinct_valid_per_goal", "distinct_1mm_1deg_per_goal"):
        pooled[key] = _nanmean([m[key] for m in per_arm])
    pooled["seconds"] = float(sum(s.seconds for s in sols))
    return pooled


def _nanmean(values: list[float]) -> float:
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[~np.isnan(arr)]
    return float(arr.mean()) if arr.size else float("nan")


def _mean_dicts(ds: list[dict]):
    if isinstance(ds[0], dict):
        return {k: _mean_dicts([d[k] for d in ds]) for k in ds[0]}
    return _nanmean(ds)
