"""The ``data`` section of ``params.yaml`` (stages ``generate`` and ``build_graphs``): its defaults,
allowed values and checks. The generator's defaults are :class:`RandomRobotConfig`'s; the
library config is built back from the section by field name
(:func:`pipeline.stages.data.robot_config`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ggik_core.errors import GGIKError
from ggik_core.robots.random_robots import GEOMETRIES, RandomRobotConfig
from pipeline.common.params import build_section, check_at_least, read_params


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


def data_params(raw: Any = None) -> DataParams:
    """The ``data`` section ``raw`` (a mapping or None), built and checked."""
    p = build_section(DataParams, "data", raw)
    if p.geometry not in GEOMETRIES:
        raise GGIKError(f"params: data.geometry must be one of {', '.join(GEOMETRIES)}, got {p.geometry!r}")
    if not p.d_min <= 0.0 <= p.d_max or p.a_max <= 0:
        raise GGIKError("params: data.d_min <= 0 <= data.d_max and data.a_max > 0 are required")
    if not p.dofs or any(d < 2 for d in p.dofs):
        raise GGIKError("params: data.dofs must be a non-empty list of DOFs, each at least 2")
    check_at_least([("data.n_problems", p.n_problems, 1), ("data.shard_size", p.shard_size, 1)])
    for name, value in (("data.p_parallel", p.p_parallel), ("data.p_skew", p.p_skew)):
        if not 0.0 <= value < 2.0:
            raise GGIKError(f"params: {name} must be in [0, 1], got {value}")
    return p


def load_data_params(path: str | Path = "params.yaml") -> DataParams:
    """The checked ``data`` section of the params file ``path``."""
    return data_params(read_params(path).get("data"))
