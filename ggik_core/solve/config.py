"""Settings of the Levenberg–Marquardt refinement (:mod:`ggik_core.solve.refine`) and the defaults
of a solve (:class:`SolveConfig`: the library API and ``ggik solve`` take theirs from here),
importable without torch: the torch-free solve path (:mod:`ggik_core.solve.multistart`) uses them too."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ggik_core.errors import GGIKError

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
        threads: CPU threads while refining (None: torch's current setting). One by default: the
            operations act on a few thousand rows, where splitting them across threads costs more
            than it gains (refining the five arms' ``bench ik`` problems took about 1.3x longer with
            two threads than with one on the project's 2-core machine), and it leaves the other
            cores free. The compiled kernel splits the goals over this many threads.
        backend: "auto" (the compiled kernel of :mod:`ggik_core.solve.lm_kernel` on the CPU, in
            float64, with one chain and one set of bounds for all rows, when numba imports; else
            the batched torch loop), "kernel" or "torch" (forced). Both run the same step, stall
            test and damping schedule; the kernel refines a goal's seeds one after the other
            instead of in lockstep and draws its re-seeds from its own generator, so the two agree
            in what they find, not bit for bit.
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
    threads: int | None = 1
    backend: str = "auto"


#: :attr:`RefineConfig.backend` values
BACKENDS = ("auto", "kernel", "torch")


@dataclass(frozen=True)
class SolveConfig:
    """Defaults of a solve, in user units: :class:`ggik_core.api.Solver` and ``ggik solve`` take
    theirs from :data:`SOLVE`.

    Attributes:
        samples: candidates per goal.
        pos_tol_mm, rot_tol_deg: refinement stops for a candidate within these errors.
        solved_mm, solved_deg: a candidate counts as solved within these errors (inside the limits).
        distinct_tol: radians (largest joint difference); solved candidates closer than this count once.
        seed: seeds the model's samples or the random starting configurations.
        threads: CPU threads (0: decided by :func:`ggik_core.runtime.pick_threads` with a model).
        collision: ``auto`` checks self-collisions (and a scene's obstacles) when the robot is a
            URDF with collision geometry and coal is installed: about 0.2-0.4 s to build the model
            and 0.1-0.15 ms per solved candidate (``ggik bench collide``), a small price next to
            returning a configuration that runs the arm into itself
            (:mod:`ggik_core.solve.collision_solve`).
        free_budget_s: seconds for re-seeding goals short of collision-free solutions when no
            time budget is given.
        method: ``auto``: closed-form branches for the 6R arms eaik decomposes, else the LM
            (:mod:`ggik_core.solve.analytic`).
    """

    samples: int = 32
    pos_tol_mm: float = 0.01
    rot_tol_deg: float = 0.01
    solved_mm: float = 1.0
    solved_deg: float = 1.0
    distinct_tol: float = 0.05
    seed: int = 0
    threads: int = 0
    collision: str = "auto"
    free_budget_s: float = 2.0
    method: str = "auto"


#: the solve defaults
SOLVE = SolveConfig()


def refine_config(max_iter: int | None, pos_tol_mm: float, rot_tol_deg: float, time_budget_s: float | None = None) -> RefineConfig:
    """A :class:`RefineConfig` from user units, checked."""
    if max_iter is None:
        max_iter = RefineConfig.max_iter  # the library's default budget (re-seeds included)
    if max_iter < 1:
        raise GGIKError(f"the refinement needs at least 1 iteration, got {max_iter}")
    if pos_tol_mm <= 0 or rot_tol_deg <= 0:
        raise GGIKError("the refinement tolerances (mm, degrees) must be positive")
    return RefineConfig(max_iter=int(max_iter), pos_tol=pos_tol_mm / 1000.0, rot_tol=float(np.radians(rot_tol_deg)),
                        time_budget_s=time_budget_s)
