r"""The feature update of the EGNN and EGAT layers (:meth:`~ggik_core.model.layers.base.EquivariantConv.node_update`)
as one autograd function with fused CPU kernels, for the layers whose edge block runs fused:

.. math::
    \mathbf{a}_i &= \mathrm{SiLU}\big(W_1 [\mathbf{h}_i, \mathbf{m}_i] + \mathbf{b}_1\big)
        &\text{(product, kernel 1)}

    \mathbf{r}_i &= \mathbf{h}_i + W_2 \mathbf{a}_i + \mathbf{b}_2, \quad
        \mathbf{h}_i' = \boldsymbol\gamma \odot \frac{\mathbf{r}_i - \mu(\mathbf{r}_i)}
        {\sqrt{\sigma^2(\mathbf{r}_i) + \epsilon}} + \boldsymbol\beta
        &\text{(product, kernel 2)}

(:math:`\phi_h` and the layer norm; without the norm :math:`\mathbf{h}_i' = \mathbf{r}_i`). The
eager path spends a node update in some twenty small operations forward and as many backward
(concatenation, casts, the SiLU, the residual sum, the layer norm, their autograd nodes); here
the element-wise work runs in numba kernels between the four products, which stay torch's. In
"bf16" mode (:data:`~ggik_core.model.fused.kernels.MODES`) the products' operands are bf16, as CPU
autocast runs the eager path's, and the residual sum and the layer norm are float32, as there;
the float64 mode is exact (the tests compare it with the eager update).
"""

from __future__ import annotations

import functools
import math
from types import SimpleNamespace

import numpy as np
import torch
from torch import Tensor, nn

from ggik_core.model.fused.kernels import MODES, as_numpy, kernel_mode, match_threads, primitives


@functools.lru_cache(maxsize=None)
def node_kernels(mode: str, C: int, M: int, Hh: int, norm: bool) -> SimpleNamespace:
    """The five kernels of the fused node update for ``mode``, ``C`` feature channels, ``M``
    message channels, ``Hh`` hidden channels of :math:`\\phi_h` and with or without the layer norm,
    sizes compiled in. Node tensors are ``(B, N, ·)``; each kernel loops over the graphs in
    parallel, and per-graph partial sums carry the bias and norm parameters' gradients."""
    k = primitives(mode)
    nb, f, ONE, par = k.nb, k.f, k.ONE, k.par
    ld, st, sigmoid, silu_grad = k.ld, k.st, k.sigmoid, k.silu_grad
    INV_C = f(1.0 / C)

    @par
    def node_input(h, m_i, buf):
        """``buf = [h, m_i]`` in the products' dtype."""
        B, N = h.shape[0], h.shape[1]
        for b in nb.prange(B):
            for n in range(N):
                for c in range(C):
                    buf[b, n, c] = st(h[b, n, c])
                for c in range(M):
                    buf[b, n, C + c] = st(m_i[b, n, c])

    @par
    def hidden(Z, b1, A, G):
        """Kernel 1: ``A = SiLU(Z + b1)`` and its derivative ``G``."""
        B, N = Z.shape[0], Z.shape[1]
        for b in nb.prange(B):
            for n in range(N):
                for c in range(Hh):
                    z = ld(Z[b, n, c]) + b1[c]
                    sg = sigmoid(z)
                    A[b, n, c] = st(z * sg)
                    G[b, n, c] = st(silu_grad(z, sg))

    @par
    def residual_norm(h, Z2, b2, gamma, beta, eps, out, nrm, rstd):
        """Kernel 2: ``r = h + Z2 + b2`` and its layer norm ``out`` (``r`` itself without the norm),
        with the normalised ``nrm`` and ``rstd`` for the backward pass."""
        B, N = h.shape[0], h.shape[1]
        for b in nb.prange(B):
            r = np.empty(C, h.dtype)
            for n in range(N):
                for c in range(C):
                    r[c] = h[b, n, c] + (ld(Z2[b, n, c]) + b2[c])
                if not norm:
                    for c in range(C):
                        out[b, n, c] = r[c]
                    continue
                mean = f(0.0)
                for c in range(C):
                    mean += r[c]
                mean *= INV_C
                var = f(0.0)
                for c in range(C):
                    d = r[c] - mean
                    var += d * d
                rs = ONE / math.sqrt(var * INV_C + f(eps))
                rstd[b, n] = rs
                for c in range(C):
                    v = (r[c] - mean) * rs
                    nrm[b, n, c] = v
                    out[b, n, c] = v * gamma[c] + beta[c]

    @par
    def residual_norm_backward(g_out, nrm, rstd, gamma, g_r, g_Z2, g_gamma, g_beta, g_b2):
        """Backward of kernel 2: ``g_r`` (float), ``g_Z2`` (the products' dtype) and per-graph
        partial sums of the gradients of ``gamma``, ``beta`` and ``b2``."""
        B, N = g_out.shape[0], g_out.shape[1]
        for b in nb.prange(B):
            g_gamma[b] = 0
            g_beta[b] = 0
            g_b2[b] = 0
            for n in range(N):
                if norm:
                    s1 = f(0.0)
                    s2 = f(0.0)
                    for c in range(C):
                        gn = g_out[b, n, c] * gamma[c]
                        s1 += gn
                        s2 += gn * nrm[b, n, c]
                        g_gamma[b, c] += g_out[b, n, c] * nrm[b, n, c]
                        g_beta[b, c] += g_out[b, n, c]
                    s1 *= INV_C
                    s2 *= INV_C
                    rs = rstd[b, n]
                    for c in range(C):
                        g_r[b, n, c] = rs * (g_out[b, n, c] * gamma[c] - s1 - nrm[b, n, c] * s2)
                else:
                    for c in range(C):
                        g_r[b, n, c] = g_out[b, n, c]
                for c in range(C):
                    g_b2[b, c] += g_r[b, n, c]
                    g_Z2[b, n, c] = st(g_r[b, n, c])

    @par
    def hidden_backward(g_A, G, g_Z, g_b1):
        """Backward of kernel 1: ``g_Z = g_A G`` and per-graph partial sums of the gradient of ``b1``."""
        B, N = G.shape[0], G.shape[1]
        for b in nb.prange(B):
            g_b1[b] = 0
            for n in range(N):
                for c in range(Hh):
                    gz = ld(g_A[b, n, c]) * ld(G[b, n, c])
                    g_Z[b, n, c] = st(gz)
                    g_b1[b, c] += gz

    @par
    def node_input_backward(g_buf, g_r, g_h, g_mi):
        """``g_h = g_r + g_buf[..., :C]`` (the residual and the concatenation), ``g_mi = g_buf[..., C:]``."""
        B, N = g_r.shape[0], g_r.shape[1]
        for b in nb.prange(B):
            for n in range(N):
                for c in range(C):
                    g_h[b, n, c] = g_r[b, n, c] + ld(g_buf[b, n, c])
                for c in range(M):
                    g_mi[b, n, c] = ld(g_buf[b, n, C + c])

    return SimpleNamespace(node_input=node_input, hidden=hidden, residual_norm=residual_norm,
                           residual_norm_backward=residual_norm_backward, hidden_backward=hidden_backward,
                           node_input_backward=node_input_backward)


class FusedNodeUpdate(torch.autograd.Function):
    r"""Autograd function of the fused feature update: :math:`\mathbf{h}'` from ``h``
    :math:`(B, N, C)`, ``m_i`` :math:`(B, N, M)` and the weights ``W1`` :math:`(H_h, C + M)`,
    ``b1``, ``W2`` :math:`(C, H_h)`, ``b2``, ``gamma``, ``beta`` (``None`` without the layer norm)
    in the compute dtype; ``eps`` of the norm; ``mode``: a key of :data:`MODES` (with "bf16" the
    products' operands are bf16, the rest float32)."""

    @staticmethod
    def forward(ctx, h: Tensor, m_i: Tensor, W1: Tensor, b1: Tensor, W2: Tensor, b2: Tensor,
                gamma: Tensor | None, beta: Tensor | None, eps: float, mode: str) -> Tensor:
        B, N, C = h.shape
        M, Hh = m_i.shape[2], W1.shape[0]
        norm = gamma is not None
        k = node_kernels(mode, C, M, Hh, norm)
        match_threads()
        dt = h.dtype
        pd = torch.bfloat16 if MODES[mode][1] else dt  # the products' dtype
        W1e, W2e = W1.to(pd), W2.to(pd)
        R = B * N
        buf = torch.empty(B, N, C + M, dtype=pd)
        k.node_input(*map(as_numpy, (h, m_i, buf)))
        Z = torch.mm(buf.view(R, C + M), W1e.t()).view(B, N, Hh)
        A, G = torch.empty_like(Z), torch.empty_like(Z)
        k.hidden(*map(as_numpy, (Z, b1, A, G)))
        del Z
        Z2 = torch.mm(A.view(R, Hh), W2e.t()).view(B, N, C)
        out = torch.empty(B, N, C, dtype=dt)
        nrm = torch.empty(B, N, C if norm else 0, dtype=dt)
        rstd = torch.empty(B, N if norm else 0, dtype=dt)
        one = torch.empty(0, dtype=dt)
        k.residual_norm(*map(as_numpy, (h, Z2, b2, gamma if norm else one, beta if norm else one)), eps,
                        *map(as_numpy, (out, nrm, rstd)))
        ctx.save_for_backward(W1e, W2e, gamma, buf, A, G, nrm, rstd)
        ctx.mode = mode
        return out

    @staticmethod
    def backward(ctx, g_out: Tensor):
        W1e, W2e, gamma, buf, A, G, nrm, rstd = ctx.saved_tensors
        B, N, CM = buf.shape
        Hh, C = A.shape[2], W2e.shape[0]
        M = CM - C
        norm = gamma is not None
        k = node_kernels(ctx.mode, C, M, Hh, norm)
        match_threads()
        dt = nrm.dtype
        R = B * N
        g_out = g_out.to(dt).contiguous()
        g_r = torch.empty(B, N, C, dtype=dt)
        g_Z2 = torch.empty(B, N, C, dtype=buf.dtype)
        g_gamma, g_beta, g_b2 = (torch.empty(B, C, dtype=dt) for _ in range(3))
        one = torch.empty(0, dtype=dt)
        k.residual_norm_backward(*map(as_numpy, (g_out, nrm, rstd, gamma if norm else one, g_r, g_Z2,
                                                 g_gamma, g_beta, g_b2)))
        g_Z2v = g_Z2.view(R, C)
        g_W2 = torch.mm(g_Z2v.t(), A.view(R, Hh)).to(dt)
        g_A = torch.mm(g_Z2v, W2e).view(B, N, Hh)
        g_Z = torch.empty_like(g_A)
        g_b1 = torch.empty(B, Hh, dtype=dt)
        k.hidden_backward(*map(as_numpy, (g_A, G, g_Z, g_b1)))
        g_Zv = g_Z.view(R, Hh)
        g_W1 = torch.mm(g_Zv.t(), buf.view(R, CM)).to(dt)
        g_buf = torch.mm(g_Zv, W1e).view(B, N, CM)
        g_h, g_mi = torch.empty(B, N, C, dtype=dt), torch.empty(B, N, M, dtype=dt)
        k.node_input_backward(*map(as_numpy, (g_buf, g_r, g_h, g_mi)))
        g_gamma, g_beta = (g_gamma.sum(0), g_beta.sum(0)) if norm else (None, None)
        return g_h, g_mi, g_W1, g_b1.sum(0), g_W2, g_b2.sum(0), g_gamma, g_beta, None, None


def node_update_fusable(layer) -> bool:
    """Whether :func:`fused_node_update` covers ``layer``'s feature update: a two-layer SiLU
    :math:`\\phi_h` (the layer updates its features)."""
    phi_h = layer.phi_h
    return phi_h is not None and len(phi_h) == 3 and isinstance(phi_h[1], nn.SiLU)


def fused_node_update(layer, h: Tensor, x: Tensor, m_i: Tensor, delta_x: Tensor) -> tuple[Tensor, Tensor]:
    r""":meth:`~ggik_core.model.layers.base.EquivariantConv.node_update` of a layer whose edge block
    ran fused, through :class:`FusedNodeUpdate` where :func:`node_update_fusable` (in the mode of
    :func:`~ggik_core.model.fused.kernels.kernel_mode`); the coordinate update stays a torch operation."""
    if not node_update_fusable(layer):
        return layer.node_update(h, x, m_i, delta_x)
    dt = x.dtype
    mode = kernel_mode(dt)
    with torch.autocast("cpu", enabled=False):
        lin1, lin2, ln = layer.phi_h[0], layer.phi_h[2], layer.layer_norm
        gamma = beta = None
        eps = 0.0
        if ln is not None:
            gamma, beta, eps = ln.weight.to(dt), ln.bias.to(dt), float(ln.eps)
        h_out = FusedNodeUpdate.apply(h.to(dt).contiguous(), m_i.to(dt).contiguous(), lin1.weight.to(dt),
                                      lin1.bias.to(dt), lin2.weight.to(dt), lin2.bias.to(dt), gamma, beta, eps, mode)
        x_out = x if layer.phi_x is None else x + delta_x / layer.coords_agg_norm
    return h_out, x_out
