"""Checkpoint I/O and run fingerprints: what a checkpoint must match to be resumed, the hash of
the training code, and checkpoints that cannot be used set aside."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

import torch

from ggik_core.data.io import sha256_file
from ggik_core.model.config import ModelConfig
from pipeline.common.progress import stderr
from pipeline.stages.train.distributed import Dist
from pipeline.stages.train.params import TrainingParams, TrainParams


def fingerprint(params: TrainingParams, manifest: Path) -> dict:
    """What a checkpoint must match to be resumed: time limits and threads may change, and so may
    the number of epochs under the step schedule (the cosine schedule spans all epochs, so a run
    with more epochs is another run). The code that computes a training step counts too
    (:func:`training_code_hash`): ``dvc repro`` reruns this stage when that code changes, and
    resuming a checkpoint that older code finished would hand back the older model."""
    return {"model": asdict(params.model), "train": fingerprint_train(params.train), "data": sha256_file(manifest),
            "code": training_code_hash()}


#: the modules whose source defines a training step: the model, the batches, this loop
TRAINING_CODE = ("ggik_core.model", "ggik_core.data", "pipeline.stages.train")


def training_code_hash() -> str:
    """SHA-256 of the source files of :data:`TRAINING_CODE` (a package's every ``.py`` file, its
    sub-packages' included), in a fixed order: equal on every machine that runs the same code."""
    import hashlib
    import importlib

    h = hashlib.sha256()
    for name in TRAINING_CODE:
        mod = importlib.import_module(name)
        root = Path(mod.__file__).parent
        files = sorted(root.rglob("*.py")) if hasattr(mod, "__path__") else [Path(mod.__file__)]
        for f in files:
            h.update(f"{name}/{f.relative_to(root) if hasattr(mod, '__path__') else f.name}\0".encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def fingerprint_train(train: TrainParams) -> dict:
    """The train settings a resumed run must share (:func:`fingerprint`)."""
    tp = asdict(train)
    for key in ("max_minutes", "num_threads", "log_every", "probes", "probe_goals") + (("epochs",) if train.lr_schedule == "step" else ()):
        tp.pop(key)
    return tp


def same_run(saved: dict | None, fp: dict) -> bool:
    """Whether a checkpoint's fingerprint matches this run's (:func:`fingerprint`). A model or
    train setting added after the checkpoint was written counts as its default, so checkpoints
    stay resumable by runs that leave the new setting alone; a checkpoint written before the code
    hash was recorded is taken as made by this code."""
    if not saved:
        return False
    model = {**asdict(ModelConfig()), **saved.get("model", {})}
    train = {**fingerprint_train(TrainParams()), **saved.get("train", {})}
    merged = {**saved, "model": model, "train": train}
    if "code" in fp:
        merged["code"] = saved.get("code", fp["code"])
    return merged == fp


def read_checkpoint(path: Path, env: Dist) -> dict | None:
    """The checkpoint, or None when it cannot be read (it is kept aside as ``*.corrupt``)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(ckpt, dict):
            raise TypeError(f"expected a dict, got {type(ckpt).__name__}")
        return ckpt
    except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is handled the same way
        if env.main:
            set_aside(path, ".corrupt", f"is unreadable ({type(exc).__name__})")
        return None


def set_aside(path: Path, suffix: str, why: str) -> None:
    """Moves the checkpoint ``path`` to ``path`` + ``suffix``, where the fresh run's first epoch
    cannot overwrite it, and says ``why`` on stderr."""
    aside = path.with_suffix(path.suffix + suffix)
    os.replace(path, aside)
    stderr.print(f"{path} {why}: moved it to {aside} and starting afresh")
