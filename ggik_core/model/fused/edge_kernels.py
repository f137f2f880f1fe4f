r"""The numba kernels of the α-weighted edge block (:mod:`ggik_core.model.fused.edges`, where the
equations are): three forward and three backward, one family for EGNN (:math:`\alpha \equiv 1`,
compiled without the attention) and EGAT (softmax attention), with the sizes compiled in."""

from __future__ import annotations

import functools
import math
from types import SimpleNamespace

import numpy as np

from ggik_core.model.fused.kernels import primitives, sized_primitives


@functools.lru_cache(maxsize=None)
def kernels(mode: str, H: int, Ha: int, M: int, Hx: int, Fx: int, F: int, store: bool = True) -> SimpleNamespace:
    r"""The six kernels for ``mode`` (:data:`~ggik_core.model.fused.kernels.MODES`) with the sizes
    compiled in: ``H`` hidden channels of :math:`\phi_e`, ``Ha`` of :math:`\phi_{att}` (0: no
    attention, :math:`\alpha \equiv 1`), ``M`` message channels, ``Hx`` hidden channels of
    :math:`\phi_x` (0 for a layer that does not move the nodes), ``Fx`` edge features read by
    :math:`\phi_x` (0 or ``F``) and ``F`` edge features. Edge tensors are ``(B, N (N - 1), C)``:
    row ``q = j (N - 1) + k`` is the edge from source ``j`` to its ``k``-th target
    (:func:`~ggik_core.model.fused.kernels.primitives`' ``target``). ``store=False`` compiles the
    forward kernels for inference: they store none of the SiLU derivatives and hidden SiLUs that
    only the backward pass reads (``G``, ``S``, ``Sa``, ``Ga`` may then be empty)."""
    k = primitives(mode)
    nb, f, ONE, EPS, par = k.nb, k.f, k.ONE, k.EPS, k.par
    ld, st, sigmoid, geometry, target, silu_grad = k.ld, k.st, k.sigmoid, k.geometry, k.target, k.silu_grad
    e_h, e_a, e_x = sized_primitives(mode, H, F), sized_primitives(mode, Ha, F), sized_primitives(mode, Hx, Fx)
    pre_activation, pre_activation_backward = e_h.pre_activation, e_h.pre_activation_backward
    attention_terms, attention_terms_backward = e_a.add_edge_terms, e_a.edge_terms_backward
    attention_node_terms, attention_node_terms_backward = e_a.node_terms, e_a.node_terms_backward
    attention_silu_dot, coordinate_silu_dot = e_a.silu_dot, e_x.silu_dot
    attention_silu_sum, coordinate_silu_sum = e_a.silu_sum, e_x.silu_sum
    STORE = store  # compiled in: the derivatives for the backward pass are written
    coordinate_terms, coordinate_terms_backward = e_x.add_edge_terms, e_x.edge_terms_backward
    ATT = Ha > 0  # compiled in: without attention every alpha is the constant 1

    @par
    def edge_input(ts, b_e, b_a, x, e, WeT, WaT, w_att, A, G, Sa, Ga, alpha):
        r"""Kernel 1: ``A = SiLU(p_ij)``, its derivative ``G`` and, with attention, ``alpha[b, j, i]``
        (0 on the diagonal) with the attention MLP's hidden SiLU ``Sa`` and its derivative ``Ga`` for
        the backward pass. ``ts``: the per-node products of the first maps
        (:func:`~ggik_core.model.fused.kernels.node_products`: :math:`\phi_e`'s from column 0,
        :math:`\phi_{att}`'s from column ``2 H``), without their biases ``b_e`` and ``b_a``."""
        B, N = ts.shape[0], ts.shape[1]
        for b in nb.prange(B):
            p = np.empty(H, x.dtype)
            pa = np.empty(Ha, x.dtype)
            diff = np.empty(3, x.dtype)
            q = 0
            for j in range(N):
                if ATT:
                    alpha[b, j, j] = 0
                for kk in range(N - 1):
                    i = target(j, kk)
                    d2, _ = geometry(x, b, i, j, diff)
                    pre_activation(ts, b_e, e, WeT, b, i, j, d2, p)
                    for c in range(H):
                        sg = sigmoid(p[c])
                        A[b, q, c] = st(p[c] * sg)
                        if STORE:
                            G[b, q, c] = st(silu_grad(p[c], sg))
                    if ATT:
                        attention_node_terms(ts, 2 * H, b_a, b, i, j, pa)
                        attention_terms(e, WaT, 0, b, i, j, pa)
                        if STORE:
                            alpha[b, j, i] = attention_silu_dot(pa, w_att, Sa, Ga, b, q)
                        else:
                            alpha[b, j, i] = attention_silu_sum(pa, w_att)
                    q += 1
            if ATT:
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
    def message(Z, b2, alpha, Mt, G, m_i):
        """Kernel 2: ``Mt = SiLU(Z + b2)``, its derivative ``G`` and ``m_i = sum_j alpha_ij Mt_ij``."""
        B, N = m_i.shape[0], m_i.shape[1]
        for b in nb.prange(B):
            m_i[b] = 0
            q = 0
            for j in range(N):
                for kk in range(N - 1):
                    i = target(j, kk)
                    a = alpha[b, j, i] if ATT else ONE
                    for c in range(M):
                        z = ld(Z[b, q, c]) + b2[c]
                        sg = sigmoid(z)
                        m = z * sg
                        Mt[b, q, c] = st(m)
                        if STORE:
                            G[b, q, c] = st(silu_grad(z, sg))
                        m_i[b, i, c] += a * m
                    q += 1

    @par
    def coordinate(U, bx, WxeT, e, wx, x, alpha, s_out, S, G, dx):
        """Kernel 3: ``s = wx . SiLU(U + W_xe e + bx)``, ``dx_i = sum_j alpha_ij rel_ij s_ij``, and
        for the backward pass the hidden SiLU ``S`` and its derivative ``G``."""
        B, N = x.shape[0], x.shape[1]
        for b in nb.prange(B):
            r = np.empty(Hx, x.dtype)
            diff = np.empty(3, x.dtype)
            dx[b] = 0
            q = 0
            for j in range(N):
                for kk in range(N - 1):
                    i = target(j, kk)
                    for c in range(Hx):
                        r[c] = ld(U[b, q, c]) + bx[c]
                    coordinate_terms(e, WxeT, 0, b, i, j, r)
                    acc = coordinate_silu_dot(r, wx, S, G, b, q) if STORE else coordinate_silu_sum(r, wx)
                    if STORE:
                        s_out[b, q] = acc
                    _, dist = geometry(x, b, i, j, diff)
                    a = alpha[b, j, i] if ATT else ONE
                    w = a * acc / (dist + ONE)
                    for d in range(3):
                        dx[b, i, d] += diff[d] * w
                    q += 1

    @par
    def coordinate_backward(coords, g_dx, g_mi, x, alpha, Mt, s_in, S, G, e, wx,
                            dU, g_x, g_wx, g_bx, g_WxeT, d_score):
        """Backward of kernel 3 from its stored ``S`` and ``G`` (only the attention's part when not
        ``coords``) and, with attention, of the softmax: ``dU``, the coordinate part of ``g_x``,
        per-graph partial sums of the gradients of ``wx``, ``bx`` and ``W_xe^T``, and the gradient
        of the scores ``d_score``."""
        B, N = x.shape[0], x.shape[1]
        for b in nb.prange(B):
            r = np.empty(Hx, x.dtype)
            diff = np.empty(3, x.dtype)
            d_alpha = np.zeros((N if ATT else 0, N if ATT else 0), x.dtype)
            g_x[b] = 0
            g_wx[b] = 0
            g_bx[b] = 0
            g_WxeT[b] = 0
            q = 0
            for j in range(N):
                for kk in range(N - 1):
                    i = target(j, kk)
                    da = f(0.0)
                    if ATT:
                        for c in range(M):
                            da += g_mi[b, i, c] * ld(Mt[b, q, c])
                    if coords:
                        d2, dist = geometry(x, b, i, j, diff)
                        rd = ONE / (dist + ONE)
                        a = alpha[b, j, i] if ATT else ONE
                        s = s_in[b, q]
                        g_diff = g_dx[b, i, 0] * diff[0] + g_dx[b, i, 1] * diff[1] + g_dx[b, i, 2] * diff[2]
                        da += g_diff * rd * s
                        ds = a * g_diff * rd
                        # rel = diff * r(dist): d rel = r d diff - r^2 diff d dist, d dist = diff / dist d diff
                        coef = -rd * rd / dist * g_diff * a * s if d2 > EPS else f(0.0)
                        for d in range(3):
                            gd = g_dx[b, i, d] * a * s * rd + diff[d] * coef
                            g_x[b, i, d] += gd
                            g_x[b, j, d] -= gd
                        for c in range(Hx):
                            g_wx[b, c] += ds * ld(S[b, q, c])
                            dr = ds * wx[c] * ld(G[b, q, c])
                            dU[b, q, c] = st(dr)
                            g_bx[b, c] += dr
                            r[c] = dr
                        coordinate_terms_backward(e, r, 0, b, i, j, g_WxeT)
                    if ATT:
                        d_alpha[j, i] = da
                    q += 1
            if ATT:
                for i in range(N):  # softmax: d score_ij = alpha_ij (d alpha_ij - sum_k alpha_ik d alpha_ik)
                    dot = f(0.0)
                    for j in range(N):
                        dot += alpha[b, j, i] * d_alpha[j, i]
                    for j in range(N):
                        d_score[b, j, i] = alpha[b, j, i] * (d_alpha[j, i] - dot)

    @par
    def message_backward(coords, dM, g_mi, alpha, G, dZ, g_b2):
        """Backward of kernel 2: ``dZ = (dM + alpha_ij g_mi) G`` (``dM`` read only with ``coords``)."""
        B, N = g_mi.shape[0], g_mi.shape[1]
        for b in nb.prange(B):
            g_b2[b] = 0
            q = 0
            for j in range(N):
                for kk in range(N - 1):
                    i = target(j, kk)
                    a = alpha[b, j, i] if ATT else ONE
                    for c in range(M):
                        dm = a * g_mi[b, i, c] + ld(dM[b, q, c]) if coords else a * g_mi[b, i, c]
                        dz = dm * ld(G[b, q, c])
                        dZ[b, q, c] = st(dz)
                        g_b2[b, c] += dz
                    q += 1

    @par
    def edge_input_backward(dA, G, d_score, Sa, Ga, x, e, WeT, w_att, g_ts, g_WeT, g_WaT, g_watt, g_x):
        """Backward of kernel 1, the attention's from its stored ``Sa`` and ``Ga``: gradients of the
        per-node products (``g_ts``, the layout of ``ts``), per-graph partial sums for ``WeT``,
        ``WaT`` and ``w_att``, and the distance part of ``g_x`` (added)."""
        B, N = g_ts.shape[0], g_ts.shape[1]
        for b in nb.prange(B):
            p = np.empty(H, g_ts.dtype)
            pa = np.empty(Ha, g_ts.dtype)
            diff = np.empty(3, g_ts.dtype)
            g_ts[b] = 0
            g_WeT[b] = 0
            g_WaT[b] = 0
            g_watt[b] = 0
            q = 0
            for j in range(N):
                for kk in range(N - 1):
                    i = target(j, kk)
                    pre_activation_backward(dA, G, e, WeT, x, b, i, j, q, p, diff, g_ts, g_WeT, g_x)
                    if ATT:
                        dsc = d_score[b, j, i]
                        for c in range(Ha):
                            g_watt[b, c] += dsc * ld(Sa[b, q, c])
                            pa[c] = dsc * w_att[c] * ld(Ga[b, q, c])
                        attention_node_terms_backward(pa, 2 * H, b, i, j, g_ts)
                        attention_terms_backward(e, pa, 0, b, i, j, g_WaT)
                    q += 1

    return SimpleNamespace(edge_input=edge_input, message=message, coordinate=coordinate,
                           coordinate_backward=coordinate_backward, message_backward=message_backward,
                           edge_input_backward=edge_input_backward)
