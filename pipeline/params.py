"""Typed views of ``params.yaml``, one dataclass per stage."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from ggik_core.errors import GGIKError

T = TypeVar("T")


@dataclass(frozen=True)
class DataParams:
    seed: int = 0
    n_problems: int = 20000
    dofs: tuple[int, ...] = (6, 7)
    geometry: str = "coplanar"
    p_parallel: float = 0.25
    p_skew: float = 0.5
    shard_size: int = 100000


@dataclass(frozen=True)
class ModelParams:
    layer: str = "egnn"
    hidden: int = 64
    layers: int = 3
    latent: int = 8
    components: int = 8
    message: int = 64


@dataclass(frozen=True)
class TrainParams:
    seed: int = 0
    epochs: int = 10
    batch_size: int = 128
    lr: float = 3e-4
    weight_decay: float = 0.01
    lr_step_epochs: int = 60
    lr_gamma: float = 0.5
    val_fraction: float = 0.05
    beta: float = 1.0
    beta_warmup_epochs: int = 3
    anchor_weight: float = 1.0
    node_weight: float = 10.0
    deterministic: bool = True
    max_minutes: float = 0.0  # stop a chunk after this many minutes (0: no limit); resume continues
    num_threads: int = 0  # 0: torch's default


@dataclass(frozen=True)
class EvalParams:
    seed: int = 1
    problems_per_arm: int = 100
    samples: int = 32
    refine_max_iter: int = 30
    refine_pos_tol: float = 1e-5
    refine_rot_tol: float = 1e-4
    distinct_tol: float = 0.05


@dataclass(frozen=True)
class Params:
    data: DataParams = field(default_factory=DataParams)
    model: ModelParams = field(default_factory=ModelParams)
    train: TrainParams = field(default_factory=TrainParams)
    eval: EvalParams = field(default_factory=EvalParams)


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
                kwargs[key] = tuple(int(v) for v in (value if isinstance(value, (list, tuple)) else [value]))
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
    if p.data.geometry not in ("coplanar", "noncoplanar"):
        raise GGIKError(f"params: data.geometry must be coplanar or noncoplanar, got {p.data.geometry!r}")
    if p.model.layer not in ("egnn", "egat"):
        raise GGIKError(f"params: model.layer must be egnn or egat, got {p.model.layer!r}")
    if any(d < 2 for d in p.data.dofs):
        raise GGIKError("params: data.dofs must be at least 2")
    return p
