"""The kernels' shared primitives: the one-instruction bf16 store rounds as torch does."""

from __future__ import annotations

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


def test_the_bf16_store_rounds_to_nearest_even_as_torch_does():
    """Values on both sides of rounding ties, ties themselves, and a wide range of magnitudes and
    signs (normal numbers: the AVX-512 instruction flushes denormals, which never occur here)."""
    g = torch.Generator().manual_seed(0)
    wide = torch.randn(20000, generator=g) * torch.logspace(-30, 30, 20000)
    bits = torch.arange(0x3F800000, 0x3F800000 + 4096, dtype=torch.int64).to(torch.int32)
    ties = bits.view(torch.float32)  # every low-16-bit pattern above 1.0, ties included
    values = torch.cat([wide, ties, -ties, torch.tensor([0.0, -0.0, 65504.0, 3.0e38, -3.0e38])])
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
