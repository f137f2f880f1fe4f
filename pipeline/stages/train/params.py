"""The ``train`` and ``model`` sections of ``params.yaml`` (stage ``train``): defaults, allowed
values and checks. The ``model`` section *is* the library's
:class:`~ggik_core.model.config.ModelConfig`, which owns its choices (the registered layers) and
rules; :func:`model_params` is the one place that reads it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ggik_core.errors import GGIKError
from ggik_core.model.config import KERNELS, ModelConfig
from pipeline.common.params import build_section, check_at_least, one_of, read_params
from pipeline.stages.data_params import DataParams, data_params

ModelParams = ModelConfig


@dataclass(frozen=True)
class TrainParams:
    seed: int = 0
    epochs: int = 5
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 0.01
    lr_schedule: str = "cosine"  # step (x lr_gamma every lr_step_epochs) | cosine (warm-up, then cosine to 0, per batch)
    lr_step_epochs: int = 4
    lr_gamma: float = 0.5
    warmup_fraction: float = 0.05  # cosine: share of all steps spent warming up
    val_fraction: float = 0.05
    beta: float = 1.0
    beta_warmup_epochs: int = 4
    beta_start: float = 0.01  # >0: beta rises geometrically from beta_start to beta (0: linearly from 0)
    free_bits: float = 0.0  # nats per node: the KL term is max(KL, free_bits) (against posterior collapse)
    consistency: float = 0.0  # weight of the prior-consistency term (decoded prior samples keep the known distances)
    ema: float = 0.0  # decay of an exponential moving average of the weights, which is probed and saved as model.pt (0: off)
    grad_clip: float = 10.0  # the gradient's global norm is clipped to this before each step (0: no clipping)
    anchor_weight: float = 1.0
    node_weight: float = 10.0
    deterministic: str = "auto"  # auto (on for CPU, off on CUDA) | true | false
    max_minutes: float = 0.0  # stop a chunk after this many minutes (0: no limit); resume continues
    num_threads: int = 0  # 0: automatic (ggik_core.runtime.pick_threads: free cores, or GGIK_THREADS)
    precision: str = "bf16"  # bf16 (autocast of the feature path; coordinates and losses stay fp32) | tf32 (CUDA) | fp32
    kernels: str = "fused"  # fused: the layers' per-edge blocks in fused CPU kernels (ggik_core.model.fused) where their structure matches | eager: torch ops
    log_every: int = 20  # steps between reads of the device-side loss sums (the only host syncs)
    probes: int = 10  # accuracy probes (raw samples in mm on data.robots, else the five arms) evenly spaced over the run; 0: none
    probe_goals: int = 16  # goals per arm in each probe (32 samples each)


#: the values of the choice fields of :class:`TrainParams` (``deterministic`` compared in lower case)
TRAIN_CHOICES = {"deterministic": ("auto", "true", "false"), "lr_schedule": ("step", "cosine"),
                 "precision": ("fp32", "tf32", "bf16"), "kernels": KERNELS}

#: ``train`` fields that must be finite and non-negative (``lr`` positive)
NON_NEGATIVE = ("lr", "beta", "free_bits", "consistency", "grad_clip", "weight_decay", "lr_gamma", "anchor_weight", "node_weight")


def model_params(raw: Any = None) -> ModelConfig:
    """The ``model`` section ``raw`` (a mapping or None: the defaults), built and checked against
    ``ggik_core.model.config`` (its choices and rules)."""
    m = build_section(ModelConfig, "model", raw)
    try:
        m.check()  # the registered layers, the other choices and the cross-field rules
    except ValueError as exc:
        raise GGIKError(f"params: {exc}") from None
    check_at_least([("model.hidden", m.hidden, 1), ("model.layers", m.layers, 1), ("model.latent", m.latent, 1),
                    ("model.components", m.components, 1), ("model.message", m.message, 1)])
    return m


def train_params(raw: Any = None) -> TrainParams:
    """The ``train`` section ``raw`` (a mapping or None), built and checked."""
    t = build_section(TrainParams, "train", raw)
    for key, choices in TRAIN_CHOICES.items():
        value = getattr(t, key)
        if (value.lower() if key == "deterministic" else value) not in choices:
            raise GGIKError(f"params: train.{key} must be {one_of(choices)}, got {value!r}")
    if not 0.0 <= t.warmup_fraction < 1.0:
        raise GGIKError(f"params: train.warmup_fraction must be in [0, 1), got {t.warmup_fraction}")
    check_at_least([("train.epochs", t.epochs, 1), ("train.batch_size", t.batch_size, 1), ("train.lr_step_epochs", t.lr_step_epochs, 1),
                    ("train.log_every", t.log_every, 1), ("train.probes", t.probes, 0), ("train.probe_goals", t.probe_goals, 1)])
    if not 0.0 <= t.ema < 1.0:
        raise GGIKError(f"params: train.ema must be in [0, 1) (0: no weight average), got {t.ema}")
    if not 0.0 <= t.val_fraction < 1.0:
        raise GGIKError(f"params: train.val_fraction must be in [0, 1], got {t.val_fraction}")
    for key in NON_NEGATIVE:
        value = getattr(t, key)
        if not math.isfinite(value) or value < 0 or (key == "lr" and value == 0):
            raise GGIKError(f"params: train.{key} must be a finite {'positive' if key == 'lr' else 'non-negative'} number, got {value}")
    return t


@dataclass(frozen=True)
class TrainingParams:
    """What the ``train`` stage reads: ``data`` (the probes sample ``data.robots``), ``model`` and ``train``."""

    data: DataParams = field(default_factory=DataParams)
    model: ModelParams = field(default_factory=model_params)
    train: TrainParams = field(default_factory=TrainParams)


def training_params(raw: dict) -> TrainingParams:
    """The sections of the ``train`` stage from the parsed file ``raw``, built and checked."""
    return TrainingParams(data=data_params(raw.get("data")), model=model_params(raw.get("model")), train=train_params(raw.get("train")))


def load_training_params(path: str | Path = "params.yaml") -> TrainingParams:
    """The checked sections of the ``train`` stage in the params file ``path``."""
    return training_params(read_params(path))
