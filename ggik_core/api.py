r"""ggik as a Python library: many IK solutions for a robot, checked by forward kinematics.

    >>> from ggik_core.api import Solver
    >>> solver = Solver("panda")                      # catalog name, URDF path or DH YAML path
    >>> result = solver.solve([[0.4, 0.1, 0.5, 0, 1, 0, 0]], k=16)
    >>> result.q.shape                                # (goals, k, DOF), radians
    (1, 16, 7)
    >>> df = result.to_frame()                        # one row per candidate, best first

Where the candidates come from:

* with a trained model (``Solver(robot, model="shipped")`` for the model that ships in the
  package, or a file such as ``"data/model/model.pt"``) they are GGIK samples, refined by batched
  Levenberg–Marquardt unless ``solve(..., refine=False)``;
* **without a model** (the default: on a CPU, random seeds find more distinct solutions per
  second than learned ones, ``ggik bench seeds``) the refinement starts from
  ``k`` configurations drawn uniformly at random inside the joint limits. That is a plain
  multi-start IK solver: it needs ``refine=True``.

Every error reported is computed by float64 forward kinematics from the returned joint angles,
never estimated. A candidate is *solved* when it lies inside the joint limits and within
``solved_mm`` and ``solved_deg`` of the goal; solved candidates closer than ``distinct_tol``
(largest joint difference, radians, compared on the circle) count as one *distinct* solution,
the best of them being the one counted.

A goal is flagged *out of reach* only when no configuration can reach its position: its
distance from the first joint's axis origin exceeds the sum of the fixed distances between
consecutive axis origins (a sound bound, see :func:`ggik_core.robots.reach.reach`). With refinement, a goal within reach
for which no candidate is solved is reported as *not solved* (``Result.failed``).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ggik_core.data.io import csv_text
from ggik_core.errors import GGIKError
from ggik_core.robots.poses import as_poses, pose_to_xyz_quat
from ggik_core.robots.reach import REACH_SLACK, distance_from_first_axis, reach
from ggik_core.robots.robot import Robot
from ggik_core.solve.config import SOLVE, refine_config
from ggik_core.solve.analytic import analytic_candidates, pick_method
from ggik_core.solve.collision_solve import elapsed_budget, free_candidates, parse_pairs, setup_collision
from ggik_core.solve.distinct import distinct_mask, solved_and_distinct
from ggik_core.solve.multistart import random_candidates
from ggik_core.solve.rank import parse_rank, scores

if TYPE_CHECKING:  # torch loads only with a model: the default solver (random seeds) runs without it
    import torch

#: the CSV column of each ranking's score (``near``: the joint distance to the target, radians)
SCORE_COLUMNS = {"near": "near_rad", "margin": "margin", "manipulability": "manipulability"}

@dataclass
class Result:
    """``G`` goals x ``k`` candidates, in the order they were drawn (see :meth:`to_frame` for best first).

    Attributes:
        robot: the robot's name.
        goals: goal poses ``(G, 4, 4)``, base frame.
        q: joint angles ``(G, k, n)``, radians.
        pos_err_mm, rot_err_deg: FK-checked errors ``(G, k)``.
        within_limits: ``(G, k)``, every joint inside its limits.
        solved: ``(G, k)``, inside the limits and within the solved thresholds.
        distinct: ``(G, k)``, a solved candidate not within ``distinct_tol`` of a better one.
        out_of_reach: ``(G,)``, the goal position is beyond the arm's reach.
        refined: whether the candidates were refined.
        seeds: ``"ggik"`` (model samples) or ``"random"`` (uniform inside the limits).
        seconds: wall time of the call.
        passes: re-encoding passes of the model's samples (0: none, or no model).
        free, min_distance_mm: ``(G, k)``, collision-free and the smallest distance over the
            checked pairs (negative: penetration; NaN: not checked, a candidate that misses its
            goal), or None when collisions are not checked.
        rank, score: the ranking (``near``, ``margin``, ``manipulability``) and its scores ``(G, k)``
            (larger is better), or None.
        method: ``lm`` or ``analytic``; ``analytic``: ``(G,)`` goals answered by closed-form branches.
        goal_rows: the goals as given (``x y z qw qx qy qz`` rows), echoed in the output, or None.
    """

    robot: str
    goals: np.ndarray
    q: np.ndarray
    pos_err_mm: np.ndarray
    rot_err_deg: np.ndarray
    within_limits: np.ndarray
    solved: np.ndarray
    distinct: np.ndarray
    out_of_reach: np.ndarray
    refined: bool
    seeds: str
    seconds: float
    notes: list[str] = field(default_factory=list)
    passes: int = 0
    free: np.ndarray | None = None
    min_distance_mm: np.ndarray | None = None
    rank: str | None = None
    score: np.ndarray | None = None
    method: str = "lm"
    analytic: np.ndarray | None = None
    goal_rows: np.ndarray | None = None

    @property
    def solved_goals(self) -> np.ndarray:
        """``(G,)``: at least one solved candidate."""
        return self.solved.any(1)

    @property
    def failed(self) -> np.ndarray:
        """``(G,)``: refined, within reach, and still no solved candidate."""
        return self.refined & ~self.out_of_reach & ~self.solved_goals

    @property
    def distinct_per_goal(self) -> np.ndarray:
        """``(G,)``: number of distinct solutions."""
        return self.distinct.sum(1)

    @property
    def free_goals(self) -> np.ndarray:
        """``(G,)``: at least one solved, collision-free candidate (all solved goals when unchecked)."""
        return (self.solved & (True if self.free is None else self.free)).any(1)

    def order(self) -> np.ndarray:
        """``(G, k)`` candidate indices, best first: by error (position mm + rotation degrees);
        with collisions checked or a ranking, solved collision-free candidates come first, then
        solved colliding ones, each group by the ranking's score (else by error), then the rest."""
        err = self.pos_err_mm + self.rot_err_deg
        if self.free is None and self.score is None:
            return np.argsort(err, axis=1, kind="stable")
        group = np.where(self.solved, 0, 2) + (0 if self.free is None else (self.solved & ~self.free))
        within = err if self.score is None else np.where(group < 2, -self.score, err)
        return np.lexsort((err, within, group), axis=-1)

    def to_frame(self) -> Any:
        """A pandas DataFrame, one row per candidate, best first within each goal (the columns of
        :meth:`columns`)."""
        import pandas as pd

        return pd.DataFrame(self.columns())

    def to_csv(self) -> str:
        """:meth:`to_frame` as CSV text, as ``to_frame().to_csv(index=False)`` writes it, without
        importing pandas (a quarter of a second of ``ggik solve``'s start-up)."""
        return csv_text(self.columns())

    def columns(self) -> dict[str, np.ndarray]:
        """One array per column, one row per candidate, best first within each goal.

        Columns: ``goal_id, sample_id, q_1..q_n, pos_err_mm, rot_err_deg, within_limits, solved,
        distinct``, with collisions checked ``free, min_distance_mm``, with a ranking its score
        (:data:`SCORE_COLUMNS`), and the goal as given ``goal_x, goal_y, goal_z, goal_qw, goal_qx,
        goal_qy, goal_qz``.
        """
        order = self.order()
        G, k, n = self.q.shape
        take = lambda a: np.take_along_axis(a, order, 1).reshape(-1)  # noqa: E731
        q = np.take_along_axis(self.q, order[..., None], 1).reshape(G * k, n)
        cols: dict[str, Any] = {"goal_id": np.repeat(np.arange(G), k), "sample_id": np.tile(np.arange(k), G)}
        cols.update({f"q_{j + 1}": q[:, j] for j in range(n)})
        cols.update(pos_err_mm=take(self.pos_err_mm), rot_err_deg=take(self.rot_err_deg), within_limits=take(self.within_limits),
                    solved=take(self.solved), distinct=take(self.distinct))
        if self.free is not None:
            cols.update(free=take(self.free), min_distance_mm=take(self.min_distance_mm))
        if self.rank is not None and self.score is not None:
            cols[SCORE_COLUMNS[self.rank]] = take(-self.score if self.rank == "near" else self.score)
        rows = self.goal_rows if self.goal_rows is not None else pose_to_xyz_quat(self.goals)
        goal7 = np.repeat(rows, k, axis=0)
        cols.update({f"goal_{c}": goal7[:, i] for i, c in enumerate(("x", "y", "z", "qw", "qx", "qy", "qz"))})
        return cols


class Solver:
    """Multi-solution IK for one robot.

    Args:
        robot: a catalog name (``ur10``, ``kuka``, ``lwa4d``, ``lwa4p``, ``panda``), a URDF file, a DH
            YAML file (format: :mod:`ggik_core.robots.files`) or a :class:`Robot`.
        base_link, ee_link: the chain inside a URDF (defaults: the root and the single leaf).
        model: a trained model file (or a loaded ``GGIK``); ``"shipped"``: the model that ships
            in the package for this robot (:mod:`ggik_core.weights`: the all-arms model for a
            catalog arm, the generalist for any other robot). ``None``: no model; refinement then
            starts from configurations drawn uniformly at random inside the joint limits.
        max_iter, pos_tol_mm, rot_tol_deg: Levenberg–Marquardt iterations per candidate, re-seeds
            included (``None``: the library default), and the errors at which a candidate stops
            being refined.
        time_budget_s: stop re-seeding unconverged candidates after this many seconds and return
            the best so far (``None``: the iteration budget only).
        solved_mm, solved_deg: the errors under which a candidate counts as solved.
        distinct_tol: radians; solved candidates closer than this count once.
        threads: with a model, torch intra-op threads (0: :func:`ggik_core.runtime.pick_threads`
            decides; ``None``: leave torch's setting alone). Without one, threads of the compiled LM
            kernel when positive (else one, :class:`RefineConfig`), and torch is never imported.
        device: where the model samples (default: CUDA when present).
        collision: ``auto`` (default), ``off``, ``self``, ``scene`` or ``all``
            (:mod:`ggik_core.solve.collision_solve`): each goal's colliding distinct solutions are
            replaced by re-seeded collision-free ones (up to ``k``) within ``time_budget_s`` (else
            ``SOLVE.free_budget_s``).
        scene: obstacles: a scene YAML file (:mod:`ggik_core.robots.scene`) or a ``Scene``.
        package_dirs: folders where the URDF's ``package://`` meshes are looked up.
        exclude_pairs: link pairs never checked: ``"linkA:linkB,..."`` or ``[("linkA", "linkB")]``.
        method: ``auto`` (closed-form branches where :func:`ggik_core.solve.analytic.analytic_support`
            allows and no model is given, else the LM), ``analytic`` (an error where it does not
            allow) or ``lm``.
    """

    def __init__(
        self,
        robot: str | Path | Robot,
        base_link: str | None = None,
        ee_link: str | None = None,
        model: str | Path | Any | None = None,
        max_iter: int | None = None,
        pos_tol_mm: float = SOLVE.pos_tol_mm,
        rot_tol_deg: float = SOLVE.rot_tol_deg,
        solved_mm: float = SOLVE.solved_mm,
        solved_deg: float = SOLVE.solved_deg,
        distinct_tol: float = SOLVE.distinct_tol,
        threads: int | None = SOLVE.threads,
        device: str | torch.device | None = None,
        time_budget_s: float | None = None,
        collision: str = SOLVE.collision,
        scene: Any = None,
        package_dirs: Any = (),
        exclude_pairs: Any = None,
        method: str = SOLVE.method,
    ) -> None:
        if threads is not None and model is not None:
            from ggik_core.runtime import set_threads

            set_threads(threads)
        self.robot = robot if isinstance(robot, Robot) else _load_robot(str(robot), base_link, ee_link)
        if isinstance(model, str) and model == "shipped":
            from ggik_core.weights import model_name_for, shipped_path

            model = shipped_path(model_name_for(self.robot.name if isinstance(robot, Robot) else str(robot)))
        self.model = _load_model(model, device)
        self.refine_cfg = refine_config(max_iter, pos_tol_mm, rot_tol_deg, time_budget_s)
        if self.model is None and threads is not None and threads > 0:
            self.refine_cfg = dataclasses.replace(self.refine_cfg, threads=int(threads))
        if solved_mm <= 0 or solved_deg <= 0:
            raise GGIKError("the solved thresholds (mm, degrees) must be positive")
        if distinct_tol < 0:
            raise GGIKError(f"the distinct-solution tolerance must not be negative, got {distinct_tol}")
        self.solved_mm, self.solved_deg, self.distinct_tol = float(solved_mm), float(solved_deg), float(distinct_tol)
        self.reach = reach(self.robot)
        self.time_budget_s = time_budget_s
        self.analytic = pick_method(method, self.robot, self.model is not None)
        self.method = "lm" if self.analytic is None else "analytic"
        self.collision = setup_collision(robot, self.robot, collision, scene, tuple(package_dirs or ()), parse_pairs(exclude_pairs),
                                         base_link, ee_link)

    @property
    def seeds(self) -> str:
        """``"ggik"`` with a model, ``"random"`` without."""
        return "random" if self.model is None else "ggik"

    def dof_note(self) -> str | None:
        """A one-line note when the robot's DOF is outside the model's training DOFs (else None)."""
        dofs = getattr(self.model, "trained_dofs", None)
        if self.model is None or not dofs or self.robot.dof in dofs:
            return None
        return (f"note: {self.robot.name} has {self.robot.dof} DOF but the model was trained on {'/'.join(map(str, dofs))}-DOF robots "
                f"only; its samples are rough seeds (every solution is still checked by FK)")

    #: re-encoding passes when none are asked for: raw samples gain the most from them (on the KUKA
    #: iiwa the median error falls about 2.5x), refinement reaches exact solutions without them
    RAW_PASSES = 2
    #: over-relaxation of the re-encoding passes after the first (:meth:`ggik_core.model.cvae.GGIK.sample`)
    RELAX = 1.0

    def solve(self, poses: Any, k: int = SOLVE.samples, refine: bool = True, seed: int = SOLVE.seed, passes: int | None = None,
              relax: float | None = None, rank: str | None = None) -> Result:
        """``k`` candidates for each goal pose, FK-checked.

        Args:
            poses: one pose or several: ``(4, 4)`` / ``(G, 4, 4)`` homogeneous matrices or ``(7,)``
                / ``(G, 7)`` rows ``x y z qw qx qy qz`` (metres, unit quaternion w first), base frame.
            k: candidates per goal.
            refine: refine with Levenberg–Marquardt (required without a model).
            seed: seeds the model's latent samples or the random starting configurations.
            passes: re-encoding passes of the model's samples (:meth:`ggik_core.model.cvae.GGIK.sample`;
                each costs about two sampling passes). ``None``: :attr:`RAW_PASSES` for raw samples,
                none before refinement.
            relax: over-relaxation of the passes after the first (``None``: :attr:`RELAX`; 1: the
                plain chain).
            rank: ``near:q1,...,qn``, ``margin`` or ``manipulability`` (:mod:`ggik_core.solve.rank`):
                each goal's candidates ordered by it (solved collision-free ones first), the score
                a column; None: by error.
        """
        if k < 1:
            raise GGIKError(f"k must be at least 1, got {k}")
        if passes is not None and passes < 0:
            raise GGIKError(f"passes must not be negative, got {passes}")
        if relax is not None and not (math.isfinite(relax) and relax > 0):
            raise GGIKError(f"relax must be a finite positive number, got {relax}")
        if passes is None:
            passes = 0 if refine else self.RAW_PASSES
        if self.model is None and not refine:
            raise GGIKError("raw samples need a trained model: pass a model, or refine the random seeds")
        ranking = parse_rank(rank, self.robot) if rank is not None else None
        goals = as_poses(poses)
        raw = np.asarray(poses, dtype=np.float64) if not hasattr(poses, "detach") else None
        rows = raw.reshape(-1, 7).copy() if raw is not None and raw.shape[-1:] == (7,) else None
        t0 = time.perf_counter()
        analytic = None
        if self.analytic is not None and refine:
            q, pos, rot, within, analytic = analytic_candidates(self.analytic, goals, k, self.refine_cfg, seed)
            sols: tuple[np.ndarray, ...] = (q, pos, rot, within)
        else:
            sols = self._candidates(goals, k, refine, seed, passes, self.RELAX if relax is None else relax)
        res = self._result(goals, sols, refine, time.perf_counter() - t0, passes if self.model is not None else 0)
        if self.collision.model is not None:
            self._check_collisions(res, k, seed, t0, analytic)
        if analytic is not None:
            res.method, res.analytic = "analytic", analytic
        if ranking is not None:
            res.rank, res.score = ranking.kind, scores(ranking, self.robot, res.q)
        res.goal_rows, res.seconds = rows, time.perf_counter() - t0
        return res

    def _check_collisions(self, res: Result, k: int, seed: int, t0: float, analytic: np.ndarray | None) -> None:
        """Replace colliding candidates (:func:`ggik_core.solve.collision_solve.free_candidates`) and
        recompute the errors, flags and distinct solutions, collision-free ones counted first."""
        from ggik_core.solve.multistart import forward_kinematics, pose_errors

        reseed = np.full(len(res.goals), res.refined) if analytic is None else ~analytic  # raw samples: checked only
        target = np.clip(res.distinct_per_goal, 1, k)  # a colliding solution is replaced, up to k per goal
        budget = elapsed_budget(t0, self.time_budget_s, SOLVE.free_budget_s)
        q, free, dist = free_candidates(self.collision, res.goals, res.q, res.solved, target, reseed, self.refine_cfg, self.distinct_tol,
                                        budget, seed)
        pos, rot = pose_errors(forward_kinematics(self.robot.chain_np, q), res.goals[:, None])
        res.q, res.pos_err_mm, res.rot_err_deg, res.within_limits = q, pos * 1000.0, np.degrees(rot), self.robot.within_limits_np(q)
        res.solved = res.within_limits & (res.pos_err_mm <= self.solved_mm) & (res.rot_err_deg <= self.solved_deg)
        order = np.lexsort((res.pos_err_mm + res.rot_err_deg, ~free), axis=-1)
        res.distinct = distinct_mask(q, res.solved, order, self.distinct_tol)
        res.free, res.min_distance_mm = free & res.solved, dist * 1000.0

    def _candidates(self, goals: np.ndarray, k: int, refine: bool, seed: int, passes: int = 0,
                    relax: float = 1.0) -> tuple[np.ndarray, ...]:
        """Candidates ``q (G, k, n)`` and their FK-checked position (m), rotation (rad) errors and
        limit flags."""
        if self.model is None:
            return random_candidates(self.robot, goals, k, self.refine_cfg, seed)
        import torch

        from ggik_core.solve.solver import sample_solutions

        cfg = self.refine_cfg if refine else None
        device = next(self.model.parameters()).device
        gen = torch.Generator(device=device).manual_seed(seed)
        sols = sample_solutions(self.model, self.robot, torch.from_numpy(goals), k, generator=gen, refine_cfg=cfg, passes=passes,
                                  relax=relax)
        return sols.q.numpy(), sols.pos_err.numpy(), sols.rot_err.numpy(), sols.within_limits.numpy().astype(bool)

    def _result(self, goals: np.ndarray, sols: tuple[np.ndarray, ...], refined: bool, seconds: float, passes: int = 0) -> Result:
        q, pos, rot, within = sols
        pos_mm = pos * 1000.0
        rot_deg = np.degrees(rot)
        solved, distinct = solved_and_distinct(q, pos_mm, rot_deg, within, self.solved_mm, self.solved_deg, self.distinct_tol)
        dist = distance_from_first_axis(self.robot, goals)
        note = self.dof_note()
        return Result(robot=self.robot.name, goals=goals, q=q, pos_err_mm=pos_mm, rot_err_deg=rot_deg, within_limits=within,
                      solved=solved, distinct=distinct, out_of_reach=dist > self.reach + REACH_SLACK, refined=refined, seeds=self.seeds,
                      seconds=seconds, notes=[note] if note else [], passes=passes)


def _load_robot(spec: str, base_link: str | None, ee_link: str | None) -> Robot:
    from ggik_core.robots.files import load_robot

    return load_robot(spec, base_link=base_link, ee_link=ee_link)


def _load_model(model: Any, device: str | torch.device | None) -> Any:
    if model is None:
        return None
    import torch

    if isinstance(model, torch.nn.Module):
        return model
    from ggik_core.model.files import load_model

    path = Path(model).expanduser()
    if not path.is_file():
        raise GGIKError(f"model {path} not found")
    return load_model(path, torch.device(device) if device is not None else None)
