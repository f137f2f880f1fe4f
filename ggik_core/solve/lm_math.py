r"""The maths of one Levenberg–Marquardt step (:mod:`ggik_core.solve.refine` drives the loop):
the rotation error (the SO(3) logarithm), the weighted pose residual and its geometric
Jacobian, and the damped, limit-aware step with its batched normal-equation solve."""

from __future__ import annotations

import torch
from torch import Tensor

from ggik_core.robots.transforms import broadcast_shape


def so3_log(R: Tensor) -> Tensor:
    """Rotation vectors ``(..., 3)`` of rotation matrices ``(..., 3, 3)``."""
    skew = torch.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1)
    s = skew.norm(dim=-1, keepdim=True)  # 2 sin(theta)
    c = (R[..., 0, 0] + R[..., 1, 1] + R[..., 2, 2] - 1)[..., None]  # 2 cos(theta)
    theta = torch.atan2(s, c)
    scale = torch.where(s > 1e-8, theta / s.clamp(min=1e-12), 0.5 + theta * theta / 12)
    vec = skew * scale
    # near pi: axis from the symmetric part
    near_pi = (theta > 3.13).squeeze(-1)
    if near_pi.any():
        B = (R + R.transpose(-1, -2)) / 2 - torch.eye(3, dtype=R.dtype, device=R.device) * ((c[..., None] / 2))
        axis = torch.diagonal(B, dim1=-2, dim2=-1).clamp(min=0).sqrt()
        # fix signs using off-diagonal terms relative to the largest component
        k = axis.argmax(-1, keepdim=True)
        row = torch.gather(B, -2, k[..., None].expand(*k.shape, 3)).squeeze(-2)
        axis = row / row.norm(dim=-1, keepdim=True).clamp(min=1e-12)
        axis = torch.where((axis * skew).sum(-1, keepdim=True) < 0, -axis, axis)
        vec = torch.where(near_pi[..., None], axis * theta, vec)
    return vec


def _rotation_error(Rg: Tensor, x: Tensor, y: Tensor, z: Tensor) -> Tensor:
    r""":math:`\log(R_g R^\top)^\vee` ``(3, B)`` for goal rotations ``Rg (3, 3, 1, B)`` (a unit
    axis before the batch, see :func:`goal_rotations`) and the columns ``x, y, z (3, B)`` of
    :math:`R`, without host synchronisation.

    :math:`M = R_g R^\top = \sum_k (R_g)_{:,k}\, (R_{:,k})^\top`. With
    :math:`\theta = \operatorname{atan2}(\lVert s\rVert, \operatorname{tr} M - 1)` and
    :math:`s = (M_{32} - M_{23}, M_{13} - M_{31}, M_{21} - M_{12})`, the rotation vector is
    :math:`\theta s / \lVert s\rVert`. Near
    :math:`\pi` the axis from :math:`s` loses digits but keeps the right magnitude, which is all
    a descent step needs; reported errors are always recomputed by FK.
    """
    g0, g1, g2 = Rg.unbind(1)  # the goal's columns, (3, 1, B) each
    M = g0 * x
    M.addcmul_(g1, y).addcmul_(g2, z)  # (3, 3, B)
    A = M - M.transpose(0, 1)
    s = torch.stack([A[2, 1], A[0, 2], A[1, 0]], 0)
    # the norm as a sum of squares: a reduction over the leading axis of a batch-last tensor
    # (``norm(dim=0)``) takes a slow strided path, about 20x slower at B = 2000
    sn = (s * s).sum(0, keepdim=True).sqrt()
    c = M.diagonal(dim1=0, dim2=1).sum(-1, keepdim=True).T - 1
    # atan2 of a tiny sine is exact, so theta / |s| tends to 1/2 without a series (and s = 0 gives 0)
    return s * (torch.atan2(sn, c) / sn.clamp(min=1e-300))


def goal_rotations(R: Tensor) -> Tensor:
    """Goal rotations ``(B, 3, 3)`` in the layout of :func:`residual_jacobian`: ``(3, 3, 1, B)``."""
    return R.permute(1, 2, 0)[:, :, None].contiguous()


def batch_last_chain(links: Tensor) -> tuple[Tensor | list[tuple[Tensor, Tensor]], Tensor]:
    r"""The chain as :func:`residual_jacobian` uses it, from link transforms ``(n+1, 4, 4)``
    (shared by every row) or ``(B, n+1, 4, 4)``: the transposed links of the joints
    :math:`L_i^\top`, and the base frame ``F0`` ``(4, 3, 1)`` or ``(4, 3, B)`` (see
    :func:`residual_jacobian` for the frame layout). Shared links come as one pair per joint
    (the columns of :math:`L_i^\top` that act on z and p, and on x and y), per-row links as one
    tensor ``(n, 4, 4, B)``."""
    Lt = links[..., 1:, :, :].transpose(-1, -2)
    F0 = links[..., 0, :3, :].transpose(-1, -2)  # (..., 4, 3): F0[k] = column k of the top rows
    if links.dim() == 3:
        return [(L[:, 2:].contiguous(), L[:, :2].contiguous()) for L in Lt], F0[..., None].contiguous()
    return Lt.permute(1, 2, 3, 0).contiguous(), F0.permute(1, 2, 0).contiguous()


def residual_jacobian(Lt: Tensor | list[tuple[Tensor, Tensor]], F0: Tensor, q: Tensor, Rg: Tensor, pg: Tensor,
                      rot_weight: float) -> tuple[Tensor, Tensor]:
    r"""Weighted error ``(6, B)`` and Jacobian ``(6, n, B)`` of a batch stored batch-last.

    Batch-last ("structure of arrays") keeps every elementwise operation on contiguous rows. A
    frame's top ``3 x 4`` block :math:`[x\ y\ z\ p]` is stored by columns as ``F (4, 3, B)``
    (``F[0]`` the x axis, ..., ``F[3]`` the origin, each 3 rows of ``B``). Turning by
    :math:`R_z(q)` and applying the constant link :math:`L` gives

    .. math::
        F' = L^\top \begin{bmatrix} c\,x + s\,y \\ c\,y - s\,x \\ z \\ p \end{bmatrix}

    (rows :math:`\ell_0..\ell_3` of :math:`L` mix the columns), so one joint costs two fused
    multiply-adds on the x and y columns and a ``(4 x 4) @ (4 x 3B)`` product for the whole batch:
    48 multiply-adds per row, in few enough operations that small batches stay cheap too.

    Args:
        Lt: transposed joint links from :func:`batch_last_chain` (pairs per joint when shared by
            every row, or ``(n, 4, 4, B)``).
        F0: the base frame ``(4, 3, 1)`` or ``(4, 3, B)``.
        q: joint angles ``(n, B)``.
        Rg, pg: goal rotations ``(3, 3, 1, B)`` (:func:`goal_rotations`) and positions ``(3, B)``.
    """
    n, B = q.shape
    c, s = q.cos(), q.sin()
    # per joint, the factors of x and of y in the turned (x, y): [c, -s] and [s, c], (2, 1, B) each
    fx = torch.stack([c, -s], 1)[:, :, None].unbind(0)
    fy = torch.stack([s, c], 1)[:, :, None].unbind(0)
    F = F0.expand(4, 3, B).reshape(4, 3 * B)
    shared = isinstance(Lt, list)
    zs, os = [], []
    for i in range(n):
        x, y, z, p = F.view(4, 3, B).unbind(0)
        zs.append(z)
        os.append(p)
        xy = fx[i] * x
        xy.addcmul_(fy[i], y)  # (2, 3, B): the turned x and y axes
        if shared:
            L_zp, L_xy = Lt[i]
            F = torch.mm(L_zp, F[2:]).addmm_(L_xy, xy.view(2, 3 * B))
        else:
            F = torch.einsum("kjb,jrb->krb", Lt[i], torch.cat([xy, F[2:].view(2, 3, B)], 0)).reshape(4, 3 * B)
    x, y, z, p = F.view(4, 3, B).unbind(0)
    Z = torch.stack(zs, 1)  # (3, n, B): joint axes
    d = p[:, None] - torch.stack(os, 1)  # (3, n, B): from each axis origin to the end effector
    Z0, Z1, Z2 = Z.unbind(0)
    d0, d1, d2 = d.unbind(0)
    Jv = torch.stack([Z1 * d2 - Z2 * d1, Z2 * d0 - Z0 * d2, Z0 * d1 - Z1 * d0], 0)
    J = torch.cat([Jv, rot_weight * Z], 0)
    e = torch.cat([pg - p, rot_weight * _rotation_error(Rg, x, y, z)], 0)
    return e, J


def pose_residual(chain: Tensor, q: Tensor, goal: Tensor, rot_weight: float) -> tuple[Tensor, Tensor]:
    """Error ``(..., 6)`` and geometric Jacobian ``(..., 6, n)`` (rotation rows weighted), broadcast."""
    n = q.shape[-1]
    batch = broadcast_shape(chain.shape[:-3], q.shape[:-1], goal.shape[:-2])
    qf = q.to(chain.dtype).expand(*batch, n).reshape(-1, n)
    g = goal.to(chain.dtype).expand(*batch, 4, 4).reshape(-1, 4, 4)
    links = chain if chain.dim() == 3 else chain.expand(*batch, n + 1, 4, 4).reshape(-1, n + 1, 4, 4)
    Lt, F0 = batch_last_chain(links)
    e, J = residual_jacobian(Lt, F0, qf.T.contiguous(), goal_rotations(g[:, :3, :3]), g[:, :3, 3].T.contiguous(), rot_weight)
    return e.T.reshape(*batch, 6), J.permute(2, 0, 1).reshape(*batch, 6, n)


#: from this many rows on, :func:`lm_step` solves by elimination on the batch-last tensors; below,
#: with LAPACK per row (which needs a transposed copy, and costs per matrix rather than per op)
ELIMINATION_MIN_ROWS = 256


def lm_step(J: Tensor, e: Tensor, q: Tensor, lam: Tensor, lo: Tensor, hi: Tensor, turn: Tensor | None = None) -> Tensor:
    r"""One limit-aware damped step ``q' (n, B)`` (batch-last; see the module docstring).

    Blocked joints: :math:`q_i \le l_i` with :math:`g_i < 0`, or :math:`q_i \ge u_i` with
    :math:`g_i > 0`, where :math:`g = J^\top e`. Their rows and columns of the normal matrix are
    zero apart from :math:`\lambda` on the diagonal, so their step is exactly zero. The normal
    matrix :math:`J_f^\top J_f` is built as a sum of six outer products (contiguous rows), then
    solved (:func:`solve_normal`). ``turn`` (:math:`2\pi` for joints whose range spans a full turn
    or more, else 0): such a joint stepping past a bound continues a turn back, at the same angle
    inside the range, instead of stopping on the bound (so it is never blocked, even when it sits
    exactly on the bound).
    """
    n, B = q.shape
    g = (J * e[:, None, :]).sum(0)  # J^T e, (n, B)
    blocked = ((q <= lo) & (g < 0)) | ((q >= hi) & (g > 0))
    if turn is not None:  # a full-turn joint on a bound is never blocked: its step wraps
        blocked &= turn == 0
    free = (~blocked).to(J.dtype)
    Jf = J * free[None]
    A = torch.empty(n, n + 1, B, dtype=J.dtype, device=J.device)  # [H | J_f^T e], batch-last
    H = A[:, :n]
    cols, rows = Jf[:, :, None].unbind(0), Jf[:, None].unbind(0)  # (n, 1, B) and (1, n, B) per task row
    torch.mul(cols[0], rows[0], out=H)
    for r in range(1, J.shape[0]):
        H.addcmul_(cols[r], rows[r])
    H.diagonal(dim1=0, dim2=1).add_(lam[:, None])
    torch.mul(g, free, out=A[:, n])
    q_new = q + solve_normal(A)
    if turn is not None:
        q_new = torch.where(q_new > hi, q_new - turn, torch.where(q_new < lo, q_new + turn, q_new))
    return torch.minimum(torch.maximum(q_new, lo), hi)


def solve_normal(A: Tensor) -> Tensor:
    r"""Solutions ``x (n, B)`` of the symmetric positive definite systems :math:`H x = b` stored
    batch-last as ``A = [H | b]`` ``(n, n + 1, B)`` (overwritten).

    On the CPU with at least :data:`ELIMINATION_MIN_ROWS` rows: Gaussian elimination without
    pivoting (stable for positive definite :math:`H`; :math:`\lambda > 0` makes it so) as about
    :math:`4n` whole-batch operations on contiguous rows, then back substitution. Otherwise LAPACK
    per row.
    """
    n, _, B = A.shape
    if B < ELIMINATION_MIN_ROWS or A.device.type != "cpu":
        return torch.linalg.solve_ex(A[:, :n].permute(2, 0, 1), A[:, n].T[..., None])[0][..., 0].T
    for k in range(n - 1):
        f = A[k + 1:, k] / A[k, k]  # (n-k-1, B)
        A[k + 1:, k + 1:].addcmul_(f[:, None], A[k, None, k + 1:], value=-1.0)
    x = torch.empty(n, B, dtype=A.dtype, device=A.device)
    for k in range(n - 1, -1, -1):
        torch.div(A[k, n], A[k, k], out=x[k])
        if k:
            A[:k, n].addcmul_(A[:k, k], x[k], value=-1.0)
    return x
