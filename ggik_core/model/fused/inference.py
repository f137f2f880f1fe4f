"""Sampling at the CPU's speed: the fused kernels without autograd, and bf16 products where the CPU
has them.

:func:`inference_kernels` runs a block of no-grad model calls (decoding, re-encoding) through the
layers' fused implementations on a CPU model: forward kernels compiled without the stores that
only a backward pass reads (:func:`~ggik_core.model.fused.edge_kernels.kernels` with
``store=False``), and, on a CPU with native bf16 (AVX-512 BF16), the per-edge products in bf16
under autocast as training runs them, coordinates in float32. Elsewhere the kernels compute in
float32. The layers' previous bindings come back afterwards.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager, nullcontext
from typing import Iterator

import torch
from torch import nn

from ggik_core.model.config import KERNELS
from ggik_core.model.fused.kernels import native_bf16

#: how ``kernels="fused"`` samples: fused CPU kernels, bf16 products where native; "eager": torch ops in float32
SAMPLING_KERNELS = KERNELS


@contextmanager
def inference_kernels(model: nn.Module, kernels: str = "fused") -> Iterator[None]:
    """Within the block, the CPU model ``model`` (a :class:`~ggik_core.model.cvae.GGIK`) runs its
    layers' dense path as ``kernels`` says (:data:`SAMPLING_KERNELS`); a model on another device,
    or whose layers the fused kernels do not match, runs as it is."""
    if kernels not in SAMPLING_KERNELS:
        raise ValueError(f"kernels must be {' or '.join(SAMPLING_KERNELS)}, got {kernels!r}")
    on_cpu = next(model.parameters()).device.type == "cpu"
    if kernels == "eager" or not on_cpu:
        with torch.autocast("cpu", enabled=False) if on_cpu else nullcontext():
            yield
        return
    layers = [m for m in model.modules() if hasattr(m, "use_kernels") and hasattr(m, "layer_name")]
    before = [layer.fused for layer in layers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a layer that does not match runs eagerly
        model.use_kernels("fused")
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=native_bf16()):
            yield
    finally:
        for layer, fused in zip(layers, before):
            layer.use_kernels(fused)
