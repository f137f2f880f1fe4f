"""``ggik ship``: put a trained model into the package with its params, training time and metrics.

Writes ``ggik_core/weights/NAME.pt`` (the model file, unchanged) and ``NAME.json`` (its card): the
command that reproduces it, the run's ``params.yaml``, the training record (minutes, epochs,
device, best validation losses) and, per arm and overall, the evaluation figures the README
quotes (raw median, best of k, refined share within 1 mm & 1°, distinct solutions per goal).
The inputs are a finished run's files: ``params.yaml``, the model, the training record DVCLive
keeps in ``metrics/train/`` and ``metrics/eval_detail.json``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from ggik_core.data.io import atomic_path, read_json, write_json
from ggik_core.errors import DataError, GGIKError
from pipeline.common.metrics_files import EVAL_DETAIL, TRAIN_SUMMARY, loss_minima, read_losses


def _summary(block: dict) -> dict:
    """The quoted figures of one arm (or the overall block) of ``eval_detail.json``."""
    raw, refined = block["raw"], block["refined"]
    return {
        "raw_median_mm": raw["position_mm"]["median"],
        "raw_median_deg": raw["rotation_deg"]["median"],
        "best_of_k_median_mm": raw["best_of_k_position_mm"]["median"],
        "refined_within_1mm_1deg": refined["success"]["1mm_1deg"],
        "goals_solved_refined": refined["goal_success"]["1mm_1deg"],
        "distinct_per_goal_refined": refined["distinct_1mm_1deg_per_goal"],
    }


def training_losses(metrics_dir: Path):
    """The per-epoch losses and minutes of the run's training record."""
    try:
        losses = read_losses(metrics_dir)
    except DataError as exc:
        raise GGIKError(f"ship: {exc}") from None
    if "minutes" not in losses.columns:
        raise GGIKError(f"ship: the training record in {metrics_dir} has no minutes")
    return losses


def make_card(name: str, preset: str, params_path: Path, metrics_dir: Path) -> dict:
    if not params_path.is_file():
        raise GGIKError(f"ship: {params_path} not found")
    params = yaml.safe_load(params_path.read_text())
    train = read_json(metrics_dir / TRAIN_SUMMARY)
    ev = read_json(metrics_dir / EVAL_DETAIL)
    losses = training_losses(metrics_dir)
    minima = loss_minima(losses)
    robots = params.get("data", {}).get("robots") or []
    return {
        "name": name,
        "preset": preset,
        "trained_on": robots or f"random robots ({'/'.join(map(str, params['data']['dofs']))} DOF)",
        "training": {
            "minutes": round(float(losses["minutes"].iloc[-1]), 2),
            "epochs": train["epochs_done"],
            "complete": train["complete"],
            "device": train["device"],
            "threads": params["train"].get("num_threads", 0),
            "val_rec_min": minima["val"]["rec_min"],
            "val_kl_min": minima["val"]["kl_min"],
        },
        "eval": {
            "problems_per_arm": ev["params"]["problems_per_arm"],
            "samples": ev["params"]["samples"],
            "arms": {arm: _summary(block) for arm, block in ev["arms"].items()},
            "overall": _summary(ev["overall"]),
        },
        "params": params,
    }


def ship(name: str, model: Path, params_path: Path, metrics_dir: Path, preset: str, out_dir: Path) -> Path:
    """Check that ``model`` loads, then write ``out_dir/NAME.pt`` and ``NAME.json`` atomically."""
    import torch

    from ggik_core.model.files import load_model

    if not model.is_file():
        raise GGIKError(f"ship: model {model} not found")
    load_model(model, torch.device("cpu"))  # a clear error if it is not a ggik model
    card = make_card(name, preset, params_path, metrics_dir)
    target = out_dir / f"{name}.pt"
    with atomic_path(target) as tmp:
        shutil.copyfile(model, tmp)
    write_json(out_dir / f"{name}.json", card)
    return target
