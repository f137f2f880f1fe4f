"""The ``eval`` section of ``params.yaml`` (stage ``evaluate``): defaults and checks. Its refinement
tolerances default to :class:`~ggik_core.solve.config.RefineConfig`'s."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ggik_core.errors import GGIKError
from ggik_core.model.fused.inference import SAMPLING_KERNELS
from ggik_core.solve.config import RefineConfig
from pipeline.common.params import build_section, check_at_least, read_params


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
    kernels: str = "fused"  # sampling: fused CPU kernels (bf16 products where native) | eager: torch ops in float32


def eval_params(raw: Any = None) -> EvalParams:
    """The ``eval`` section ``raw`` (a mapping or None), built and checked."""
    e = build_section(EvalParams, "eval", raw)
    check_at_least([("eval.problems_per_arm", e.problems_per_arm, 1), ("eval.samples", e.samples, 1), ("eval.passes", e.passes, 0)])
    if e.kernels not in SAMPLING_KERNELS:
        raise GGIKError(f"params: eval.kernels must be {' or '.join(SAMPLING_KERNELS)}, got {e.kernels!r}")
    if not (math.isfinite(e.relax) and e.relax > 0):
        raise GGIKError(f"params: eval.relax must be a finite positive number, got {e.relax}")
    return e


def load_eval_params(path: str | Path = "params.yaml") -> EvalParams:
    """The checked ``eval`` section of the params file ``path``."""
    return eval_params(read_params(path).get("eval"))
