r"""What the fused CPU kernels share (the edge block, :mod:`ggik_core.model.fused.edges`, and the
node update, :mod:`ggik_core.model.fused.node`): the compute modes, the numba primitives they are built from
(SiLU's sigmoid, bf16 loads and stores, the edge geometry, the first linear map of an edge MLP) and
the thread and array plumbing between torch and numba. numba is imported on first use.
"""

from __future__ import annotations

import functools
import math
from types import SimpleNamespace

import numpy as np
import torch
from torch import Tensor

from ggik_core.model.layers.base import DIST_SQ_EPS

#: the coefficients of the rational tanh on [-9, 9] used for float32 (odd numerator of degree 13,
#: even denominator of degree 6); beyond 9, tanh is 1 to float32 precision
_TANH_P = (4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05, 5.12229709037114e-08,
           -8.60467152213735e-11, 2.00018790482477e-13, -2.76076847742355e-16)
_TANH_Q = (4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04, 1.19825839466702e-06)


#: how the kernels compute and store: compute dtype, and whether edge tensors are bf16 (their bit
#: patterns, as uint16) or stored in the compute dtype
MODES = {"float64": ("float64", False), "float32": ("float32", False), "bf16": ("float32", True)}


def kernel_mode(dtype: torch.dtype) -> str:
    """The kernels' mode for coordinates of ``dtype``: "bf16" under CPU bf16 autocast (float32
    coordinates), otherwise the dtype's own."""
    bf16 = torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    return "bf16" if bf16 and dtype == torch.float32 else str(dtype).removeprefix("torch.")


def _bit_casts():
    """numba intrinsics that reinterpret uint32 bits as float32 and back (no conversion)."""
    from llvmlite import ir
    from numba.core import types
    from numba.extending import intrinsic

    @intrinsic
    def as_float(typingctx, u):
        def codegen(context, builder, sig, args):
            return builder.bitcast(args[0], ir.FloatType())
        return types.float32(types.uint32), codegen

    @intrinsic
    def as_bits(typingctx, v):
        def codegen(context, builder, sig, args):
            return builder.bitcast(args[0], ir.IntType(32))
        return types.uint32(types.float32), codegen

    return as_float, as_bits


def native_bf16() -> bool:
    """Whether numba compiles for a CPU that rounds float32 to bf16 in one instruction (AVX-512 BF16's
    ``vcvtneps2bf16``, round to nearest even): then :func:`primitives`' store uses it; elsewhere LLVM
    would call a runtime routine that numba does not link, so the store rounds with integer operations
    (the same result for every normal number)."""
    import numba as nb
    from llvmlite import binding

    if nb.config.CPU_NAME or nb.config.CPU_FEATURES:  # compiling for another CPU than this one
        return "+avx512bf16" in (nb.config.CPU_FEATURES or "")
    return bool(binding.get_host_cpu_features().get("avx512bf16", False))


def _bf16_store():
    """A numba intrinsic that rounds a float32 to bf16 and returns its bits (uint16), as LLVM's
    ``fptrunc`` to ``bfloat`` (needs :func:`native_bf16`)."""
    from llvmlite import ir
    from numba.core import types
    from numba.extending import intrinsic

    class BFloat(ir.Type):  # llvmlite's IR builder has no bfloat type; LLVM's name for it
        def _to_string(self) -> str:
            return "bfloat"

        def __eq__(self, other) -> bool:
            return isinstance(other, BFloat)

        def __hash__(self) -> int:
            return hash("bfloat")

    @intrinsic
    def to_bf16_bits(typingctx, v):
        def codegen(context, builder, sig, args):
            return builder.bitcast(builder.fptrunc(args[0], BFloat()), ir.IntType(16))
        return types.uint16(types.float32), codegen

    return to_bf16_bits


@functools.lru_cache(maxsize=None)
def primitives(mode: str) -> SimpleNamespace:
    """The inlined building blocks of the kernels for ``mode`` (:data:`MODES`), with the scalar
    type ``f``, its constants and the decorators ``par`` (a parallel kernel) and ``jit``."""
    import numba as nb

    dtype, bf16 = MODES[mode]
    f = np.dtype(dtype).type
    exact = dtype == "float64"
    HALF, ONE, LIM, EPS = f(0.5), f(1.0), f(9.0), f(DIST_SQ_EPS)
    P0, P1, P2, P3, P4, P5, P6 = (f(c) for c in _TANH_P)
    Q0, Q1, Q2, Q3 = (f(c) for c in _TANH_Q)
    jit = nb.njit(fastmath=True, inline="always")
    par = nb.njit(parallel=True, fastmath=True)

    if bf16:
        as_float, as_bits = _bit_casts()
        SIXTEEN, ROUND, ONE_BIT = np.uint32(16), np.uint32(0x7FFF), np.uint32(1)

        @jit
        def ld(v):
            return as_float(np.uint32(v) << SIXTEEN)

        if native_bf16():
            st = _bf16_store()  # one instruction per 16 values once vectorised
        else:
            @jit
            def st(v):  # round to nearest even
                u = as_bits(v)
                return np.uint16((u + ROUND + ((u >> SIXTEEN) & ONE_BIT)) >> SIXTEEN)
    else:
        @jit
        def ld(v):
            return v

        @jit
        def st(v):
            return v

    if exact:
        @jit
        def sigmoid(p):
            return ONE / (ONE + math.exp(-p))
    else:
        @jit
        def sigmoid(p):
            y = min(max(HALF * p, -LIM), LIM)
            y2 = y * y
            num = y * (P0 + y2 * (P1 + y2 * (P2 + y2 * (P3 + y2 * (P4 + y2 * (P5 + y2 * P6))))))
            den = Q0 + y2 * (Q1 + y2 * (Q2 + y2 * Q3))
            return HALF + HALF * (num / den)

    @jit
    def geometry(x, b, i, j, diff):
        """``diff = x_i - x_j``; returns the squared distance and the clamped distance."""
        diff[0] = x[b, i, 0] - x[b, j, 0]
        diff[1] = x[b, i, 1] - x[b, j, 1]
        diff[2] = x[b, i, 2] - x[b, j, 2]
        d2 = diff[0] * diff[0] + diff[1] * diff[1] + diff[2] * diff[2]
        return d2, math.sqrt(max(d2, EPS))

    @jit
    def silu_grad(p, sg):
        """The derivative of SiLU at ``p`` from the sigmoid ``sg`` of ``p``."""
        return sg * (ONE + p * (ONE - sg))

    @jit
    def target(j, k):
        """The target node ``i`` of row ``k`` among source ``j``'s edges (every ``i != j``, in order)."""
        return k + 1 if k >= j else k

    return SimpleNamespace(nb=nb, f=f, ONE=ONE, EPS=EPS, jit=jit, par=par, ld=ld, st=st, sigmoid=sigmoid,
                           geometry=geometry, silu_grad=silu_grad, target=target)


@functools.lru_cache(maxsize=None)
def sized_primitives(mode: str, C: int, F: int) -> SimpleNamespace:
    """The building blocks of :func:`primitives` that loop over ``C`` channels and ``F`` edge
    features, with both counts compiled in: loops of a known length vectorise without remainder
    code (about 10 % faster kernels at 64 channels than with the counts read from the arrays)."""
    k = primitives(mode)
    jit, f, ld, st, geometry, sigmoid, silu_grad = k.jit, k.f, k.ld, k.st, k.geometry, k.sigmoid, k.silu_grad

    @jit
    def add_edge_terms(e, WT, first, b, i, j, p):
        """``p += W e_ij`` with ``W^T`` the rows ``first, first + 1, ...`` of ``WT`` (one edge)."""
        for m in range(F):
            em = e[b, j, i, m]
            for c in range(C):
                p[c] += WT[first + m, c] * em

    @jit
    def node_terms(ts, first, bias, b, i, j, p):
        """``p = t_i + bias + s_j`` from the per-node products ``ts`` (``t`` in the columns
        ``first, ..., first + C - 1``, ``s`` in the next ``C``; bf16 bits in bf16 mode)."""
        for c in range(C):
            p[c] = ld(ts[b, i, first + c]) + bias[c] + ld(ts[b, j, first + C + c])

    @jit
    def pre_activation(ts, bias, e, WeT, b, i, j, d2, p):
        """``p = t_i + b + s_j + W_d d2 + W_a e_ij`` (one edge, all channels; :func:`node_terms`
        from column 0): ``WeT`` holds :math:`W_d` in row 0 and :math:`W_a^T` below it."""
        node_terms(ts, 0, bias, b, i, j, p)
        for c in range(C):
            p[c] += WeT[0, c] * d2
        add_edge_terms(e, WeT, 1, b, i, j, p)

    @jit
    def silu_dot(r, w, S, G, b, q):
        """``sum_c w_c SiLU(r_c)`` over one edge's hidden pre-activations ``r``, storing ``SiLU(r)``
        in ``S[b, q]`` and its derivative in ``G[b, q]`` for the backward pass."""
        acc = f(0.0)
        for c in range(C):
            sg = sigmoid(r[c])
            a = r[c] * sg
            acc += w[c] * a
            S[b, q, c] = st(a)
            G[b, q, c] = st(silu_grad(r[c], sg))
        return acc

    @jit
    def silu_sum(r, w):
        """``sum_c w_c SiLU(r_c)`` without storing anything (inference)."""
        acc = f(0.0)
        for c in range(C):
            acc += w[c] * (r[c] * sigmoid(r[c]))
        return acc

    @jit
    def node_terms_backward(dp, first, b, i, j, g_ts):
        """Adds ``dp`` to the gradients of ``t_i`` and ``s_j`` in ``g_ts`` (:func:`node_terms`' layout)."""
        for c in range(C):
            g_ts[b, i, first + c] += dp[c]
            g_ts[b, j, first + C + c] += dp[c]

    @jit
    def edge_terms_backward(e, dp, first, b, i, j, g_WT):
        """Adds the gradient of :func:`add_edge_terms`' ``W^T`` rows for one edge, from ``dp``."""
        for m in range(F):
            em = e[b, j, i, m]
            for c in range(C):
                g_WT[b, first + m, c] += dp[c] * em

    @jit
    def pre_activation_backward(dA, G, e, WeT, x, b, i, j, q, p, diff, g_ts, g_WeT, g_x):
        """Backward of ``A = SiLU(p)`` through :func:`pre_activation` for edge ``(j, i)``, row ``q``
        of the edge tensors, from the SiLU derivative ``G`` the forward pass stored: adds to the
        gradients of ``t_i`` and ``s_j`` (``g_ts``), the per-graph ``WeT`` partial and ``x_i``,
        ``x_j`` (the distance term)."""
        d2, _ = geometry(x, b, i, j, diff)
        g_d2 = f(0.0)
        for c in range(C):
            dp = ld(dA[b, q, c]) * ld(G[b, q, c])
            p[c] = dp
            g_WeT[b, 0, c] += dp * d2
            g_d2 += dp * WeT[0, c]
        node_terms_backward(p, 0, b, i, j, g_ts)
        edge_terms_backward(e, p, 1, b, i, j, g_WeT)
        for m in range(3):
            gm = 2 * diff[m] * g_d2
            g_x[b, i, m] += gm
            g_x[b, j, m] -= gm

    return SimpleNamespace(add_edge_terms=add_edge_terms, node_terms=node_terms, pre_activation=pre_activation,
                           silu_dot=silu_dot, silu_sum=silu_sum, node_terms_backward=node_terms_backward,
                           edge_terms_backward=edge_terms_backward, pre_activation_backward=pre_activation_backward)


@functools.lru_cache(maxsize=None)
def _start_pool() -> None:
    """Starts numba's thread pool once, and puts torch's thread count back: starting numba's OpenMP
    layer resets it to every core (seen with torch 2.13 and numba 0.68; without this, training with
    one thread per process would run its torch ops on two)."""
    from numba.np.ufunc.parallel import _launch_threads

    n = torch.get_num_threads()
    _launch_threads()
    torch.set_num_threads(n)


def match_threads() -> None:
    """The kernels use as many threads as torch does (the process's share of the cores)."""
    import numba as nb

    _start_pool()
    n = max(1, min(torch.get_num_threads(), nb.config.NUMBA_NUM_THREADS))
    if nb.get_num_threads() != n:
        nb.set_num_threads(n)


def as_numpy(t: Tensor) -> np.ndarray:
    """A zero-copy NumPy view of ``t`` (bf16 as its uint16 bit patterns)."""
    if t.requires_grad:
        t = t.detach()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(np.uint16)
    return t.numpy()


def node_products(h: Tensor, maps: list[Tensor], C: int, mode: str) -> tuple[Tensor, Tensor]:
    r"""The per-node products of first linear maps whose input is :math:`[\mathbf{h}_i,
    \mathbf{h}_j, \ldots]` (as in :func:`~ggik_core.model.layers.base.split_first_linear`): for
    each weight ``W`` in ``maps``, :math:`W_{:, :C} \mathbf{h}` and :math:`W_{:, C:2C} \mathbf{h}`,
    side by side in the last axis of one ``(B, N, \sum 2 H)`` product (no bias; the kernels add
    it), in bf16 in "bf16" mode (as autocast runs the eager path's), else in ``h``'s dtype. Returns
    the products, and the input ``(B N, C)`` and weights ``(\sum 2 H, C)`` they used in that
    dtype, for :func:`node_products_backward`."""
    pd = torch.bfloat16 if MODES[mode][1] else h.dtype
    W = torch.cat([part for w in maps for part in (w[:, :C], w[:, C:2 * C])]).to(pd)
    B, N = h.shape[:2]
    h_p = h.reshape(B * N, C).to(pd)
    return torch.mm(h_p, W.t()).view(B, N, -1), h_p, W


def node_products_backward(g_ts: Tensor, h_p: Tensor, W: Tensor, shapes: list[torch.Size], C: int) -> tuple[Tensor, list[Tensor]]:
    """Gradients of :func:`node_products` from ``g_ts`` (float, its layout) with its input ``h_p``
    ``(B N, C)`` and weights ``W`` in the products' dtype: ``g_h`` and, for each weight shape of
    ``shapes`` (the maps' order), a gradient of that shape with the two ``h`` blocks filled in (the
    other columns zero)."""
    B, N, _ = g_ts.shape
    dt = g_ts.dtype
    g = g_ts.view(B * N, -1).to(W.dtype)
    g_h = torch.mm(g, W).to(dt).view(B, N, C)
    g_W = torch.mm(g.t(), h_p).to(dt)
    grads, row = [], 0
    for shape in shapes:
        H = shape[0]
        gw = torch.zeros(shape, dtype=dt)
        gw[:, :C] = g_W[row:row + H]
        gw[:, C:2 * C] = g_W[row + H:row + 2 * H]
        grads.append(gw)
        row += 2 * H
    return g_h, grads
