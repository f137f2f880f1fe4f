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
from ggik_core.solve.lm_math import batch_last_chain, goal_rotations, lm_step, residual_jacobian


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
    Lt, F0 = batch_last_chain(chain if shared_links else chain.expand(*batch, n + 1, 4, 4).reshape(B, n + 1, 4, 4))
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
