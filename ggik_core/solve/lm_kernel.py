r"""The Levenberg–Marquardt refinement of :mod:`ggik_core.solve.refine` as one compiled CPU kernel.

The batched torch loop pays a few microseconds of dispatch per tensor operation, several hundred
operations per iteration, whatever the batch: on the 2-core machine a row-iteration cost about
2 µs at 2,000 rows and 20 µs near the end of a refinement, when few rows are left. Here the same
step runs as scalar code compiled by numba, one row at a time, with no per-operation cost: the
work per row-iteration is the arithmetic itself (forward kinematics, a ``6 x n`` Jacobian, an
``n x n`` Cholesky solve).

Rows no longer move in lockstep. Each goal's pool of ``m`` seeds is refined seed after seed; a
seed that stalls is re-seeded in place (see the module docstring of :mod:`~ggik_core.solve.refine`
for the step, the stall test and the damping schedule, which are the same), and the goal stops
as soon as ``keep`` seeds have converged, so no work is spent on seeds that would be dropped.
Re-seeds come from a counter-based generator (splitmix64) keyed by the seed of the
configuration and the goal's index, so results do not depend on how goals are split into chunks
or threads. The kernels release the GIL.

Frames follow :func:`~ggik_core.solve.lm_math.residual_jacobian`: the running transform's top
``3 x 4`` block :math:`[x\ y\ z\ p]`; joint ``i`` turns it by :math:`R_z(q_i)` and applies the
constant link :math:`L_{i+1}`; its axis :math:`z_i` and origin :math:`o_i` are read before the
turn. Numba is imported only when this module is.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from ggik_core.solve.config import LAMBDA_DOWN, LAMBDA_MAX, LAMBDA_MIN, LAMBDA_UP, STALL_MIN_ERR
from ggik_core.solve.compile_note import watch

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_GOAL_KEY = np.uint64(0xD1B54A32D192ED03)

_jit = nb.njit(cache=True, nogil=True)
watch(__name__)  # one stderr line when the kernel compiles (a numba cache miss)


@_jit
def _uniform(state: np.uint64) -> tuple[np.uint64, float]:
    """splitmix64: the next state and a uniform number in [0, 1)."""
    state = state + _GOLDEN
    z = state
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    z = z ^ (z >> np.uint64(31))
    return state, float(z >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@_jit
def residual(L: np.ndarray, q: np.ndarray, Rg: np.ndarray, pg: np.ndarray, w: float, e: np.ndarray, J: np.ndarray,
             Z: np.ndarray, O: np.ndarray, F: np.ndarray, T: np.ndarray) -> float:
    r"""Weighted error ``e (6,)``, Jacobian ``J (6, n)`` and :math:`\lVert e\rVert^2` of one row.

    .. math::
        e = \begin{bmatrix} p_g - p \\ w \log(R_g R^\top)^\vee \end{bmatrix},\qquad
        J_{:,i} = \begin{bmatrix} z_i \times (p - o_i) \\ w z_i \end{bmatrix}

    ``L (n+1, 4, 4)`` link transforms, ``Rg (3, 3)``, ``pg (3,)`` the goal; ``Z``, ``O`` ``(3, n)``
    and ``F``, ``T`` ``(3, 4)`` are scratch.
    """
    n = q.shape[0]
    for r in range(3):
        for c in range(4):
            F[r, c] = L[0, r, c]
    for i in range(n):
        for r in range(3):
            Z[r, i] = F[r, 2]
            O[r, i] = F[r, 3]
        c = math.cos(q[i])
        s = math.sin(q[i])
        Li = L[i + 1]
        for r in range(3):
            x = c * F[r, 0] + s * F[r, 1]
            y = c * F[r, 1] - s * F[r, 0]
            zr = F[r, 2]
            for k in range(4):
                T[r, k] = x * Li[0, k] + y * Li[1, k] + zr * Li[2, k]
            T[r, 3] += F[r, 3]
        for r in range(3):
            for k in range(4):
                F[r, k] = T[r, k]
    # M = Rg R^T; log(M) from its skew part s and trace: theta s / |s|, theta = atan2(|s|, tr M - 1)
    m00 = Rg[0, 0] * F[0, 0] + Rg[0, 1] * F[0, 1] + Rg[0, 2] * F[0, 2]
    m11 = Rg[1, 0] * F[1, 0] + Rg[1, 1] * F[1, 1] + Rg[1, 2] * F[1, 2]
    m22 = Rg[2, 0] * F[2, 0] + Rg[2, 1] * F[2, 1] + Rg[2, 2] * F[2, 2]
    m21 = Rg[2, 0] * F[1, 0] + Rg[2, 1] * F[1, 1] + Rg[2, 2] * F[1, 2]
    m12 = Rg[1, 0] * F[2, 0] + Rg[1, 1] * F[2, 1] + Rg[1, 2] * F[2, 2]
    m02 = Rg[0, 0] * F[2, 0] + Rg[0, 1] * F[2, 1] + Rg[0, 2] * F[2, 2]
    m20 = Rg[2, 0] * F[0, 0] + Rg[2, 1] * F[0, 1] + Rg[2, 2] * F[0, 2]
    m10 = Rg[1, 0] * F[0, 0] + Rg[1, 1] * F[0, 1] + Rg[1, 2] * F[0, 2]
    m01 = Rg[0, 0] * F[1, 0] + Rg[0, 1] * F[1, 1] + Rg[0, 2] * F[1, 2]
    s0, s1, s2 = m21 - m12, m02 - m20, m10 - m01
    sn = math.sqrt(s0 * s0 + s1 * s1 + s2 * s2)
    f = w * math.atan2(sn, m00 + m11 + m22 - 1.0) / max(sn, 1e-300)
    e[0] = pg[0] - F[0, 3]
    e[1] = pg[1] - F[1, 3]
    e[2] = pg[2] - F[2, 3]
    e[3] = s0 * f
    e[4] = s1 * f
    e[5] = s2 * f
    for i in range(n):
        d0, d1, d2 = F[0, 3] - O[0, i], F[1, 3] - O[1, i], F[2, 3] - O[2, i]
        z0, z1, z2 = Z[0, i], Z[1, i], Z[2, i]
        J[0, i] = z1 * d2 - z2 * d1
        J[1, i] = z2 * d0 - z0 * d2
        J[2, i] = z0 * d1 - z1 * d0
        J[3, i] = w * z0
        J[4, i] = w * z1
        J[5, i] = w * z2
    err = 0.0
    for k in range(6):
        err += e[k] * e[k]
    return err


@_jit
def step(J: np.ndarray, e: np.ndarray, q: np.ndarray, lam: float, lo: np.ndarray, hi: np.ndarray, turn: np.ndarray,
         q_new: np.ndarray, H: np.ndarray, g: np.ndarray, free: np.ndarray) -> None:
    r"""One limit-aware damped step of one row into ``q_new`` (see
    :func:`ggik_core.solve.lm_math.lm_step`): joints on a bound whose :math:`g = J^\top e` points
    out are blocked (unless they span a full turn: their step wraps), then :math:`(J_f^\top J_f + \lambda I)\,\delta = J_f^\top e` is solved by
    Cholesky and :math:`q + \delta` wrapped (``turn``) and clamped. ``H (n, n)``, ``g``, ``free``
    ``(n,)`` are scratch."""
    n = q.shape[0]
    for i in range(n):
        acc = 0.0
        for k in range(6):
            acc += J[k, i] * e[k]
        g[i] = acc
        free[i] = turn[i] > 0.0 or not ((q[i] <= lo[i] and acc < 0.0) or (q[i] >= hi[i] and acc > 0.0))
        if not free[i]:
            g[i] = 0.0
    for i in range(n):  # the lower triangle of J_f^T J_f + lam I, factored in place
        for j in range(i + 1):
            acc = 0.0
            if free[i] and free[j]:
                for k in range(6):
                    acc += J[k, i] * J[k, j]
            H[i, j] = acc
        H[i, i] += lam
    for j in range(n):
        d = H[j, j]
        for k in range(j):
            d -= H[j, k] * H[j, k]
        d = math.sqrt(d)
        H[j, j] = d
        for i in range(j + 1, n):
            acc = H[i, j]
            for k in range(j):
                acc -= H[i, k] * H[j, k]
            H[i, j] = acc / d
    for i in range(n):
        acc = g[i]
        for k in range(i):
            acc -= H[i, k] * g[k]
        g[i] = acc / H[i, i]
    for i in range(n - 1, -1, -1):
        acc = g[i]
        for k in range(i + 1, n):
            acc -= H[k, i] * g[k]
        g[i] = acc / H[i, i]
    for i in range(n):
        v = q[i] + g[i]
        if turn[i] > 0.0:
            if v > hi[i]:
                v -= turn[i]
            elif v < lo[i]:
                v += turn[i]
        q_new[i] = min(max(v, lo[i]), hi[i])


@_jit
def _converged(e: np.ndarray, pos_tol2: float, rot_tol2: float) -> bool:
    return (e[0] * e[0] + e[1] * e[1] + e[2] * e[2] <= pos_tol2) and (e[3] * e[3] + e[4] * e[4] + e[5] * e[5] <= rot_tol2)


@_jit
def refine_pools(L: np.ndarray, seeds: np.ndarray, Rg: np.ndarray, pg: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                 lo_s: np.ndarray, hi_s: np.ndarray, turn: np.ndarray, keep: int, max_iter: int, pos_tol2: float,
                 rot_tol2: float, w: float, damping: float, restart_after: int, stall_ratio: float, stall_age: int,
                 check: int, seed: int, first_goal: int, out: np.ndarray, out_err: np.ndarray,
                 out_done: np.ndarray) -> None:
    """Refine ``seeds (G, m, n)`` (inside the bounds) towards goals ``Rg (G, 3, 3)``, ``pg (G, 3)``.

    Writes every row's converged configuration, or the best one over its seeds, to
    ``out (G, m, n)``, its squared weighted error to ``out_err (G, m)`` and whether it converged to
    ``out_done (G, m)``. A goal stops once ``keep`` rows converged; its rows not yet started keep
    their seed, with an infinite error. ``first_goal``: index of goal 0 in the whole batch (keys
    the re-seed stream).
    """
    G, m, n = seeds.shape
    e, e_new = np.empty(6), np.empty(6)
    J, J_new = np.empty((6, n)), np.empty((6, n))
    Z, O, F, T = np.empty((3, n)), np.empty((3, n)), np.empty((3, 4)), np.empty((3, 4))
    H, g, free = np.empty((n, n)), np.empty(n), np.empty(n, dtype=np.bool_)
    q, q_new, best = np.empty(n), np.empty(n), np.empty(n)
    for gi in range(G):
        state = np.uint64(seed) * _GOLDEN + np.uint64(first_goal + gi) * _GOAL_KEY
        converged = 0
        for j in range(m):
            if converged >= keep:
                out[gi, j] = seeds[gi, j]
                out_err[gi, j] = math.inf
                out_done[gi, j] = False
                continue
            q[:] = seeds[gi, j]
            err = residual(L, q, Rg[gi], pg[gi], w, e, J, Z, O, F, T)
            best[:] = q
            best_err = err
            lam = damping
            age = 0
            err_check = math.inf
            done = _converged(e, pos_tol2, rot_tol2)
            for it in range(max_iter):
                if done:
                    break
                stale = False
                if it % check == 0:
                    if restart_after > 0 and max_iter - it > check:  # a fresh seed needs a few iterations
                        slow = age >= stall_age and err > stall_ratio * err_check and err > STALL_MIN_ERR
                        stale = age >= restart_after or lam >= LAMBDA_MAX or slow
                    err_check = err
                if stale:
                    for i in range(n):
                        state, u = _uniform(state)
                        q_new[i] = lo_s[i] + u * (hi_s[i] - lo_s[i])
                    err_check = math.inf
                else:
                    step(J, e, q, lam, lo, hi, turn, q_new, H, g, free)
                err_new = residual(L, q_new, Rg[gi], pg[gi], w, e_new, J_new, Z, O, F, T)
                better = err_new < err
                if better or stale:  # accept: swap the buffers
                    q, q_new = q_new, q
                    e, e_new = e_new, e
                    J, J_new = J_new, J
                    err = err_new
                    done = _converged(e, pos_tol2, rot_tol2)
                lam = min(max(lam * (LAMBDA_DOWN if better else LAMBDA_UP), LAMBDA_MIN), LAMBDA_MAX)
                age += 1
                if stale:
                    lam = damping
                    age = 0
                if err < best_err:
                    best_err = err
                    best[:] = q
            if done:
                out[gi, j] = q
                out_err[gi, j] = err
                converged += 1
            else:
                out[gi, j] = best
                out_err[gi, j] = best_err
            out_done[gi, j] = done
