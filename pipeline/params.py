"""Typed views of ``params.yaml``, one dataclass per stage: the one place defaults are stated.

* ``model`` *is* the library's :class:`~ggik_core.model.config.ModelConfig`;
* ``data`` takes its generator defaults from :class:`~ggik_core.robots.random_robots.RandomRobotConfig`
  and ``eval`` its tolerances from :class:`~ggik_core.solve.refine.RefineConfig`; the library
  configs are built back from them by field name (:func:`pick`), never field by field;
* ``params.yaml`` states the same defaults (a test checks that it equals :class:`Params`).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from ggik_core.errors import GGIKError
from ggik_core.model.config import ModelConfig
from ggik_core.robots.random_robots import GEOMETRIES, RandomRobotConfig
from ggik_core.solve.refine import RefineConfig

T = TypeVar("T")


@dataclass(frozen=True)
class DataParams:
    seed: int = 0
    n_problems: int = 40000
    dofs: tuple[int, ...] = (6, 7)
    #: robots to train on instead of random ones: catalog names, URDF or DH YAML files (their
    #: configurations are sampled inside their limits; data.dofs and the generator are then unused)
    robots: tuple[str, ...] = ()
    geometry: str = RandomRobotConfig.geometry
    p_parallel: float = RandomRobotConfig.p_parallel
    p_skew: float = RandomRobotConfig.p_skew
    d_min: float = RandomRobotConfig.d_min
    d_max: float = RandomRobotConfig.d_max
    a_max: float = RandomRobotConfig.a_max
    shard_size: int = 100000


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


@dataclass(frozen=True)
class EvalParams:
    seed: int = 1
    problems_per_arm: int = 100
    samples: int = 32
    passes: int = 2  # re-encoding passes of the model's samples (0: GGIK's one-pass sampler only)
    relax: float = 1.0  # over-relaxation of the passes after the first (1: the plain chain; GGIK.sample)
    refine_max_iter: int = 30
    refine_pos_tol: float = RefineConfig.pos_tol
    refine_rot_tol: float = RefineConfig.rot_tol
    # evaluation measures the model's own samples, refined: no random re-seeds, no extra seeds
    refine_restart_after: int = 0
    refine_extra_seeds: float = 0.0
    distinct_tol: float = 0.05


@dataclass(frozen=True)
class Params:
    data: DataParams = field(default_factory=DataParams)
    model: ModelParams = field(default_factory=ModelParams)
    train: TrainParams = field(default_factory=TrainParams)
    eval: EvalParams = field(default_factory=EvalParams)


def pick(cls: type[T], source: Any, prefix: str = "") -> T:
    """A library config ``cls`` from the fields of ``source`` named ``prefix + field`` (the others
    keep ``cls``'s defaults): no field is copied by hand."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{n: getattr(source, prefix + n) for n in names if hasattr(source, prefix + n)})


def _build(cls: type[T], section: str, raw: Any) -> T:
    if raw is None:
        return cls()
    if not isinstance(raw, dict):
        raise GGIKError(f"params: section {section!r} must be a mapping")
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(raw) - set(names)
    if unknown:
        raise GGIKError(f"params: unknown key(s) {sorted(unknown)} in section {section!r}")
    kwargs = {}
    for key, value in raw.items():
        default = getattr(cls(), key)
        try:
            if isinstance(default, bool):
                if not isinstance(value, bool):
                    raise TypeError
                kwargs[key] = value
            elif isinstance(default, tuple):
                elem = typing.get_args(typing.get_type_hints(cls)[key])[0]
                kwargs[key] = tuple(elem(v) for v in (value if isinstance(value, (list, tuple)) else [value]))
            else:
                kwargs[key] = type(default)(value)
        except (TypeError, ValueError):
            raise GGIKError(f"params: {section}.{key} = {value!r} is not a valid {type(default).__name__}") from None
    return cls(**kwargs)


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.exists():
        raise GGIKError(f"params file {path} not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise GGIKError(f"params file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise GGIKError(f"params file {path} must be a mapping of sections")
    p = Params(
        data=_build(DataParams, "data", raw.get("data")),
        model=_build(ModelParams, "model", raw.get("model")),
        train=_build(TrainParams, "train", raw.get("train")),
        eval=_build(EvalParams, "eval", raw.get("eval")),
    )
    if p.data.geometry not in GEOMETRIES:
        raise GGIKError(f"params: data.geometry must be one of {', '.join(GEOMETRIES)}, got {p.data.geometry!r}")
    if not p.data.d_min <= 0.0 <= p.data.d_max or p.data.a_max <= 0:
        raise GGIKError("params: data.d_min <= 0 <= data.d_max and data.a_max > 0 are required")
    try:
        p.model.check()
    except ValueError as exc:
        raise GGIKError(f"params: {exc}") from None
    if p.train.deterministic.lower() not in ("auto", "true", "false"):
        raise GGIKError(f"params: train.deterministic must be auto, true or false, got {p.train.deterministic!r}")
    if p.train.lr_schedule not in ("step", "cosine"):
        raise GGIKError(f"params: train.lr_schedule must be step or cosine, got {p.train.lr_schedule!r}")
    if not 0.0 <= p.train.warmup_fraction < 1.0:
        raise GGIKError(f"params: train.warmup_fraction must be in [0, 1), got {p.train.warmup_fraction}")
    if p.train.precision not in ("fp32", "tf32", "bf16"):
        raise GGIKError(f"params: train.precision must be fp32, tf32 or bf16, got {p.train.precision!r}")
    if p.train.kernels not in ("fused", "eager"):
        raise GGIKError(f"params: train.kernels must be fused or eager, got {p.train.kernels!r}")
    _validate(p)
    return p


def _validate(p: Params) -> None:
    """Values that load but cannot run: one clear line each."""
    if not p.data.dofs or any(d < 2 for d in p.data.dofs):
        raise GGIKError("params: data.dofs must be a non-empty list of DOFs, each at least 2")
    checks = [
        ("data.n_problems", p.data.n_problems, 1),
        ("data.shard_size", p.data.shard_size, 1),
        ("model.hidden", p.model.hidden, 1),
        ("model.layers", p.model.layers, 1),
        ("model.latent", p.model.latent, 1),
        ("model.components", p.model.components, 1),
        ("model.message", p.model.message, 1),
        ("train.epochs", p.train.epochs, 1),
        ("train.batch_size", p.train.batch_size, 1),
        ("train.lr_step_epochs", p.train.lr_step_epochs, 1),
        ("train.log_every", p.train.log_every, 1),
        ("train.probes", p.train.probes, 0),
        ("train.probe_goals", p.train.probe_goals, 1),
        ("eval.problems_per_arm", p.eval.problems_per_arm, 1),
        ("eval.samples", p.eval.samples, 1),
        ("eval.passes", p.eval.passes, 0),
    ]
    for name, value, low in checks:
        if value < low:
            raise GGIKError(f"params: {name} must be at least {low}, got {value}")
    if not (math.isfinite(p.eval.relax) and p.eval.relax > 0):
        raise GGIKError(f"params: eval.relax must be a finite positive number, got {p.eval.relax}")
    for name, value in (("data.p_parallel", p.data.p_parallel), ("data.p_skew", p.data.p_skew), ("train.val_fraction", p.train.val_fraction)):
        if not 0.0 <= value < 1.0 + (name != "train.val_fraction"):
            raise GGIKError(f"params: {name} must be in [0, 1], got {value}")
    for name, value in (("train.lr", p.train.lr), ("train.beta", p.train.beta), ("train.free_bits", p.train.free_bits), ("train.consistency", p.train.consistency), ("train.grad_clip", p.train.grad_clip), ("train.weight_decay", p.train.weight_decay),
                        ("train.lr_gamma", p.train.lr_gamma), ("train.anchor_weight", p.train.anchor_weight), ("train.node_weight", p.train.node_weight)):
        if not math.isfinite(value) or value < 0 or (name == "train.lr" and value == 0):
            raise GGIKError(f"params: {name} must be a finite {'positive' if name == 'train.lr' else 'non-negative'} number, got {value}")
