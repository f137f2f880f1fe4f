r"""The per-edge block of the EGNN and EGAT layers on dense graphs as one family of fused CPU kernels.

EGNN is EGAT with :math:`\alpha_{ij} \equiv 1` and :math:`\phi_x` reading the message only, so
both run the same kernels, compiled with or without the attention. On complete graphs of
:math:`N` nodes the eager dense path spends most of a training step in some forty element-wise
passes per layer over :math:`(B, N, N, 64)` edge tensors; here the element-wise work between the
per-edge matrix products is fused into three numba kernels forward and three backward, and the
products stay torch's (in bf16 under CPU autocast, as the eager path runs them):

.. math::
    \mathbf{a}_{ij} &= \mathrm{SiLU}\big(\mathbf{t}_i + \mathbf{s}_j + W_d \|\mathbf{x}_i -
        \mathbf{x}_j\|^2 + W_a \mathbf{e}_{ij}\big), \quad
        \sigma_{ij} = \mathbf{w}_{att}^\top \mathrm{SiLU}\big(\mathbf{u}_i + \mathbf{v}_j +
        W_{ae} \mathbf{e}_{ij}\big), \quad
        \alpha_{ij} = \mathrm{softmax}_{j \ne i}(\sigma_{ij}) &\text{(kernel 1)}

    \mathbf{m}_{ij} &= \mathrm{SiLU}(W_2 \mathbf{a}_{ij} + \mathbf{b}_2), \quad
        \mathbf{m}_i = \textstyle\sum_{j \ne i} \alpha_{ij} \mathbf{m}_{ij} &\text{(product, kernel 2)}

    s_{ij} &= \mathbf{w}_x^\top \mathrm{SiLU}(W_{xm} \mathbf{m}_{ij} + W_{xe} \mathbf{e}_{ij} +
        \mathbf{b}_x), \quad
        \Delta\mathbf{x}_i = \textstyle\sum_{j \ne i} \alpha_{ij}
        \frac{\mathbf{x}_i - \mathbf{x}_j}{\|\mathbf{x}_i - \mathbf{x}_j\| + 1} s_{ij}
        &\text{(product, kernel 3)}

where :math:`(\mathbf{t}, \mathbf{s})` and :math:`(\mathbf{u}, \mathbf{v})` are the per-node parts of
the first linear maps of :math:`\phi_e` and :math:`\phi_{att}`
(:func:`~ggik_core.model.fused.kernels.node_products`, inside the autograd function). Without
attention (:math:`H_a = 0`) :math:`\alpha_{ij} = 1` is a compiled-in constant, and without edge
features in :math:`\phi_x` (:math:`F_x = 0`) the :math:`W_{xe}` term is absent. The backward pass
of the softmax runs inside the coordinate kernel's backward, once the gradient of every
:math:`\alpha_{ij}` of a graph is known (the kernels: :mod:`~ggik_core.model.fused.edge_kernels`). The kernels compute in the dtype of their inputs: float32
(with a rational SiLU accurate to about 1e-7 relative, which vectorises) or float64 (exact; the
tests compare it with the PyG layers). Each kernel loops over the graphs in parallel; nothing is
written twice by two threads.

:data:`ALPHA_WEIGHTED` is the fused implementation the EGNN and EGAT layers register
(:func:`~ggik_core.model.layers.registry.register_layer`): its :meth:`~AlphaWeightedEdges.mismatch`
inspects the modules the kernels read, so a layer of another structure runs eagerly.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ggik_core.model.fused.edge_kernels import kernels
from ggik_core.model.fused.kernels import MODES, as_numpy, kernel_mode, match_threads, node_products, node_products_backward
from ggik_core.model.fused.node import fused_node_update


#: edge rows per block of graphs in inference (:meth:`FusedEdges.forward` without a backward
#: pass): about 1 MB per bf16 edge tensor of 64 channels, which stays in cache
INFERENCE_ROWS = 8192


class FusedEdges(torch.autograd.Function):
    r"""Autograd function of the fused edge block: :math:`(\sum_{j \ne i} \alpha_{ij} \mathbf{m}_{ij},
    \sum_{j \ne i} \alpha_{ij} \mathrm{rel}_{ij} s_{ij})` from the node features ``h``
    :math:`(B, N, C)`, ``x`` :math:`(B, N, 3)`, constant edge features ``e`` :math:`(B, N, N, F)`
    indexed ``[b, j, i]`` and the weights, all in the compute dtype: the first map of
    :math:`\phi_e` (``W1`` :math:`(H, 2C + 1 + F)` on :math:`[\mathbf{h}_i, \mathbf{h}_j, d_{ij}^2,
    \mathbf{a}_{ij}]`, ``b1``), ``W2`` :math:`(M, H)`, ``b2``; the attention's first map (``Wa``
    :math:`(H_a, 2C + F)`, ``ba``) and ``w_att`` :math:`(H_a,)`, or three ``None`` for
    :math:`\alpha \equiv 1`; and :math:`\phi_x`'s ``Wxm`` :math:`(H_x, M)`, ``bx``, ``WxeT``
    :math:`(F_x, H_x)`, ``wx`` :math:`(H_x,)`, or four ``None`` for a layer that does not move the
    nodes (:math:`\Delta\mathbf{x} = 0`). ``mode``: a key of :data:`MODES`; with "bf16" the per-node
    product of the first maps (:func:`~ggik_core.model.fused.kernels.node_products`), the
    :math:`(B, N (N - 1), \cdot)` edge tensors and the per-edge products are bf16, the rest float32.
    The diagonal :math:`j = i` is never stored or multiplied, and the forward pass stores the SiLU
    derivatives of :math:`\phi_e`'s two layers and the hidden SiLUs of :math:`\phi_x` and
    :math:`\phi_{att}` with their derivatives, so the backward pass evaluates no sigmoid."""

    @staticmethod
    def forward(ctx, h: Tensor, x: Tensor, e: Tensor, W1: Tensor, b1: Tensor, W2: Tensor, b2: Tensor,
                Wa: Tensor | None, ba: Tensor | None, w_att: Tensor | None, Wxm: Tensor | None,
                bx: Tensor | None, WxeT: Tensor | None, wx: Tensor | None, mode: str, store: bool) -> tuple[Tensor, Tensor]:
        B, N, C = h.shape
        att, coords = Wa is not None, Wxm is not None
        H, M = W1.shape[0], W2.shape[0]
        Ha = Wa.shape[0] if att else 0
        Hx = Wxm.shape[0] if coords else 0
        Fx = WxeT.shape[0] if coords else 0
        P = N * (N - 1)
        store = store and any(ctx.needs_input_grad)  # inference stores nothing for a backward pass
        k = kernels(mode, H, Ha, M, Hx, Fx, e.shape[3], store)
        match_threads()
        dt = x.dtype
        ts, h_p, Wts = node_products(h, [W1, Wa] if att else [W1], C, mode)
        WeT = W1[:, 2 * C:].t().contiguous()
        WaT = Wa[:, 2 * C:].t().contiguous() if att else torch.empty(0, 0, dtype=dt)
        et = torch.bfloat16 if MODES[mode][1] else dt  # the edge tensors' dtype
        W2e = W2.to(et)
        Pg = P if store else 0  # the rows of the tensors only the backward pass reads
        alpha = torch.empty(B, N, N, dtype=dt) if att else torch.empty(0, 0, 0, dtype=dt)
        ba_, w_att_ = (ba, w_att) if att else (torch.empty(0, dtype=dt), torch.empty(0, dtype=dt))
        Wxe = Wxm.to(et) if coords else None
        m_i = torch.empty(B, N, M, dtype=dt)
        dx = torch.empty(B, N, 3, dtype=dt) if coords else torch.zeros(B, N, 3, dtype=dt)  # no phi_x: nodes stay
        # inference runs in blocks of graphs whose edge tensors stay in cache and are not mapped
        # afresh (the same function: each graph's edges are computed alone); training keeps the
        # whole batch's for the backward pass. Decoding 1,000 Panda samples: 245 ms, not 494
        n = B if store else max(1, INFERENCE_ROWS // P)
        for s0 in range(0, B, n):
            sl, Bb = slice(s0, s0 + n), min(n, B - s0)
            A, G1 = torch.empty(Bb, P, H, dtype=et), torch.empty(Bb, Pg, H, dtype=et)
            Sa, Ga = torch.empty(Bb, Pg if att else 0, Ha, dtype=et), torch.empty(Bb, Pg if att else 0, Ha, dtype=et)
            al = alpha[sl] if att else alpha
            k.edge_input(*map(as_numpy, (ts[sl], b1, ba_, x[sl], e[sl], WeT, WaT, w_att_, A, G1, Sa, Ga, al)))
            Z = torch.mm(A.view(Bb * P, H), W2e.t()).view(Bb, P, M)
            Mt, G2 = torch.empty_like(Z), torch.empty(Bb, Pg, M, dtype=et)
            k.message(*map(as_numpy, (Z, b2, al, Mt, G2, m_i[sl])))
            del Z
            S3 = G3 = s_ij = None
            if coords:
                U = torch.mm(Mt.view(Bb * P, M), Wxe.t()).view(Bb, P, Hx)
                S3, G3 = torch.empty(Bb, Pg, Hx, dtype=et), torch.empty(Bb, Pg, Hx, dtype=et)
                s_ij = torch.empty(Bb, Pg, dtype=dt)
                k.coordinate(*map(as_numpy, (U, bx, WxeT, e[sl], wx, x[sl], al, s_ij, S3, G3, dx[sl])))
        if store:
            ctx.save_for_backward(x, e, WeT, WaT, h_p, Wts, w_att, W2e, Wxe, wx, A, G1, Sa, Ga, alpha, Mt, G2,
                                  S3, G3, s_ij)
        ctx.mode, ctx.att, ctx.sizes = mode, att, (C, H, Ha, M, Hx, Fx, W1.shape, None if Wa is None else Wa.shape)
        return m_i, dx

    @staticmethod
    def backward(ctx, g_mi: Tensor | None, g_dx: Tensor | None):
        (x, e, WeT, WaT, h_p, Wts, w_att, W2e, Wxe, wx, A, G1, Sa, Ga, alpha, Mt, G2,
         S3, G3, s_ij) = ctx.saved_tensors
        C, H, Ha, M, Hx, Fx, W1_shape, Wa_shape = ctx.sizes
        att, coords = ctx.att, S3 is not None
        B, N, _ = x.shape
        P = A.shape[1]
        k = kernels(ctx.mode, H, Ha, M, Hx, Fx, e.shape[3])
        match_threads()
        dt = x.dtype
        g_mi = torch.zeros(B, N, M, dtype=dt) if g_mi is None else g_mi.to(dt).contiguous()
        g_dx = torch.zeros(B, N, 3, dtype=dt) if g_dx is None else g_dx.to(dt).contiguous()
        none3 = torch.empty(0, 0, 0, dtype=Mt.dtype)
        empty1, empty2 = torch.empty(0, dtype=dt), torch.empty(0, 0, dtype=dt)
        dU = torch.empty_like(S3) if coords else none3
        g_x = torch.empty_like(x)
        g_wx, g_bx = torch.empty(B, Hx, dtype=dt), torch.empty(B, Hx, dtype=dt)
        g_WxeT = torch.empty(B, Fx, Hx, dtype=dt)
        d_score = torch.empty(B, N, N, dtype=dt) if att else torch.empty(0, 0, 0, dtype=dt)
        k.coordinate_backward(coords, *map(as_numpy, (
            g_dx, g_mi, x, alpha, Mt, s_ij if coords else empty2, S3 if coords else none3, G3 if coords else none3,
            e, wx if coords else empty1, dU, g_x, g_wx, g_bx, g_WxeT, d_score)))
        g_Wxm = g_bx_out = g_WxeT_out = g_wx_out = None
        dM = none3
        if coords:
            dU2 = dU.view(B * P, Hx)
            dM = torch.mm(dU2, Wxe).view(B, P, M)
            g_Wxm = torch.mm(dU2.t(), Mt.view(B * P, M)).to(dt)
            g_bx_out, g_WxeT_out, g_wx_out = g_bx.sum(0), g_WxeT.sum(0), g_wx.sum(0)
        dZ = torch.empty_like(G2)
        g_b2 = torch.empty(B, M, dtype=dt)
        k.message_backward(coords, *map(as_numpy, (dM, g_mi, alpha, G2, dZ, g_b2)))
        dZ2 = dZ.view(B * P, M)
        dA = torch.mm(dZ2, W2e).view(B, P, H)
        g_W2 = torch.mm(dZ2.t(), A.view(B * P, H)).to(dt)
        g_ts = torch.empty(B, N, 2 * (H + Ha), dtype=dt)
        g_WeT = torch.empty(B, *WeT.shape, dtype=dt)
        g_WaT = torch.empty(B, *WaT.shape, dtype=dt)
        g_watt = torch.empty(B, Ha, dtype=dt)
        k.edge_input_backward(*map(as_numpy, (dA, G1, d_score, Sa, Ga, x, e, WeT, w_att if att else empty1,
                                              g_ts, g_WeT, g_WaT, g_watt, g_x)))
        shapes = [W1_shape, Wa_shape] if att else [W1_shape]
        g_h, g_maps = node_products_backward(g_ts, h_p, Wts, shapes, C)
        g_W1 = g_maps[0]
        g_W1[:, 2 * C:] = g_WeT.sum(0).t()
        g_b1 = g_ts[..., :H].sum((0, 1))
        g_Wa = g_ba = g_w_att = None
        if att:
            g_Wa = g_maps[1]
            g_Wa[:, 2 * C:] = g_WaT.sum(0).t()
            g_ba, g_w_att = g_ts[..., 2 * H:2 * H + Ha].sum((0, 1)), g_watt.sum(0)
        return (g_h, g_x, None, g_W1, g_b1, g_W2, g_b2.sum(0), g_Wa, g_ba, g_w_att,
                g_Wxm, g_bx_out, g_WxeT_out, g_wx_out, None, None)


def _is_linear(m: nn.Module, n_in: int | None, n_out: int | None, bias: bool) -> bool:
    return (type(m) is nn.Linear and (n_in is None or m.in_features == n_in)
            and (n_out is None or m.out_features == n_out) and (m.bias is not None) == bias)


def _mlp_mismatch(name: str, mlp: nn.Module | None, n_in: int, n_out: int, out_bias: bool, out_act: bool) -> str | None:
    """Why ``mlp`` is not ``Linear(n_in, hidden), SiLU, Linear(hidden, n_out)`` (and a SiLU after it
    with ``out_act``), or ``None``."""
    layers = list(mlp) if isinstance(mlp, nn.Sequential) else None
    if layers is None or len(layers) != 3 + out_act:
        return f"{name} is not a two-layer MLP"
    for act in layers[1::2]:
        if type(act) is not nn.SiLU:
            return f"{name}'s activation is {type(act).__name__}, the kernels compute SiLU"
    if not _is_linear(layers[0], n_in, None, True):
        return f"{name}'s first layer is not a Linear map of {n_in} inputs with a bias"
    if not _is_linear(layers[2], layers[0].out_features, n_out, out_bias):
        return f"{name}'s second layer is not a Linear map to {n_out} outputs{' with' if out_bias else ' without'} a bias"
    return None


class AlphaWeightedEdges:
    r"""The fused implementation of the α-weighted edge block (EGNN: :math:`\alpha \equiv 1`;
    EGAT: softmax attention), registered by both layers. It reads the layer's modules, so
    :meth:`mismatch` checks their structure: :math:`\phi_e` = Linear(2C + 1 + F, H), SiLU,
    Linear(H, M), SiLU; :math:`\phi_{att}` absent, or Linear(2C + F, H_a), SiLU, Linear(H_a, 1)
    without bias; :math:`\phi_x` absent, or Linear(M [+ F], H_x), SiLU, Linear(H_x, 1) without
    bias; :math:`\phi_h` absent, or Linear(C + M, H_h), SiLU, Linear(H_h, C); the norm absent or a
    :class:`~torch.nn.LayerNorm` over the C channels."""

    def mismatch(self, layer: nn.Module) -> str | None:
        """Why the kernels cannot run ``layer``, or ``None`` when they compute its function."""
        C, F, M = layer.channels, layer.edge_dim, layer.message_channels
        if getattr(layer, "symmetric", False):
            return "symmetric messages (one per node pair) have no fused kernels"
        why = _mlp_mismatch("phi_e", layer.phi_e, 2 * C + 1 + F, M, True, True)
        if why:
            return why
        att = getattr(layer, "phi_att", None)
        if att is not None:
            why = _mlp_mismatch("phi_att", att, 2 * C + F, 1, False, False)
            if why:
                return why
        if layer.phi_x is not None:
            n_in = layer.phi_x[0].in_features if len(layer.phi_x) else 0
            if n_in not in (M, M + F):
                return "phi_x reads neither the message nor the message and the edge features"
            why = _mlp_mismatch("phi_x", layer.phi_x, n_in, 1, False, False)
            if why:
                return why
        if layer.phi_h is not None:
            why = _mlp_mismatch("phi_h", layer.phi_h, C + M, C, True, False)
            if why:
                return why
        ln = layer.layer_norm
        if ln is not None and not (type(ln) is nn.LayerNorm and tuple(ln.normalized_shape) == (C,)
                                   and ln.weight is not None and ln.bias is not None):
            return "the norm is not a LayerNorm over the node features"
        return None

    def bind(self, layer: nn.Module) -> "BoundEdges":
        """The fused forward of ``layer`` (call :meth:`mismatch` first)."""
        return BoundEdges(layer)


class BoundEdges:
    """The fused dense forward of one layer: :class:`FusedEdges`, then the fused node update."""

    def __init__(self, layer: nn.Module) -> None:
        self.layer = layer

    def __call__(self, h: Tensor, x: Tensor, e: Tensor | None) -> tuple[Tensor, Tensor]:
        layer = self.layer
        return fused_node_update(layer, h, x, *fused_edges(layer, h, x, e))


def fused_edges(layer: nn.Module, h: Tensor, x: Tensor, e: Tensor | None) -> tuple[Tensor, Tensor]:
    r""":math:`(\sum_{j \ne i} \alpha_{ij} \mathbf{m}_{ij}, \sum_{j \ne i} \alpha_{ij} \mathrm{rel}_{ij}
    \phi_x(\cdot))` of a layer that :meth:`AlphaWeightedEdges.mismatch` accepts, on dense graphs,
    through :class:`FusedEdges`: in "bf16" mode under CPU bf16 autocast, otherwise in ``x``'s dtype
    (float32 or float64)."""
    dt = x.dtype
    mode = kernel_mode(dt)
    # what a backward pass would read is stored only where one can follow: inside the Function's
    # forward grad mode is always off, and needs_input_grad says only that parameters require grad
    store = torch.is_grad_enabled()
    with torch.autocast("cpu", enabled=False):
        B, N = h.shape[:2]
        e = torch.zeros(B, N, N, 0, dtype=dt) if e is None else e.to(dt)
        lin0, lin1 = layer.phi_e[0], layer.phi_e[2]
        att = getattr(layer, "phi_att", None)
        Wa = ba = w_att = None
        if att is not None:
            Wa, ba, w_att = att[0].weight.to(dt), att[0].bias.to(dt), att[2].weight.reshape(-1).to(dt)
        Wxm = bx = WxeT = wx = None
        if layer.phi_x is not None:
            W = layer.phi_x[0].weight.to(dt)
            M = layer.message_channels
            if W.shape[1] == M:  # phi_x reads the message only
                Wxm, WxeT = W, W.new_empty(0, W.shape[0])
            else:
                Wxm, WxeT = W[:, :M].contiguous(), W[:, M:].t().contiguous()
            bx, wx = layer.phi_x[0].bias.to(dt), layer.phi_x[2].weight.reshape(-1).to(dt)
        return FusedEdges.apply(h.to(dt), x.contiguous(), e.detach().contiguous(), lin0.weight.to(dt),
                                lin0.bias.to(dt), lin1.weight.to(dt), lin1.bias.to(dt), Wa, ba, w_att,
                                Wxm, bx, WxeT, wx, mode, store)


#: the fused implementation that the EGNN and EGAT layers register
ALPHA_WEIGHTED = AlphaWeightedEdges()
