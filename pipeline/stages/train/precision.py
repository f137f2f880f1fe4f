"""Precision and determinism of training: ``train.precision`` and ``train.deterministic``."""

from __future__ import annotations

import contextlib
import os
import random

import numpy as np
import torch

from ggik_core.runtime import set_threads
from pipeline.stages.train.params import TrainParams


def deterministic_for(tp: TrainParams, device: torch.device) -> bool:
    """``train.deterministic``: ``auto`` is on for the CPU (free there) and off on CUDA (where
    deterministic kernels slow training; the dense layer path has no scatter either way)."""
    mode = tp.deterministic.lower()
    return device.type != "cuda" if mode == "auto" else mode == "true"


def set_determinism(tp: TrainParams, device: torch.device = torch.device("cpu")) -> None:
    torch.manual_seed(tp.seed)
    random.seed(tp.seed)
    np.random.seed(tp.seed)
    set_threads(tp.num_threads)
    if deterministic_for(tp, device):
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def precision_context(precision: str, device: torch.device):
    """``train.precision``: bf16 autocast of the feature path (coordinates and losses stay fp32);
    ``tf32``: fp32 tensors with TF32 matrix products on CUDA (10-bit mantissa, fp32 range; the
    same as fp32 on the CPU); or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "tf32" and device.type == "cuda":
        return TF32Matmuls()
    return contextlib.nullcontext()


class TF32Matmuls:
    """A reusable context (entered every step) under which fp32 matrix products may use TF32."""

    def __enter__(self) -> None:
        self.before = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("high")

    def __exit__(self, *exc: object) -> None:
        torch.set_float32_matmul_precision(self.before)
