r"""The per-edge block of :class:`~ggik_core.model.EGNNLayer` on dense graphs as fused CPU kernels.

On complete graphs of :math:`N` nodes the eager dense path spends most of a training step in some
forty element-wise passes per layer over :math:`(B, N, N, 64)` edge tensors: broadcast sums,
SiLUs, casts, their backward passes. Here the element-wise work between the two per-edge matrix
products is fused into three numba kernels forward and three backward, and the products stay
torch's (in bf16 under CPU autocast, as the eager path runs them):

.. math::
    \mathbf{a}_{ij} &= \mathrm{SiLU}\big(\mathbf{t}_i + \mathbf{s}_j + W_d \|\mathbf{x}_i -
        \mathbf{x}_j\|^2 + W_a \mathbf{e}_{ij}\big) &\text{(kernel 1)}

    \mathbf{m}_{ij} &= \mathrm{SiLU}(W_2 \mathbf{a}_{ij} + \mathbf{b}_2), \quad
        \mathbf{m}_i = \textstyle\sum_{j \ne i} \mathbf{m}_{ij} &\text{(product, kernel 2)}

    s_{ij} &= \mathbf{w}_x^\top \mathrm{SiLU}(W_x \mathbf{m}_{ij} + \mathbf{b}_x), \quad
        \Delta\mathbf{x}_i = \textstyle\sum_{j \ne i}
        \frac{\mathbf{x}_i - \mathbf{x}_j}{\|\mathbf{x}_i - \mathbf{x}_j\| + 1} s_{ij}
        &\text{(product, kernel 3)}

with :math:`\mathbf{t} = W_1 \mathbf{h} + \mathbf{b}_1` and :math:`\mathbf{s} = W_2' \mathbf{h}` the
per-node parts of :math:`\phi_e`'s first linear map (computed by the caller). The kernels compute
in the dtype of their inputs: float32 (with a rational SiLU accurate to about 1e-7 relative, which
vectorises) or float64 (exact; the tests compare it with the PyG layer). Each kernel loops over
the graphs in parallel; nothing is written twice by two threads.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np
import torch
from torch import Tensor

from ggik_core.model.kernels import (MODES, as_numpy, kernel_mode, match_threads, node_products,
                                     node_products_backward, primitives, sized_primitives)


@functools.lru_cache(maxsize=None)
def kernels(mode: str, H: int, M: int, F: int) -> SimpleNamespace:
    r"""The six kernels for ``mode`` (:data:`~ggik_core.model.kernels.MODES`), ``H`` hidden channels
    (of :math:`\phi_e` and :math:`\phi_x`), ``M`` message channels and ``F`` edge features, compiled
    on first use with the sizes compiled in (:func:`~ggik_core.model.kernels.sized_primitives`).
    Edge tensors are ``(B, N (N - 1), C)``: row ``q = j (N - 1) + k`` is the edge from source ``j``
    to its ``k``-th target (:func:`~ggik_core.model.kernels.primitives`' ``target``)."""
    k = primitives(mode)
    nb, f, ONE, EPS, par = k.nb, k.f, k.ONE, k.EPS, k.par
    ld, st, sigmoid, geometry = k.ld, k.st, k.sigmoid, k.geometry
    silu_grad, target = k.silu_grad, k.target
    e_h = sized_primitives(mode, H, F)
    pre_activation, pre_activation_backward, silu_dot = e_h.pre_activation, e_h.pre_activation_backward, e_h.silu_dot

    @par
    def edge_input(ts, b1, x, e, WeT, A, G):
        """Kernel 1: ``A = SiLU(p_ij)`` and its derivative ``G = SiLU'(p_ij)`` for the backward pass."""
        B, N = ts.shape[0], ts.shape[1]
        for b in nb.prange(B):
            p = np.empty(H, x.dtype)
            diff = np.empty(3, x.dtype)
            q = 0
            for j in range(N):
                for kk in range(N - 1):
                    i = target(j, kk)
                    d2, _ = geometry(x, b, i, j, diff)
                    pre_activation(ts, b1, e, WeT, b, i, j, d2, p)
                    for c in range(H):
                        sg = sigmoid(p[c])
                        A[b, q, c] = st(p[c] * sg)
                        G[b, q, c] = st(silu_grad(p[c], sg))
                    q += 1

    @par
    def message(Z, b2, Mt, G, m_i):
        """Kernel 2: ``Mt = SiLU(Z + b2)``, its derivative ``G`` and ``m_i = sum_{j != i} Mt_ij``."""
        B, N = m_i.shape[0], m_i.shape[1]
        for b in nb.prange(B):
            m_i[b] = 0
            q = 0
            for j in range(N):
                for kk in range(N - 1):
                    i = target(j, kk)
                    for c in range(M):
                        z = ld(Z[b, q, c]) + b2[c]
                        sg = sigmoid(z)
                        m = z * sg
                        Mt[b, q, c] = st(m)
                        G[b, q, c] = st(silu_grad(z, sg))
                        m_i[b, i, c] += m
                    q += 1

    @par
    def coordinate(U, bx, wx, x, s_out, S, G, dx):
        """Kernel 3: ``s = wx . SiLU(U + bx)``, ``dx_i = sum_{j != i} rel_ij s_ij``, and for the
        backward pass ``S = SiLU(U + bx)`` and its derivative ``G``."""
        B, N = x.shape[0], x.shape[1]
        for b in nb.prange(B):
            r = np.empty(H, x.dtype)
            diff = np.empty(3, x.dtype)
            dx[b] = 0
            q = 0
            for j in range(N):
                for kk in range(N - 1):
                    i = target(j, kk)
                    for c in range(H):
                        r[c] = ld(U[b, q, c]) + bx[c]
                    acc = silu_dot(r, wx, S, G, b, q)
                    s_out[b, q] = acc
                    _, dist = geometry(x, b, i, j, diff)
                    w = acc / (dist + ONE)
                    for d in range(3):
                        dx[b, i, d] += diff[d] * w
                    q += 1

    @par
    def coordinate_backward(g_dx, x, s_in, S, G, wx, dU, g_x, g_wx, g_bx):
        """Backward of kernel 3 from its stored ``S`` and ``G``: ``dU``, the coordinate part of
        ``g_x`` and per-graph partial sums of the gradients of ``wx`` and ``bx``."""
        B, N = x.shape[0], x.shape[1]
        for b in nb.prange(B):
            diff = np.empty(3, x.dtype)
            g_x[b] = 0
            g_wx[b] = 0
            g_bx[b] = 0
            q = 0
            for j in range(N):
                for kk in range(N - 1):
                    i = target(j, kk)
                    d2, dist = geometry(x, b, i, j, diff)
                    r = ONE / (dist + ONE)
                    g_diff = g_dx[b, i, 0] * diff[0] + g_dx[b, i, 1] * diff[1] + g_dx[b, i, 2] * diff[2]
                    ds = g_diff * r
                    s = s_in[b, q]
                    # rel = diff * r(dist): d rel = r d diff - r^2 diff d dist, d dist = diff / dist d diff
                    coef = -r * r / dist * g_diff * s if d2 > EPS else f(0.0)
                    for d in range(3):
                        gd = g_dx[b, i, d] * s * r + diff[d] * coef
                        g_x[b, i, d] += gd
                        g_x[b, j, d] -= gd
                    for c in range(H):
                        g_wx[b, c] += ds * ld(S[b, q, c])
                        du = ds * wx[c] * ld(G[b, q, c])
                        dU[b, q, c] = st(du)
                        g_bx[b, c] += du
                    q += 1

    @par
    def message_backward(coords, dM, g_mi, G, dZ, g_b2):
        """Backward of kernel 2: ``dZ = (dM + g_mi) G`` (``dM`` read only with ``coords``)."""
        B, N = g_mi.shape[0], g_mi.shape[1]
        for b in nb.prange(B):
            g_b2[b] = 0
            q = 0
            for j in range(N):
                for kk in range(N - 1):
                    i = target(j, kk)
                    for c in range(M):
                        dm = g_mi[b, i, c] + ld(dM[b, q, c]) if coords else g_mi[b, i, c]
                        dz = dm * ld(G[b, q, c])
                        dZ[b, q, c] = st(dz)
                        g_b2[b, c] += dz
                    q += 1

    @par
    def edge_input_backward(dA, G, e, WeT, x, g_ts, g_WeT, g_x):
        """Backward of kernel 1: gradients of ``t`` and ``s`` (``g_ts``, the layout of ``ts``),
        per-graph partial sums for ``WeT``, and the distance part of ``g_x`` (added)."""
        B, N = g_ts.shape[0], g_ts.shape[1]
        for b in nb.prange(B):
            p = np.empty(H, g_ts.dtype)
            diff = np.empty(3, g_ts.dtype)
            g_ts[b] = 0
            g_WeT[b] = 0
            q = 0
            for j in range(N):
                for kk in range(N - 1):
                    pre_activation_backward(dA, G, e, WeT, x, b, target(j, kk), j, q, p, diff, g_ts, g_WeT, g_x)
                    q += 1

    return SimpleNamespace(edge_input=edge_input, message=message, coordinate=coordinate,
                           coordinate_backward=coordinate_backward, message_backward=message_backward,
                           edge_input_backward=edge_input_backward)


class FusedEGNNEdges(torch.autograd.Function):
    r"""Autograd function of the fused block: :math:`(\mathbf{m}_i, \Delta\mathbf{x}_i)` from the
    node features ``h`` :math:`(B, N, C)`, ``x`` :math:`(B, N, 3)`, constant edge features ``e``
    :math:`(B, N, N, F)` indexed ``[b, j, i]``, and the weights: ``W1`` :math:`(H, 2C + 1 + F)`
    and ``b1`` (:math:`\phi_e`'s first map, on :math:`[\mathbf{h}_i, \mathbf{h}_j, d_{ij}^2,
    \mathbf{a}_{ij}]`), ``W2`` :math:`(M, H)`, ``b2``, ``Wx`` :math:`(H, M)`, ``bx``, ``wx``
    :math:`(H,)` (``None`` for a layer that does not move the nodes: :math:`\Delta\mathbf{x} = 0`),
    all in the compute dtype. ``mode``: a key of :data:`MODES`; with "bf16" the per-node product
    of the first map (:func:`~ggik_core.model.kernels.node_products`), the :math:`(B, N (N - 1),
    \cdot)` edge tensors and the four per-edge products are bf16, the rest float32. The diagonal
    :math:`j = i` is never stored or multiplied, and the forward pass stores the SiLU derivatives of
    :math:`\phi_e`'s two layers and the SiLU of :math:`\phi_x`'s hidden layer with its derivative,
    so the backward pass evaluates no sigmoid."""

    @staticmethod
    def forward(ctx, h: Tensor, x: Tensor, e: Tensor, W1: Tensor, b1: Tensor, W2: Tensor, b2: Tensor,
                Wx: Tensor, bx: Tensor, wx: Tensor, mode: str) -> tuple[Tensor, Tensor]:
        B, N, C = h.shape
        H, M = W1.shape[0], W2.shape[0]
        P = N * (N - 1)
        k = kernels(mode, H, M, e.shape[3])
        match_threads()
        ts, h_p, Wts = node_products(h, [W1], C, mode)
        WeT = W1[:, 2 * C:].t().contiguous()
        et = torch.bfloat16 if MODES[mode][1] else x.dtype  # the edge tensors' dtype
        W2e, Wxe = W2.to(et), None if Wx is None else Wx.to(et)
        A, G1 = torch.empty(B, P, H, dtype=et), torch.empty(B, P, H, dtype=et)
        k.edge_input(*map(as_numpy, (ts, b1, x, e, WeT, A, G1)))
        Z = torch.mm(A.view(B * P, H), W2e.t()).view(B, P, M)
        Mt, G2 = torch.empty_like(Z), torch.empty_like(Z)
        m_i = torch.empty(B, N, M, dtype=x.dtype)
        k.message(*map(as_numpy, (Z, b2, Mt, G2, m_i)))
        del Z
        S3 = G3 = s_ij = None
        if Wx is None:  # a layer that does not move the nodes
            dx = torch.zeros(B, N, 3, dtype=x.dtype)
        else:
            U = torch.mm(Mt.view(B * P, M), Wxe.t()).view(B, P, H)
            S3, G3 = torch.empty_like(U), torch.empty_like(U)
            s_ij = torch.empty(B, P, dtype=x.dtype)
            dx = torch.empty(B, N, 3, dtype=x.dtype)
            k.coordinate(*map(as_numpy, (U, bx, wx, x, s_ij, S3, G3, dx)))
        ctx.save_for_backward(x, e, W1, WeT, h_p, Wts, W2e, Wxe, wx, A, G1, Mt, G2, S3, G3, s_ij)
        ctx.mode = mode
        return m_i, dx

    @staticmethod
    def backward(ctx, g_mi: Tensor | None, g_dx: Tensor | None):
        x, e, W1, WeT, h_p, Wts, W2e, Wxe, wx, A, G1, Mt, G2, S3, G3, s_ij = ctx.saved_tensors
        B, N, _ = x.shape
        dt = x.dtype
        P, H, M = A.shape[1], A.shape[2], G2.shape[2]
        C = h_p.shape[1]
        k = kernels(ctx.mode, H, M, e.shape[3])
        match_threads()
        g_mi = torch.zeros(B, N, M, dtype=dt) if g_mi is None else g_mi.to(dt).contiguous()
        g_dx = torch.zeros(B, N, 3, dtype=dt) if g_dx is None else g_dx.to(dt).contiguous()
        g_Wx = g_bx = g_wx = None
        coords = S3 is not None
        if coords:
            dU = torch.empty_like(S3)
            g_x = torch.empty_like(x)
            g_wx, g_bx = torch.empty(B, H, dtype=dt), torch.empty(B, H, dtype=dt)
            k.coordinate_backward(*map(as_numpy, (g_dx, x, s_ij, S3, G3, wx, dU, g_x, g_wx, g_bx)))
            dU2 = dU.view(B * P, -1)
            dM = torch.mm(dU2, Wxe).view(B, P, M)
            g_Wx = torch.mm(dU2.t(), Mt.view(B * P, M)).to(dt)
            g_bx, g_wx = g_bx.sum(0), g_wx.sum(0)
        else:
            dM = torch.empty(0, 0, 0, dtype=G2.dtype)
            g_x = torch.zeros_like(x)
        dZ = torch.empty_like(G2)
        g_b2 = torch.empty(B, M, dtype=dt)
        k.message_backward(coords, *map(as_numpy, (dM, g_mi, G2, dZ, g_b2)))
        dZ2 = dZ.view(B * P, M)
        dA = torch.mm(dZ2, W2e).view(B, P, H)
        g_W2 = torch.mm(dZ2.t(), A.view(B * P, H)).to(dt)
        g_ts = torch.empty(B, N, 2 * H, dtype=dt)
        g_WeT = torch.empty(B, *WeT.shape, dtype=dt)
        k.edge_input_backward(*map(as_numpy, (dA, G1, e, WeT, x, g_ts, g_WeT, g_x)))
        g_h, (g_W1,) = node_products_backward(g_ts, h_p, Wts, [W1], C)
        g_W1[:, 2 * C:] = g_WeT.sum(0).t()
        g_b1 = g_ts[..., :H].sum((0, 1))
        return g_h, g_x, None, g_W1, g_b1, g_W2, g_b2.sum(0), g_Wx, g_bx, g_wx, None


def fused_egnn_edges(layer, h: Tensor, x: Tensor, e: Tensor | None) -> tuple[Tensor, Tensor]:
    r""":math:`(\sum_{j \ne i} \mathbf{m}_{ij}, \sum_{j \ne i} \mathrm{rel}_{ij} \phi_x(\mathbf{m}_{ij}))`
    of an :class:`~ggik_core.model.EGNNLayer` (two-layer :math:`\phi_e` and :math:`\phi_x`, not
    symmetric) on dense graphs, through :class:`FusedEGNNEdges`: in "bf16" mode under CPU bf16
    autocast, otherwise in ``x``'s dtype (float32 or float64)."""
    dt = x.dtype
    mode = kernel_mode(dt)
    with torch.autocast("cpu", enabled=False):
        B, N = h.shape[:2]
        e = torch.zeros(B, N, N, 0, dtype=dt) if e is None else e.to(dt)
        lin0, lin1 = layer.phi_e[0], layer.phi_e[2]
        Wx = bx = wx = None
        if layer.phi_x is not None:
            Wx, bx, wx = layer.phi_x[0].weight.to(dt), layer.phi_x[0].bias.to(dt), layer.phi_x[2].weight.reshape(-1).to(dt)
        return FusedEGNNEdges.apply(h.to(dt), x.contiguous(), e.detach().contiguous(), lin0.weight.to(dt),
                                    lin0.bias.to(dt), lin1.weight.to(dt), lin1.bias.to(dt), Wx, bx, wx, mode)
