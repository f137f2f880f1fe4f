"""The kernels' shared primitives: the bf16 store rounds as torch does, with the one-instruction
store where this CPU has it and with the integer fallback (compiled for a generic CPU in a
subprocess) everywhere."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ggik_core.model.fused.kernels import native_bf16, primitives


def _stored(values: np.ndarray) -> np.ndarray:
    import numba as nb

    st = primitives("bf16").st

    @nb.njit
    def store(v, out):
        for n in range(v.shape[0]):
            out[n] = st(v[n])

    out = np.empty(values.shape, np.uint16)
    store(values, out)
    return out


def rounding_cases() -> torch.Tensor:
    """Values on both sides of rounding ties, ties themselves, and a wide range of magnitudes and
    signs (normal numbers: the AVX-512 instruction flushes denormals, which never occur here)."""
    g = torch.Generator().manual_seed(0)
    wide = torch.randn(20000, generator=g) * torch.logspace(-30, 30, 20000)
    # every low-16-bit pattern for two bf16 values above 1.0 (an even and an odd one), ties included,
    # and the ties (low bits 0x8000) of 4096 bf16 values of every magnitude
    bits = torch.cat([torch.arange(0x3F800000, 0x3F800000 + 0x20000, dtype=torch.int64),
                      torch.randint(0x0080, 0x7F7F, (4096,), generator=g) * 0x10000 + 0x8000]).to(torch.int32)
    ties = bits.view(torch.float32)
    assert ((bits & 0xFFFF) == 0x8000).sum() > 4000
    return torch.cat([wide, ties, -ties, torch.tensor([0.0, -0.0, 65504.0, 3.0e38, -3.0e38])])


def test_the_bf16_store_rounds_to_nearest_even_as_torch_does():
    values = rounding_cases()
    got = _stored(values.numpy())
    want = values.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(got, want)


@pytest.mark.skipif(not native_bf16(), reason="this CPU has no AVX-512 BF16")
def test_the_native_store_is_the_instruction():
    """On a CPU with AVX-512 BF16 the store compiles to ``vcvtneps2bf16``."""
    import numba as nb

    st = primitives("bf16").st

    @nb.njit(fastmath=True)
    def store(v, out):
        for n in range(v.shape[0]):
            out[n] = st(v[n])

    store(np.ones(64, np.float32), np.empty(64, np.uint16))
    assert "vcvtneps2bf16" in store.inspect_asm(store.signatures[0])


FALLBACK = """
import numpy as np, torch
from ggik_core.model.fused.kernels import native_bf16
import test_kernels as t
assert not native_bf16(), "numba still compiles for AVX-512 BF16"
values = t.rounding_cases()
got = t._stored(values.numpy())
want = values.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
bad = np.flatnonzero(got != want)
print(len(bad), "of", len(values), "rounded unlike torch", values[bad[:3]].tolist())
raise SystemExit(1 if len(bad) else 0)
"""


def test_the_integer_fallback_store_rounds_to_nearest_even_as_torch_does():
    """The store without AVX-512 BF16 (numba compiling for a generic x86-64 CPU) rounds ties to even."""
    env = {**os.environ, "NUMBA_CPU_NAME": "generic", "NUMBA_CPU_FEATURES": "", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[3]), str(Path(__file__).parent)])}
    res = subprocess.run([sys.executable, "-c", FALLBACK], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
