r"""The per-edge block of :class:`~ggik_core.model.EGATLayer` on dense graphs as fused CPU kernels.

The same scheme as :mod:`ggik_core.model.fused_egnn`, with the attention of GGIK+:

.. math::
    \mathbf{a}_{ij} &= \mathrm{SiLU}\big(\mathbf{t}_i + \mathbf{s}_j + W_d \|\mathbf{x}_i -
        \mathbf{x}_j\|^2 + W_a \mathbf{e}_{ij}\big), \quad
        \sigma_{ij} = \mathbf{w}_{att}^\top \mathrm{SiLU}\big(\mathbf{u}_i + \mathbf{v}_j +
        W_{ae} \mathbf{e}_{ij}\big), \quad
        \alpha_{ij} = \mathrm{softmax}_{j \ne i}(\sigma_{ij}) &\text{(kernel 1)}

    \mathbf{m}_{ij} &= \mathrm{SiLU}(W_2 \mathbf{a}_{ij} + \mathbf{b}_2), \quad
        \mathbf{m}_i = \textstyle\sum_{j} \alpha_{ij} \mathbf{m}_{ij} &\text{(product, kernel 2)}

    s_{ij} &= \mathbf{w}_x^\top \mathrm{SiLU}(W_{xm} \mathbf{m}_{ij} + W_{xe} \mathbf{e}_{ij} +
        \mathbf{b}_x), \quad
        \Delta\mathbf{x}_i = \textstyle\sum_{j} \alpha_{ij}
        \frac{\mathbf{x}_i - \mathbf{x}_j}{\|\mathbf{x}_i - \mathbf{x}_j\| + 1} s_{ij}
        &\text{(product, kernel 3)}

where :math:`(\mathbf{t}, \mathbf{s})` and :math:`(\mathbf{u}, \mathbf{v})` are the per-node parts of
the first linear maps of :math:`\phi_e` and :math:`\phi_{att}` (computed by the caller) and
:math:`\alpha_{ii} = 0`. The backward pass of the softmax runs inside the coordinate kernel's
backward, once the gradient of every :math:`\alpha_{ij}` of a graph is known.
"""

from __future__ import annotations

import functools
import math
from types import SimpleNamespace

import numpy as np
import torch
from torch import Tensor

from ggik_core.model.kernels import MODES, as_numpy, kernel_mode, match_threads, node_parts, primitives


@functools.lru_cache(maxsize=None)
def kernels(mode: str) -> SimpleNamespace:
    """The six kernels for ``mode`` (:data:`~ggik_core.model.kernels.MODES`), compiled on first use."""
    k = primitives(mode)
    nb, f, ONE, EPS, par = k.nb, k.f, k.ONE, k.EPS, k.par
    ld, st, sigmoid, geometry = k.ld, k.st, k.sigmoid, k.geometry
    add_edge_terms, pre_activation, silu_grad = k.add_edge_terms, k.pre_activation, k.silu_grad
    pre_activation_backward = k.pre_activation_backward

    @par
    def edge_input(t, s, u, v, x, e, WeT, WaT, w_att, A, alpha):
        """Kernel 1: ``A[b, j, i] = SiLU(p_ij)`` and the attention ``alpha[b, j, i]`` (0 on the diagonal)."""
        B, N, H = t.shape
        for b in nb.prange(B):
            p = np.empty(H, t.dtype)
            pa = np.empty(u.shape[2], t.dtype)
            diff = np.empty(3, t.dtype)
            for j in range(N):
                for i in range(N):
                    d2, _ = geometry(x, b, i, j, diff)
                    pre_activation(t, s, e, WeT, b, i, j, d2, p)
                    for c in range(H):
                        A[b, j, i, c] = st(p[c] * sigmoid(p[c]))
                    for c in range(pa.shape[0]):
                        pa[c] = u[b, i, c] + v[b, j, c]
                    add_edge_terms(e, WaT, 0, b, i, j, pa)
                    score = f(0.0)
                    for c in range(pa.shape[0]):
                        score += w_att[c] * pa[c] * sigmoid(pa[c])
                    alpha[b, j, i] = score
            for i in range(N):  # softmax over the sources j != i
                top = -np.inf
                for j in range(N):
                    if j != i and alpha[b, j, i] > top:
                        top = alpha[b, j, i]
                total = f(0.0)
                for j in range(N):
                    w = f(0.0) if j == i else math.exp(alpha[b, j, i] - top)
                    alpha[b, j, i] = w
                    total += w
                for j in range(N):
                    alpha[b, j, i] /= total

    @par
    def message(Z, b2, alpha, M, m_i):
        """Kernel 2: ``M = SiLU(Z + b2)``, ``m_i = sum_j alpha_ij M_ij``."""
        B, N, _, C = Z.shape
        for b in nb.prange(B):
            m_i[b] = 0
            for j in range(N):
                for i in range(N):
                    a = alpha[b, j, i]
                    for c in range(C):
                        z = ld(Z[b, j, i, c]) + b2[c]
                        m = z * sigmoid(z)
                        M[b, j, i, c] = st(m)
                        m_i[b, i, c] += a * m

    @par
    def coordinate(U, bx, WxeT, e, wx, x, alpha, s_out, dx):
        """Kernel 3: ``s = wx . SiLU(U + W_xe e + bx)``, ``dx_i = sum_j alpha_ij rel_ij s_ij``."""
        B, N, _, H = U.shape
        for b in nb.prange(B):
            q = np.empty(H, x.dtype)
            diff = np.empty(3, x.dtype)
            dx[b] = 0
            for j in range(N):
                for i in range(N):
                    for c in range(H):
                        q[c] = ld(U[b, j, i, c]) + bx[c]
                    add_edge_terms(e, WxeT, 0, b, i, j, q)
                    acc = f(0.0)
                    for c in range(H):
                        acc += wx[c] * q[c] * sigmoid(q[c])
                    s_out[b, j, i] = acc
                    if j != i:
                        _, dist = geometry(x, b, i, j, diff)
                        w = alpha[b, j, i] * acc / (dist + ONE)
                        for k in range(3):
                            dx[b, i, k] += diff[k] * w

    @par
    def coordinate_backward(coords, g_dx, g_mi, x, alpha, Mt, s_in, U, bx, WxeT, e, wx,
                            dU, g_x, g_wx, g_bx, g_WxeT, d_score):
        """Backward of kernel 3 (only the attention's part when not ``coords``) and of the softmax:
        ``dU`` (zero on the diagonal), the coordinate part of ``g_x``, per-graph partial sums of the
        gradients of ``wx``, ``bx`` and ``W_xe^T``, and the gradient of the scores ``d_score``."""
        B, N, _, C = Mt.shape
        for b in nb.prange(B):
            H = wx.shape[0]
            q = np.empty(H, x.dtype)
            diff = np.empty(3, x.dtype)
            d_alpha = np.empty((N, N), x.dtype)
            g_x[b] = 0
            g_wx[b] = 0
            g_bx[b] = 0
            g_WxeT[b] = 0
            for j in range(N):
                for i in range(N):
                    if j == i:
                        d_alpha[j, i] = 0
                        if coords:
                            for c in range(H):
                                dU[b, j, i, c] = 0
                        continue
                    da = f(0.0)
                    for c in range(C):
                        da += g_mi[b, i, c] * ld(Mt[b, j, i, c])
                    if coords:
                        d2, dist = geometry(x, b, i, j, diff)
                        r = ONE / (dist + ONE)
                        a = alpha[b, j, i]
                        s = s_in[b, j, i]
                        g_diff = g_dx[b, i, 0] * diff[0] + g_dx[b, i, 1] * diff[1] + g_dx[b, i, 2] * diff[2]
                        da += g_diff * r * s
                        ds = a * g_diff * r
                        # rel = diff * r(dist): d rel = r d diff - r^2 diff d dist, d dist = diff / dist d diff
                        coef = -r * r / dist * g_diff * a * s if d2 > EPS else f(0.0)
                        for k in range(3):
                            gk = g_dx[b, i, k] * a * s * r + diff[k] * coef
                            g_x[b, i, k] += gk
                            g_x[b, j, k] -= gk
                        for c in range(H):
                            q[c] = ld(U[b, j, i, c]) + bx[c]
                        add_edge_terms(e, WxeT, 0, b, i, j, q)
                        for c in range(H):
                            sg = sigmoid(q[c])
                            g_wx[b, c] += ds * q[c] * sg
                            dq = ds * wx[c] * silu_grad(q[c], sg)
                            dU[b, j, i, c] = st(dq)
                            g_bx[b, c] += dq
                            q[c] = dq
                        for k in range(e.shape[3]):
                            ek = e[b, j, i, k]
                            for c in range(H):
                                g_WxeT[b, k, c] += q[c] * ek
                    d_alpha[j, i] = da
            for i in range(N):  # softmax: d score_ij = alpha_ij (d alpha_ij - sum_k alpha_ik d alpha_ik)
                dot = f(0.0)
                for j in range(N):
                    dot += alpha[b, j, i] * d_alpha[j, i]
                for j in range(N):
                    d_score[b, j, i] = alpha[b, j, i] * (d_alpha[j, i] - dot)

    @par
    def message_backward(dM, g_mi, alpha, Z, b2, dZ, g_b2):
        """Backward of kernel 2: ``dZ = (dM + alpha_ij g_mi) SiLU'(Z + b2)``."""
        B, N, _, C = Z.shape
        for b in nb.prange(B):
            g_b2[b] = 0
            for j in range(N):
                for i in range(N):
                    a = alpha[b, j, i]
                    for c in range(C):
                        z = ld(Z[b, j, i, c]) + b2[c]
                        dz = (ld(dM[b, j, i, c]) + a * g_mi[b, i, c]) * silu_grad(z, sigmoid(z))
                        dZ[b, j, i, c] = st(dz)
                        g_b2[b, c] += dz

    @par
    def edge_input_backward(dA, d_score, t, s, u, v, x, e, WeT, WaT, w_att,
                            g_t, g_s, g_u, g_v, g_WeT, g_WaT, g_watt, g_x):
        """Backward of kernel 1 (off the diagonal): gradients of ``t``, ``s``, ``u``, ``v``, per-graph
        partial sums for ``WeT``, ``WaT`` and ``w_att``, and the distance part of ``g_x`` (added)."""
        B, N, H = t.shape
        for b in nb.prange(B):
            p = np.empty(H, t.dtype)
            pa = np.empty(u.shape[2], t.dtype)
            diff = np.empty(3, t.dtype)
            g_t[b] = 0
            g_s[b] = 0
            g_u[b] = 0
            g_v[b] = 0
            g_WeT[b] = 0
            g_WaT[b] = 0
            g_watt[b] = 0
            for j in range(N):
                for i in range(N):
                    if j == i:
                        continue
                    pre_activation_backward(dA, t, s, e, WeT, x, b, i, j, p, diff, g_t, g_s, g_WeT, g_x)
                    for c in range(pa.shape[0]):
                        pa[c] = u[b, i, c] + v[b, j, c]
                    add_edge_terms(e, WaT, 0, b, i, j, pa)
                    dsc = d_score[b, j, i]
                    for c in range(pa.shape[0]):
                        sg = sigmoid(pa[c])
                        g_watt[b, c] += dsc * pa[c] * sg
                        dpa = dsc * w_att[c] * silu_grad(pa[c], sg)
                        g_u[b, i, c] += dpa
                        g_v[b, j, c] += dpa
                        pa[c] = dpa
                    for k in range(e.shape[3]):
                        ek = e[b, j, i, k]
                        for c in range(pa.shape[0]):
                            g_WaT[b, k, c] += pa[c] * ek

    return SimpleNamespace(edge_input=edge_input, message=message, coordinate=coordinate,
                           coordinate_backward=coordinate_backward, message_backward=message_backward,
                           edge_input_backward=edge_input_backward)


class FusedEGATEdges(torch.autograd.Function):
    r"""Autograd function of the fused EGAT block: :math:`(\sum_j \alpha_{ij} \mathbf{m}_{ij},
    \sum_j \alpha_{ij} \mathrm{rel}_{ij} s_{ij})` from the per-node parts ``t``, ``s`` (of
    :math:`\phi_e`) and ``u``, ``v`` (of :math:`\phi_{att}`) :math:`(B, N, H)`, ``x``
    :math:`(B, N, 3)`, constant edge features ``e`` :math:`(B, N, N, F)` indexed ``[b, j, i]`` and
    the weights ``WeT`` :math:`(1 + F, H)`, ``WaT`` :math:`(F, H)`, ``w_att`` :math:`(H,)`, ``W2``
    :math:`(M, H)`, ``b2``, ``Wxm`` :math:`(H, M)`, ``bx``, ``WxeT`` :math:`(F, H)`, ``wx``
    :math:`(H,)` (the last four ``None`` for a layer that does not move the nodes). ``mode``: see
    :class:`~ggik_core.model.fused_egnn.FusedEGNNEdges`."""

    @staticmethod
    def forward(ctx, t: Tensor, s: Tensor, u: Tensor, v: Tensor, x: Tensor, e: Tensor, WeT: Tensor, WaT: Tensor,
                w_att: Tensor, W2: Tensor, b2: Tensor, Wxm: Tensor | None, bx: Tensor | None, WxeT: Tensor | None,
                wx: Tensor | None, mode: str) -> tuple[Tensor, Tensor]:
        k = kernels(mode)
        match_threads()
        B, N, H = t.shape
        M = W2.shape[0]
        E = B * N * N
        et = torch.bfloat16 if MODES[mode][1] else t.dtype
        W2e = W2.to(et)
        A = torch.empty(B, N, N, H, dtype=et)
        alpha = torch.empty(B, N, N, dtype=t.dtype)
        k.edge_input(*map(as_numpy, (t, s, u, v, x, e, WeT, WaT, w_att, A, alpha)))
        Z = torch.mm(A.view(E, H), W2e.t()).view(B, N, N, M)
        Mt = torch.empty_like(Z)
        m_i = torch.empty(B, N, M, dtype=t.dtype)
        k.message(*map(as_numpy, (Z, b2, alpha, Mt, m_i)))
        U = s_ij = Wxe = None
        if Wxm is None:
            dx = torch.zeros(B, N, 3, dtype=t.dtype)
        else:
            Wxe = Wxm.to(et)
            U = torch.mm(Mt.view(E, M), Wxe.t()).view(B, N, N, -1)
            s_ij = torch.empty(B, N, N, dtype=t.dtype)
            dx = torch.empty(B, N, 3, dtype=t.dtype)
            k.coordinate(*map(as_numpy, (U, bx, WxeT, e, wx, x, alpha, s_ij, dx)))
        ctx.save_for_backward(t, s, u, v, x, e, WeT, WaT, w_att, W2e, b2, Wxe, bx, WxeT, wx, A, alpha, Z, Mt, U, s_ij)
        ctx.mode = mode
        return m_i, dx

    @staticmethod
    def backward(ctx, g_mi: Tensor | None, g_dx: Tensor | None):
        t, s, u, v, x, e, WeT, WaT, w_att, W2e, b2, Wxe, bx, WxeT, wx, A, alpha, Z, Mt, U, s_ij = ctx.saved_tensors
        k = kernels(ctx.mode)
        match_threads()
        B, N, H = t.shape
        M = W2e.shape[0]
        E = B * N * N
        dt = t.dtype
        g_mi = torch.zeros(B, N, M, dtype=dt) if g_mi is None else g_mi.to(dt).contiguous()
        g_dx = torch.zeros(B, N, 3, dtype=dt) if g_dx is None else g_dx.to(dt).contiguous()
        coords = U is not None
        Hx = wx.shape[0] if coords else 0
        none4 = torch.empty(0, 0, 0, 0, dtype=Mt.dtype)
        dU = torch.empty_like(U) if coords else none4
        g_x = torch.empty_like(x)
        g_wx, g_bx = torch.empty(B, Hx, dtype=dt), torch.empty(B, Hx, dtype=dt)
        g_WxeT = torch.empty(B, e.shape[3], Hx, dtype=dt)
        d_score = torch.empty(B, N, N, dtype=dt)
        empty1, empty2, empty3 = torch.empty(0, dtype=dt), torch.empty(0, 0, dtype=dt), torch.empty(0, 0, 0, dtype=dt)
        k.coordinate_backward(coords, *map(as_numpy, (
            g_dx, g_mi, x, alpha, Mt, s_ij if coords else empty3, U if coords else none4, bx if coords else empty1,
            WxeT if coords else empty2, e, wx if coords else empty1, dU, g_x, g_wx, g_bx, g_WxeT, d_score)))
        g_Wxm = g_bx_out = g_WxeT_out = g_wx_out = None
        if coords:
            dU2 = dU.view(E, Hx)
            dM = torch.mm(dU2, Wxe).view(B, N, N, M)
            g_Wxm = torch.mm(dU2.t(), Mt.view(E, M)).to(dt)
            g_bx_out, g_WxeT_out, g_wx_out = g_bx.sum(0), g_WxeT.sum(0), g_wx.sum(0)
        else:
            dM = torch.zeros_like(Z)
        dZ = torch.empty_like(Z)
        g_b2 = torch.empty(B, M, dtype=dt)
        k.message_backward(*map(as_numpy, (dM, g_mi, alpha, Z, b2, dZ, g_b2)))
        dZ2 = dZ.view(E, M)
        dA = torch.mm(dZ2, W2e).view(B, N, N, H)
        g_W2 = torch.mm(dZ2.t(), A.view(E, H)).to(dt)
        g_t, g_s, g_u, g_v = (torch.empty_like(a) for a in (t, s, u, v))
        g_WeT = torch.empty(B, *WeT.shape, dtype=dt)
        g_WaT = torch.empty(B, *WaT.shape, dtype=dt)
        g_watt = torch.empty(B, w_att.shape[0], dtype=dt)
        k.edge_input_backward(*map(as_numpy, (dA, d_score, t, s, u, v, x, e, WeT, WaT, w_att,
                                              g_t, g_s, g_u, g_v, g_WeT, g_WaT, g_watt, g_x)))
        return (g_t, g_s, g_u, g_v, g_x, None, g_WeT.sum(0), g_WaT.sum(0), g_watt.sum(0), g_W2, g_b2.sum(0),
                g_Wxm, g_bx_out, g_WxeT_out, g_wx_out, None)


def fused_egat_edges(layer, h: Tensor, x: Tensor, e: Tensor | None) -> tuple[Tensor, Tensor]:
    r""":math:`(\sum_j \alpha_{ij} \mathbf{m}_{ij}, \sum_j \alpha_{ij} \mathrm{rel}_{ij} \phi_x(\cdot))`
    of an :class:`~ggik_core.model.EGATLayer` (two-layer :math:`\phi_e` and :math:`\phi_x`) on dense
    graphs, through :class:`FusedEGATEdges`, in the mode of
    :func:`~ggik_core.model.kernels.kernel_mode`."""
    dt = x.dtype
    mode = kernel_mode(dt)
    C = layer.channels
    with torch.autocast("cpu", enabled=False):
        h = h.to(dt)
        t, s, u, v = node_parts(h, [layer.phi_e[0], layer.phi_att[0]], C)
        B, N = h.shape[:2]
        e = torch.zeros(B, N, N, 0, dtype=dt) if e is None else e.to(dt)
        WeT = layer.phi_e[0].weight[:, 2 * C:].t().to(dt)
        WaT = layer.phi_att[0].weight[:, 2 * C:].t().to(dt)
        w_att = layer.phi_att[2].weight.reshape(-1).to(dt)
        lin1 = layer.phi_e[2]
        Wxm = bx = WxeT = wx = None
        if layer.phi_x is not None:
            W = layer.phi_x[0].weight.to(dt)
            M = layer.message_channels
            Wxm, WxeT = W[:, :M].contiguous(), W[:, M:].t().contiguous()
            bx, wx = layer.phi_x[0].bias.to(dt), layer.phi_x[2].weight.reshape(-1).to(dt)
        return FusedEGATEdges.apply(t, s, u, v, x.contiguous(),
                                    e.detach().contiguous(), WeT.contiguous(), WaT.contiguous(), w_att,
                                    lin1.weight.to(dt), lin1.bias.to(dt), Wxm, bx, WxeT, wx, mode)
