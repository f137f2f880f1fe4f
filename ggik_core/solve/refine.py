r"""Batched, limit-aware Levenberg–Marquardt (LM) refinement of IK solutions, with re-seeding.

All candidates of all goals are refined at once, as one flat batch of ``B`` rows. For a row with
joint angles :math:`q \in \mathbb{R}^n`, end-effector pose :math:`(R, p)` and goal
:math:`(R_g, p_g)`, the weighted pose error and the geometric Jacobian are

.. math::
    e = \begin{bmatrix} p_g - p \\ w \log(R_g R^\top)^\vee \end{bmatrix},\qquad
    J_{:,i} = \begin{bmatrix} z_i \times (p - o_i) \\ w z_i \end{bmatrix}

(:math:`z_i`, :math:`o_i`: axis and origin of joint ``i`` in the base frame, :math:`w` the
rotation weight in metres per radian), so that :math:`e(q + \delta) \approx e(q) - J\delta`.

**The step.** Joints sitting on a bound whose descent direction :math:`g = J^\top e` points out of
the box are *blocked* for this step (their columns of :math:`J` and entries of :math:`g` set to
zero), so the free joints compensate instead of the whole step being clipped away. The step
solves the damped normal equations in joint space (``n x n``, batched):

.. math::
    (J_f^\top J_f + \lambda I)\,\delta = J_f^\top e,\qquad q' = \Pi_{[l, u]}(q + \delta)

with :math:`\Pi` the clamp to the limits (continuous joints have infinite bounds and are never
clamped; they are wrapped to :math:`(-\pi, \pi]` at the end). The step is accepted when
:math:`\lVert e(q')\rVert^2 < \lVert e(q)\rVert^2` (then :math:`\lambda \leftarrow 0.3\lambda`),
otherwise rejected (:math:`\lambda \leftarrow 4\lambda`).

**Re-seeding.** A row that has not converged ``restart_after`` iterations after its last seed,
whose squared error stopped falling fast (less than a factor ``stall_ratio`` between two checks,
the signature of a local minimum or a limit), or whose damping has grown to :data:`LAMBDA_MAX`,
is re-seeded with a configuration drawn
uniformly inside the limits and refined again, until it converges or the iteration budget
``max_iter`` (or the wall-time budget ``time_budget_s``) runs out. Every row returns its converged
configuration, or else the best configuration it reached over all its seeds — so an unreachable
goal still gets its best candidates.

**Bookkeeping.** Every ``check_every`` iterations converged rows leave the batch (it is
compacted, so later iterations only pay for the rows still working) and stale rows are re-seeded;
between checks nothing is read back to the host.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import Tensor

from ggik_core.robots.transforms import broadcast_shape, pose_errors, wrap_angle
from ggik_core.solve.joints import fit_to_limits

#: damping above which a row counts as stalled (and is re-seeded)
LAMBDA_MAX = 1e3
LAMBDA_MIN = 1e-9
#: squared error (m^2, about 1 mm) below which a row is never called stalled: it is converging
STALL_MIN_ERR = 1e-6
#: damping factors after an accepted / a rejected step
LAMBDA_DOWN, LAMBDA_UP = 0.3, 4.0


@dataclass(frozen=True)
class RefineConfig:
    """Settings of :func:`refine`.

    Attributes:
        max_iter: LM iterations per candidate, re-seeds included.
        pos_tol: convergence threshold on the position error (metres).
        rot_tol: convergence threshold on the rotation error (radians).
        damping: initial :math:`\\lambda` (also after every re-seed).
        rot_weight: metres per radian in the error norm.
        restart_after: an unconverged candidate is re-seeded this many iterations after its last
            seed (0: never re-seed).
        stall_ratio, stall_age: it is re-seeded earlier, at a check, when it is at least
            ``stall_age`` iterations old and its squared error fell by less than the factor
            ``stall_ratio`` since the previous check (converging rows shrink it by orders of
            magnitude; rows stuck on a limit or in a local minimum barely move). Rows already within
            about 1 mm (:data:`STALL_MIN_ERR`) are left to converge.
        time_budget_s: stop after this much wall time and return the best so far (None: no limit).
        check_every: iterations between convergence checks, batch compaction and re-seeding.
        seed: seed of the random stream of re-seeds (results are deterministic for a given batch).
        extra_seeds: the solver (:mod:`ggik_core.solve.solver`) refines ``k (1 + extra_seeds)``
            seeds per goal as one pool and returns ``k`` (see ``keep`` in :func:`refine`): a goal
            is done when ``k`` have converged, so its slowest seeds cost nothing (0: no pool).
        min_pool_rows: on small batches (few goals) each goal gets up to ``k`` extra seeds, towards
            this many rows in all: small batches cost per operation, not per row, so the extra
            seeds are almost free and the ``k`` fastest of ``2k`` converge sooner.
        distinct_tol: from a pool, converged candidates that differ from the ones already picked
            by at least this much (radians, some joint) are picked first.
    """

    max_iter: int = 200
    pos_tol: float = 1e-5  # metres
    rot_tol: float = 1e-4  # radians
    damping: float = 0.1
    rot_weight: float = 0.5  # metres per radian in the error norm
    restart_after: int = 16
    stall_ratio: float = 0.8
    stall_age: int = 4
    time_budget_s: float | None = None
    check_every: int = 2
    seed: int = 0
    extra_seeds: float = 0.25
    min_pool_rows: int = 256
    distinct_tol: float = 0.1


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


def _rotation_error(Rg: Tensor, R: Tensor) -> Tensor:
    r""":math:`\log(R_g R^\top)^\vee` ``(3, B)`` for rotations stored ``(3, 3, B)``, without host
    synchronisation.

    :math:`M = R_g R^\top` has :math:`M_{ij} = \sum_k (R_g)_{ik} R_{jk}`. With
    :math:`\theta = \operatorname{atan2}(\lVert s\rVert, \operatorname{tr} M - 1)` and
    :math:`s = (M_{32} - M_{23}, M_{13} - M_{31}, M_{21} - M_{12})`, the rotation vector is
    :math:`\theta s / \lVert s\rVert` (series :math:`s(1/2 + \theta^2/12)` near 0). Near
    :math:`\pi` the axis from :math:`s` loses digits but keeps the right magnitude, which is all
    a descent step needs; reported errors are always recomputed by FK.
    """
    M = (Rg[:, None, :, :] * R[None, :, :, :]).sum(2)
    s = torch.stack([M[2, 1] - M[1, 2], M[0, 2] - M[2, 0], M[1, 0] - M[0, 1]], 0)
    sn = s.norm(dim=0, keepdim=True)
    c = (M[0, 0] + M[1, 1] + M[2, 2] - 1)[None]
    theta = torch.atan2(sn, c)
    small = (sn < 1e-8) & (c > 0)
    scale = torch.where(small, 0.5 + theta * theta / 12, theta / sn.clamp(min=1e-300))
    return s * scale


def link_operators(links: Tensor) -> Tensor:
    r"""The forward-kinematics operators of :func:`residual_jacobian`: link transforms
    ``(..., n+1, 4, 4)`` -> ``(..., n, 36, 12)``.

    A ``3 x 4`` frame is stored as its 12 entries (row-major). Right-multiplying it by a constant
    ``4 x 4`` matrix :math:`X` is the linear map :math:`I_3 \otimes X^\top` on those entries. For
    joint ``i`` with link :math:`L` (rows :math:`\ell_0..\ell_3`) the operator stacks the maps of
    :math:`P = [\ell_0; \ell_1; 0; 0]`, :math:`Q = [-\ell_1; \ell_0; 0; 0]` and
    :math:`S = [0; 0; \ell_2; \ell_3]`.
    """
    L = links[..., 1:, :, :]
    zero = torch.zeros_like(L[..., 0, :])
    P = torch.stack([L[..., 0, :], L[..., 1, :], zero, zero], -2)
    Q = torch.stack([-L[..., 1, :], L[..., 0, :], zero, zero], -2)
    S = torch.stack([zero, zero, L[..., 2, :], L[..., 3, :]], -2)
    ops = []
    for X in (P, Q, S):
        op = torch.zeros(*X.shape[:-2], 12, 12, dtype=links.dtype, device=links.device)
        for r in range(3):  # I_3 (x) X^T: each row of the frame is multiplied by X
            op[..., 4 * r:4 * r + 4, 4 * r:4 * r + 4] = X.transpose(-1, -2)
        ops.append(op)
    return torch.cat(ops, -2)


def residual_jacobian(K: Tensor, M0: Tensor, q: Tensor, Rg: Tensor, pg: Tensor, rot_weight: float) -> tuple[Tensor, Tensor]:
    r"""Weighted error ``(6, B)`` and Jacobian ``(6, n, B)`` of a batch stored batch-last.

    Batch-last ("structure of arrays") keeps every elementwise operation on contiguous rows.
    Forward kinematics on ``3 x 4`` frames :math:`M = [x\ y\ z\ p]` stored as 12 rows of ``B``:
    turning by :math:`R_z(q)` and applying the constant link :math:`L` gives

    .. math::
        M' = [x c + y s,\ y c - x s,\ z,\ p]\,L = c\,(M P) + s\,(M Q) + M S,

    one ``(36 x 12) @ (12 x B)`` product (:func:`link_operators`) and two fused multiply-adds per
    joint for the whole batch.

    Args:
        K: :func:`link_operators` ``(n, 36, 12)`` shared by every row, or ``(n, 36, 12, B)``.
        M0: the first link's top rows as 12 entries ``(12, 1)`` or ``(12, B)``.
        q: joint angles ``(n, B)``.
        Rg, pg: goal rotations ``(3, 3, B)`` and positions ``(3, B)``.
    """
    n, B = q.shape
    c, s = q.cos(), q.sin()
    M = M0.expand(12, B)
    zs, os = [], []
    for i in range(n):
        Mv = M.reshape(3, 4, B)
        zs.append(Mv[:, 2])
        os.append(Mv[:, 3])
        A = K[i] @ M if K.dim() == 3 else (K[i] * M[None]).sum(1)  # (36, B)
        M = torch.addcmul(A[24:36], c[i], A[0:12]).addcmul_(s[i], A[12:24])
    Mv = M.reshape(3, 4, B)
    R, p = Mv[:, :3], Mv[:, 3]
    Z = torch.stack(zs, 1)  # (3, n, B): joint axes
    d = p[:, None] - torch.stack(os, 1)  # (3, n, B): from each axis origin to the end effector
    Jv = torch.stack([Z[1] * d[2] - Z[2] * d[1], Z[2] * d[0] - Z[0] * d[2], Z[0] * d[1] - Z[1] * d[0]], 0)
    J = torch.cat([Jv, rot_weight * Z], 0)
    e = torch.cat([pg - p, rot_weight * _rotation_error(Rg, R)], 0)
    return e, J


def _batch_last_chain(links: Tensor) -> tuple[Tensor, Tensor]:
    """(K, M0) of :func:`residual_jacobian` for links ``(n+1, 4, 4)`` or ``(B, n+1, 4, 4)``."""
    if links.dim() == 3:
        return link_operators(links), links[0, :3, :].reshape(12, 1)
    return link_operators(links).permute(1, 2, 3, 0).contiguous(), links[:, 0, :3, :].reshape(-1, 12).T.contiguous()


def pose_residual(chain: Tensor, q: Tensor, goal: Tensor, rot_weight: float) -> tuple[Tensor, Tensor]:
    """Error ``(..., 6)`` and geometric Jacobian ``(..., 6, n)`` (rotation rows weighted), broadcast."""
    n = q.shape[-1]
    batch = broadcast_shape(chain.shape[:-3], q.shape[:-1], goal.shape[:-2])
    qf = q.to(chain.dtype).expand(*batch, n).reshape(-1, n)
    g = goal.to(chain.dtype).expand(*batch, 4, 4).reshape(-1, 4, 4)
    links = chain if chain.dim() == 3 else chain.expand(*batch, n + 1, 4, 4).reshape(-1, n + 1, 4, 4)
    K, M0 = _batch_last_chain(links)
    e, J = residual_jacobian(K, M0, qf.T.contiguous(), g[:, :3, :3].permute(1, 2, 0).contiguous(), g[:, :3, 3].T.contiguous(), rot_weight)
    return e.T.reshape(*batch, 6), J.permute(2, 0, 1).reshape(*batch, 6, n)


def lm_step(J: Tensor, e: Tensor, q: Tensor, lam: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    r"""One limit-aware damped step ``q' (n, B)`` (batch-last; see the module docstring).

    Blocked joints: :math:`q_i \le l_i` with :math:`g_i < 0`, or :math:`q_i \ge u_i` with
    :math:`g_i > 0`, where :math:`g = J^\top e`. Their rows and columns of the normal matrix are
    zero apart from :math:`\lambda` on the diagonal, so their step is exactly zero. The normal
    matrix :math:`J_f^\top J_f` is built as a sum of six outer products (contiguous rows), then
    solved per row with LAPACK.
    """
    g = (J * e[:, None, :]).sum(0)  # J^T e, (n, B)
    blocked = ((q <= lo) & (g < 0)) | ((q >= hi) & (g > 0))
    free = (~blocked).to(J.dtype)
    Jf = J * free[None]
    H = Jf[0, :, None, :] * Jf[0, None, :, :]
    for r in range(1, J.shape[0]):
        H.addcmul_(Jf[r, :, None, :], Jf[r, None, :, :])
    Hb = H.permute(2, 0, 1)
    Hb.diagonal(dim1=1, dim2=2).add_(lam[:, None])
    dq = torch.linalg.solve_ex(Hb, (g * free).T[..., None])[0][..., 0].T
    return torch.minimum(torch.maximum(q + dq, lo), hi)


def refine(
    chain: Tensor,
    q: Tensor,
    goal: Tensor,
    lower: Tensor,
    upper: Tensor,
    cfg: RefineConfig = RefineConfig(),
    keep: int | None = None,
) -> Tensor:
    """Refine configurations ``q (..., n)`` towards ``goal (..., 4, 4)`` for ``chain (..., n+1, 4, 4)``.

    Leading dimensions broadcast (e.g. chain ``(n+1, 4, 4)`` or ``(B, 1, n+1, 4, 4)``, q
    ``(B, K, n)``, goal ``(B, 1, 4, 4)``). ``lower``/``upper`` are ``(n,)`` (or broadcast to
    ``(..., n)``); an infinite bound makes a joint continuous (wrapped, never clamped). Returns
    refined ``q`` inside the bounds: each candidate's converged configuration, or the best one
    it reached over its seeds.

    ``keep``: treat the last leading dimension (``K``) as a pool of seeds for one goal and return
    only ``keep`` candidates per goal ``(..., keep, n)``: a goal stops as soon as ``keep`` of its
    seeds have converged (its slowest seeds are dropped), and the returned candidates are its
    converged ones (distinct ones first, in seed order), then the best of the others.
    """
    n = q.shape[-1]
    dtype, device = chain.dtype, chain.device
    batch = broadcast_shape(chain.shape[:-3], q.shape[:-1], goal.shape[:-2])
    if keep is not None and (len(batch) == 0 or not 1 <= keep <= batch[-1]):
        raise ValueError(f"keep={keep} needs a pool dimension of at least that size (batch {tuple(batch)})")
    m = batch[-1] if keep is not None else 1  # rows per goal
    lower = torch.as_tensor(lower, dtype=dtype, device=device)
    upper = torch.as_tensor(upper, dtype=dtype, device=device)
    # whole turns first (an angle recovered in (-pi, pi] may fit the limits only shifted by 2 pi),
    # then clamp what still lies outside
    q0 = fit_to_limits(q.to(dtype).expand(*batch, n), lower, upper)
    q0 = torch.maximum(torch.minimum(q0, upper), lower).reshape(-1, n)
    B = q0.shape[0]
    # the working state is batch-last: q (n, B), e (6, B), J (6, n, B), goals (3, 3, B) / (3, B)
    g = goal.to(dtype).expand(*batch, 4, 4).reshape(B, 4, 4)
    Rg, pg = g[:, :3, :3].permute(1, 2, 0).contiguous(), g[:, :3, 3].T.contiguous()
    shared_links = chain.dim() == 3
    K, M0 = _batch_last_chain(chain if shared_links else chain.expand(*batch, n + 1, 4, 4).reshape(B, n + 1, 4, 4))
    shared_bounds = lower.dim() <= 1 and upper.dim() <= 1
    lo = lower.reshape(n, 1) if shared_bounds else lower.expand(*batch, n).reshape(B, n).T.contiguous()
    hi = upper.reshape(n, 1) if shared_bounds else upper.expand(*batch, n).reshape(B, n).T.contiguous()
    # where re-seeds are drawn: the limits, a full turn for continuous joints
    lo_s = torch.where(torch.isfinite(lo), lo, torch.full_like(lo, -math.pi))
    hi_s = torch.where(torch.isfinite(hi), hi, torch.full_like(hi, math.pi))
    gen = torch.Generator(device=device).manual_seed(cfg.seed)

    w = cfg.rot_weight
    pos_tol2, rot_tol2 = cfg.pos_tol ** 2, (cfg.rot_tol * w) ** 2
    q = q0.T.contiguous()
    out = q.clone()  # (n, B), written back as rows converge or leave
    out_done = torch.zeros(B, dtype=torch.bool, device=device)
    idx = torch.arange(B, device=device)
    e, J = residual_jacobian(K, M0, q, Rg, pg, w)
    err = e.pow(2).sum(0)
    out_err = err.clone()
    lam = torch.full_like(err, cfg.damping)
    age = torch.zeros(B, dtype=torch.int32, device=device)
    best_q, best_err = q.clone(), err.clone()
    err_check = torch.full_like(err, math.inf)
    reseed = cfg.restart_after > 0
    check = max(1, cfg.check_every)
    t0 = time.perf_counter()

    def converged(e: Tensor) -> Tensor:
        return (e[:3].pow(2).sum(0) <= pos_tol2) & (e[3:].pow(2).sum(0) <= rot_tol2)

    for it in range(cfg.max_iter):
        stale = None
        if it % check == 0:
            done = converged(e)
            if bool(done.any()):
                finished = idx[done]
                out[:, finished], out_done[finished], out_err[finished] = q[:, done], True, err[done]
                stay = ~done
                if keep is not None:  # goals with enough converged seeds stop altogether
                    enough = out_done.view(-1, m).sum(1) >= keep
                    stay &= ~enough[idx // m]
                    gone = ~stay & ~done  # their unconverged rows keep their best so far
                    out[:, idx[gone]], out_err[idx[gone]] = best_q[:, gone], best_err[gone]
                idx, err, lam, age, best_err, err_check = (t[stay] for t in (idx, err, lam, age, best_err, err_check))
                q, e, J, best_q, Rg, pg = (t[..., stay] for t in (q, e, J, best_q, Rg, pg))
                if not shared_links:
                    K, M0 = K[..., stay], M0[:, stay]
                if not shared_bounds:
                    lo, hi, lo_s, hi_s = lo[:, stay], hi[:, stay], lo_s[:, stay], hi_s[:, stay]
            if idx.numel() == 0:
                break
            if cfg.time_budget_s is not None and time.perf_counter() - t0 > cfg.time_budget_s:
                break
            if reseed and cfg.max_iter - it > check:  # a fresh seed needs a few iterations to pay off
                slow = (age >= cfg.stall_age) & (err > cfg.stall_ratio * err_check) & (err > STALL_MIN_ERR)
                stale = (age >= cfg.restart_after) | (lam >= LAMBDA_MAX) | slow
            err_check = err
        q_new = lm_step(J, e, q, lam, lo, hi)
        if stale is not None:
            err_check = torch.where(stale, torch.full_like(err, math.inf), err_check)
            u = torch.rand(q.shape, dtype=dtype, device=device, generator=gen)
            q_new = torch.where(stale, lo_s + u * (hi_s - lo_s), q_new)
        e_new, J_new = residual_jacobian(K, M0, q_new, Rg, pg, w)
        err_new = e_new.pow(2).sum(0)
        better = err_new < err
        accept = better if stale is None else better | stale
        q = torch.where(accept, q_new, q)
        e = torch.where(accept, e_new, e)
        J = torch.where(accept, J_new, J)
        err = torch.where(accept, err_new, err)
        lam = torch.where(better, lam * LAMBDA_DOWN, lam * LAMBDA_UP).clamp(LAMBDA_MIN, LAMBDA_MAX)
        age = age + 1
        if stale is not None:
            lam = torch.where(stale, torch.full_like(lam, cfg.damping), lam)
            age = torch.where(stale, torch.zeros_like(age), age)
        improved = err < best_err
        best_q = torch.where(improved, q, best_q)
        best_err = torch.where(improved, err, best_err)
    if idx.numel():
        # rows still working: converged now, or the best configuration over their seeds
        done = converged(e)
        out[:, idx] = torch.where(done, q, best_q)
        out_done[idx] = done
        out_err[idx] = torch.where(done, err, best_err)
    out = out.T
    continuous = torch.isinf(lower) & torch.isinf(upper)
    out = torch.where(continuous, wrap_angle(out), out)
    if keep is None:
        return out.reshape(*batch, n)
    # per goal: converged candidates unlike every earlier one first, then converged repeats (each
    # in seed order; a stable sort), then the best of the rest
    fresh = first_distinct(out.reshape(-1, m, n), out_done.view(-1, m), cfg.distinct_tol).view(-1)
    rank = torch.where(fresh, -2.0, -1.0).to(out_err.dtype)
    key = torch.where(out_done, rank, out_err).view(-1, m)
    order = torch.sort(key, dim=1, stable=True).indices[:, :keep]
    picked = torch.gather(out.reshape(-1, m, n), 1, order[..., None].expand(-1, keep, n))
    return picked.reshape(*batch[:-1], keep, n)


def first_distinct(q: Tensor, valid: Tensor, tol: float) -> Tensor:
    """``(G, m)`` bool: valid candidates of ``q (G, m, n)`` that differ by at least ``tol`` in some
    joint (on the circle) from every earlier valid one kept — greedy in candidate order, every goal
    at once."""
    G, m, _ = q.shape
    # |wrap(a - b)| < tol  <=>  cos(a - b) = cos a cos b + sin a sin b > cos(tol)   (tol < pi)
    c, s = q.cos(), q.sin()
    cos_gap = c[:, :, None, :] * c[:, None, :, :] + s[:, :, None, :] * s[:, None, :, :]
    close = (cos_gap > math.cos(tol)).all(-1)  # (G, m, m)
    kept = torch.zeros(G, m, dtype=torch.bool, device=q.device)
    for j in range(m):  # over candidate slots, not goals
        kept[:, j] = valid[:, j] & ~(close[:, j, :] & kept).any(-1)
    return kept


def solve_errors(chain: Tensor, q: Tensor, goal: Tensor) -> tuple[Tensor, Tensor]:
    """Position (m) and rotation (rad) errors of ``q`` by forward kinematics."""
    from ggik_core.robots.kinematics import forward_kinematics

    return pose_errors(forward_kinematics(chain, q), goal)
