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
clamped; they are wrapped to :math:`[-\pi, \pi)` at the end). The step is accepted when
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

**Two backends.** On the CPU the loop runs as one compiled kernel (:mod:`ggik_core.solve.lm_kernel`,
numba), row by row with no per-operation cost; elsewhere (CUDA, per-row chains or bounds, or
without numba) as the batched torch loop below.

**Bookkeeping** (torch loop). Every ``check_every`` iterations converged rows leave the batch (it is
compacted, so later iterations only pay for the rows still working) and stale rows are re-seeded;
between checks nothing is read back to the host.
"""

from __future__ import annotations

import math
import time

import torch
from torch import Tensor

from ggik_core.robots.transforms import broadcast_shape, pose_errors, wrap_angle
from ggik_core.solve.config import (  # noqa: F401  (re-exported: the settings live where torch is not needed)
    BACKENDS, LAMBDA_DOWN, LAMBDA_MAX, LAMBDA_MIN, LAMBDA_UP, STALL_MIN_ERR, RefineConfig,
)
from ggik_core.solve.joints import fit_to_limits

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


def _batch_last_chain(links: Tensor) -> tuple[Tensor | list[tuple[Tensor, Tensor]], Tensor]:
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
        Lt: transposed joint links from :func:`_batch_last_chain` (pairs per joint when shared by
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
    Lt, F0 = _batch_last_chain(links)
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
    threads = torch.get_num_threads()
    single = cfg.threads is not None and chain.device.type == "cpu" and threads != cfg.threads
    if single:
        torch.set_num_threads(cfg.threads)
    try:
        with torch.inference_mode():
            out = _refine(chain, q, goal, lower, upper, cfg, keep)
    finally:
        if single:
            torch.set_num_threads(threads)
    return out.clone()  # a normal tensor for the caller (inference tensors refuse in-place autograd use)


def _refine(chain: Tensor, q: Tensor, goal: Tensor, lower: Tensor, upper: Tensor, cfg: RefineConfig,
            keep: int | None) -> Tensor:
    n = q.shape[-1]
    dtype, device = chain.dtype, chain.device
    batch = broadcast_shape(chain.shape[:-3], q.shape[:-1], goal.shape[:-2])
    if keep is not None and (len(batch) == 0 or not 1 <= keep <= batch[-1]):
        raise ValueError(f"keep={keep} needs a pool dimension of at least that size (batch {tuple(batch)})")
    m = batch[-1] if keep is not None else 1  # rows per goal
    lower = torch.as_tensor(lower, dtype=dtype, device=device)
    upper = torch.as_tensor(upper, dtype=dtype, device=device)
    if _use_kernel(chain, lower, upper, cfg):  # the torch-free driver, on the same arrays
        from ggik_core.solve.multistart import refine_pools

        goals = goal.detach().to(dtype).expand(*batch, 4, 4).reshape(-1, m, 4, 4)[:, 0].numpy()
        seeds = q.detach().to(dtype).expand(*batch, n).reshape(-1, m, n).numpy()
        out = torch.from_numpy(refine_pools(chain.detach().numpy(), seeds, goals, lower.expand(n).numpy(),
                                            upper.expand(n).numpy(), cfg, keep or 1))
        return out.reshape(*batch, n) if keep is None else out.reshape(*batch[:-1], keep, n)
    # whole turns first (an angle recovered in [-pi, pi] may fit the limits only shifted by 2 pi),
    # then clamp what still lies outside
    q0 = fit_to_limits(q.to(dtype).expand(*batch, n), lower, upper)
    q0 = torch.maximum(torch.minimum(q0, upper), lower).reshape(-1, n)
    g = goal.to(dtype).expand(*batch, 4, 4).reshape(q0.shape[0], 4, 4)
    out, out_done, out_err = _refine_batched(chain, q0, g, lower, upper, batch, m, keep, cfg)
    out = out.T  # (B, n)
    continuous = torch.isinf(lower) & torch.isinf(upper)
    out = torch.where(continuous, wrap_angle(out), out)
    if keep is None:
        return out.reshape(*batch, n)
    # per goal: converged candidates unlike every earlier one first, then converged repeats, then
    # the best of the rest (on the host: a few thousand rows)
    from ggik_core.solve.multistart import pick

    order = pick(out.reshape(-1, m, n).cpu().numpy(), out_done.view(-1, m).cpu().numpy(), out_err.view(-1, m).cpu().numpy(),
                 keep, cfg.distinct_tol)
    order = torch.from_numpy(order).to(out.device)
    picked = torch.gather(out.reshape(-1, m, n), 1, order[..., None].expand(-1, keep, n))
    return picked.reshape(*batch[:-1], keep, n)


def _use_kernel(chain: Tensor, lower: Tensor, upper: Tensor, cfg: RefineConfig) -> bool:
    """Whether the compiled kernel runs (through :func:`ggik_core.solve.multistart.refine_pools`):
    ``backend`` "kernel", or "auto" on the CPU in float64 with one chain and one set of bounds for
    every row, when numba imports."""
    if cfg.backend not in BACKENDS:
        raise ValueError(f"unknown refine backend {cfg.backend!r} (one of {', '.join(BACKENDS)})")
    if cfg.backend == "torch":
        return False
    fits = chain.device.type == "cpu" and chain.dtype == torch.float64 and chain.dim() == 3 and lower.dim() <= 1 and upper.dim() <= 1
    if cfg.backend == "kernel":
        if not fits:
            raise ValueError("the refine kernel needs a float64 CPU chain (n+1, 4, 4) shared by every row, and (n,) bounds")
        _kernel()  # raises ImportError without numba
        return True
    if not fits:
        return False
    try:
        _kernel()
    except ImportError:
        return False
    return True


def _kernel():
    """The compiled kernel module (imports numba)."""
    from ggik_core.solve import lm_kernel

    return lm_kernel


def _refine_batched(chain: Tensor, q0: Tensor, g: Tensor, lower: Tensor, upper: Tensor, batch: tuple[int, ...], m: int,
                    keep: int | None, cfg: RefineConfig) -> tuple[Tensor, Tensor, Tensor]:
    """The batched torch loop: rows ``q0 (B, n)``, goals ``g (B, 4, 4)``; returns every row's
    configuration ``(n, B)``, whether it converged ``(B,)`` and its squared error ``(B,)``."""
    B, n = q0.shape
    dtype, device = chain.dtype, chain.device
    # the working state is batch-last: q (n, B), e (6, B), J (6, n, B), goals (3, 3, 1, B) / (3, B)
    Rg, pg = goal_rotations(g[:, :3, :3]), g[:, :3, 3].T.contiguous()
    shared_links = chain.dim() == 3
    Lt, F0 = _batch_last_chain(chain if shared_links else chain.expand(*batch, n + 1, 4, 4).reshape(B, n + 1, 4, 4))
    shared_bounds = lower.dim() <= 1 and upper.dim() <= 1
    lo = lower.reshape(n, 1) if shared_bounds else lower.expand(*batch, n).reshape(B, n).T.contiguous()
    hi = upper.reshape(n, 1) if shared_bounds else upper.expand(*batch, n).reshape(B, n).T.contiguous()
    # where re-seeds are drawn: the limits, a full turn for continuous joints
    lo_s = torch.where(torch.isfinite(lo), lo, torch.full_like(lo, -math.pi))
    hi_s = torch.where(torch.isfinite(hi), hi, torch.full_like(hi, math.pi))
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    # joints whose range spans a full turn (UR arms: +-2 pi) wrap at their bounds (see lm_step)
    full_turn = torch.isfinite(lo) & torch.isfinite(hi) & (hi - lo >= 2 * math.pi)
    turn = torch.where(full_turn, 2 * math.pi, 0.0).to(dtype) if bool(full_turn.any()) else None

    w = cfg.rot_weight
    pos_tol2, rot_tol2 = cfg.pos_tol ** 2, (cfg.rot_tol * w) ** 2
    q = q0.T.contiguous()
    out = q.clone()  # (n, B), written back as rows converge or leave
    out_done = torch.zeros(B, dtype=torch.bool, device=device)
    idx = torch.arange(B, device=device)
    e, J = residual_jacobian(Lt, F0, q, Rg, pg, w)
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
                    Lt, F0 = Lt[..., stay], F0[..., stay]
                if not shared_bounds:
                    lo, hi, lo_s, hi_s = lo[:, stay], hi[:, stay], lo_s[:, stay], hi_s[:, stay]
                    turn = None if turn is None else turn[:, stay]
            if idx.numel() == 0:
                break
            if cfg.time_budget_s is not None and time.perf_counter() - t0 > cfg.time_budget_s:
                break
            if reseed and cfg.max_iter - it > check:  # a fresh seed needs a few iterations to pay off
                slow = (age >= cfg.stall_age) & (err > cfg.stall_ratio * err_check) & (err > STALL_MIN_ERR)
                stale = (age >= cfg.restart_after) | (lam >= LAMBDA_MAX) | slow
            err_check = err
        q_new = lm_step(J, e, q, lam, lo, hi, turn)
        if stale is not None:
            err_check = torch.where(stale, torch.full_like(err, math.inf), err_check)
            u = torch.rand(q.shape, dtype=dtype, device=device, generator=gen)
            q_new = torch.where(stale, lo_s + u * (hi_s - lo_s), q_new)
        e_new, J_new = residual_jacobian(Lt, F0, q_new, Rg, pg, w)
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
    return out, out_done, out_err


def solve_errors(chain: Tensor, q: Tensor, goal: Tensor) -> tuple[Tensor, Tensor]:
    """Position (m) and rotation (rad) errors of ``q`` by forward kinematics."""
    from ggik_core.robots.kinematics import forward_kinematics

    return pose_errors(forward_kinematics(chain, q), goal)
