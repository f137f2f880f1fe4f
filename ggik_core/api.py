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
consecutive axis origins (a sound bound, see :func:`reach`). With refinement, a goal within reach
for which no candidate is solved is reported as *not solved* (``Result.failed``).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ggik_core.errors import GGIKError
from ggik_core.robots.robot import Robot
from ggik_core.solve.config import RefineConfig
from ggik_core.solve.multistart import first_distinct, home_frames

if TYPE_CHECKING:  # torch loads only with a model: the default solver (random seeds) runs without it
    import torch

#: Largest accepted deviation of a goal quaternion's norm from 1 (it is then normalised).
QUAT_TOL = 1e-3
#: Largest accepted deviation of a goal rotation matrix from orthonormality.
ROT_TOL = 1e-6
#: Slack (metres) added to the reach bound, so that goals on the boundary are never flagged.
REACH_SLACK = 1e-6


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

    def order(self) -> np.ndarray:
        """``(G, k)`` candidate indices, best first (position mm + rotation degrees)."""
        return np.argsort(self.pos_err_mm + self.rot_err_deg, axis=1, kind="stable")

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
        distinct`` and the goal ``goal_x, goal_y, goal_z, goal_qw, goal_qx, goal_qy, goal_qz``.
        """
        order = self.order()
        G, k, n = self.q.shape
        take = lambda a: np.take_along_axis(a, order, 1).reshape(-1)  # noqa: E731
        q = np.take_along_axis(self.q, order[..., None], 1).reshape(G * k, n)
        cols: dict[str, Any] = {"goal_id": np.repeat(np.arange(G), k), "sample_id": np.tile(np.arange(k), G)}
        cols.update({f"q_{j + 1}": q[:, j] for j in range(n)})
        cols.update(pos_err_mm=take(self.pos_err_mm), rot_err_deg=take(self.rot_err_deg), within_limits=take(self.within_limits),
                    solved=take(self.solved), distinct=take(self.distinct))
        goal7 = np.repeat(pose_to_xyz_quat(self.goals), k, axis=0)
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
    """

    def __init__(
        self,
        robot: str | Path | Robot,
        base_link: str | None = None,
        ee_link: str | None = None,
        model: str | Path | Any | None = None,
        max_iter: int | None = None,
        pos_tol_mm: float = 0.01,
        rot_tol_deg: float = 0.01,
        solved_mm: float = 1.0,
        solved_deg: float = 1.0,
        distinct_tol: float = 0.05,
        threads: int | None = 0,
        device: str | torch.device | None = None,
        time_budget_s: float | None = None,
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

    def solve(self, poses: Any, k: int = 32, refine: bool = True, seed: int = 0, passes: int | None = None,
              relax: float | None = None) -> Result:
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
        goals = as_poses(poses)
        t0 = time.perf_counter()
        sols = self._candidates(goals, k, refine, seed, passes, self.RELAX if relax is None else relax)
        return self._result(goals, sols, refine, time.perf_counter() - t0, passes if self.model is not None else 0)

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


def random_candidates(robot: Robot, goals: np.ndarray, k: int, cfg: RefineConfig, seed: int) -> tuple[np.ndarray, ...]:
    """Multi-start IK without torch (:mod:`ggik_core.solve.multistart`): ``k`` refined candidates per
    goal from pools of configurations drawn uniformly inside the limits (``k`` plus
    :func:`~ggik_core.solve.multistart.extra_count` per goal), with their FK-checked errors and
    limit flags."""
    from ggik_core.solve.multistart import extra_count, forward_kinematics, pose_errors, random_configurations, refine_pools

    G, n = goals.shape[0], robot.dof
    m = k + extra_count(k, G, cfg)
    q0 = random_configurations(robot.lower_np, robot.upper_np, G * m, np.random.default_rng(seed)).reshape(G, m, n)
    lower, upper = robot.bounds_np()
    q = refine_pools(robot.chain_np, q0, goals, lower, upper, cfg, keep=k)
    pos, rot = pose_errors(forward_kinematics(robot.chain_np, q), goals[:, None])
    return q, pos, rot, robot.within_limits_np(q)


# --- helpers -------------------------------------------------------------------------------------


def csv_text(cols: dict[str, np.ndarray]) -> str:
    """Comma-separated text with a header, formatted as pandas writes it: floats in their shortest
    round-trip form (NaN as an empty cell), booleans as True/False."""

    def cells(a: np.ndarray) -> list[str]:
        if a.dtype.kind == "f":
            return ["" if v != v else repr(v) for v in a.tolist()]
        return [str(v) for v in a.tolist()]

    rows = zip(*(cells(np.asarray(a)) for a in cols.values()))
    return ",".join(cols) + "\n" + "".join(",".join(r) + "\n" for r in rows)


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


def reach(robot: Robot) -> float:
    r"""A sound upper bound (metres) on the distance from the first joint's axis origin to the EE.

    The axis-frame origin :math:`o_i` lies on joint i's axis, so it is fixed in link i-1 and in
    link i; the distances :math:`|o_{i+1} - o_i|` (and :math:`|p_{ee} - o_n|`) therefore do not
    depend on the configuration, and by the triangle inequality their sum bounds
    :math:`|p_{ee} - o_1|` for every q, whatever the joint limits.
    """
    origins = home_frames(robot.chain_np)[:, :3, 3]  # (n + 1, 3): axis origins, then the EE
    return float(np.linalg.norm(origins[1:] - origins[:-1], axis=-1).sum())


def distance_from_first_axis(robot: Robot, goals: np.ndarray) -> np.ndarray:
    """``(G,)`` distances (metres) from the first joint's axis origin to the goal positions ``(G, 4, 4)``."""
    return np.linalg.norm(np.asarray(goals)[:, :3, 3] - robot.chain_np[0, :3, 3], axis=-1)


def solved_and_distinct(q: np.ndarray, pos_mm: np.ndarray, rot_deg: np.ndarray, within: np.ndarray, solved_mm: float,
                        solved_deg: float, distinct_tol: float) -> tuple[np.ndarray, np.ndarray]:
    """``(G, k)`` masks: candidates inside the limits and within ``solved_mm`` / ``solved_deg``,
    and the solved ones that count as distinct (:func:`distinct_mask`, best first)."""
    solved = within & (pos_mm <= solved_mm) & (rot_deg <= solved_deg)
    order = np.argsort(pos_mm + rot_deg, axis=1, kind="stable")
    return solved, distinct_mask(q, solved, order, distinct_tol)


def distinct_mask(q: np.ndarray, valid: np.ndarray, order: np.ndarray, tol: float, max_elements: int = 1 << 24) -> np.ndarray:
    """``(G, k)``: valid candidates not within ``tol`` (max joint difference on the circle) of a
    better counted one, candidates taken in ``order`` (best first)
    (:func:`~ggik_core.solve.multistart.first_distinct`, in chunks under ``max_elements``)."""
    qs = np.take_along_axis(q, order[..., None], 1)
    vs = np.take_along_axis(valid, order, 1)
    counted = first_distinct(qs, vs, tol, max_elements)
    out = np.zeros_like(counted)
    np.put_along_axis(out, order, counted, 1)
    return out


def as_poses(poses: Any) -> np.ndarray:
    """Goal poses ``(G, 4, 4)`` float64 from matrices or ``x y z qw qx qy qz`` rows (checked); a
    tensor is accepted too."""
    arr = np.asarray(poses.detach().cpu().numpy() if hasattr(poses, "detach") else poses, dtype=np.float64)
    if arr.shape in ((7,), (4, 4)):
        arr = arr[None]
    if arr.ndim == 2 and arr.shape[1] == 7:
        return poses_from_rows(arr)
    if arr.ndim == 3 and arr.shape[1:] == (4, 4):
        return _checked_matrices(arr)
    raise GGIKError(f"poses must be (4, 4), (G, 4, 4), (7,) or (G, 7) [x y z qw qx qy qz], got shape {arr.shape}")


def poses_from_rows(rows: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """``(G, 4, 4)`` from ``(G, 7)`` rows ``x y z qw qx qy qz``; the quaternions are normalised."""
    g = np.array(rows, dtype=np.float64).reshape(-1, 7)
    bad = np.nonzero(~np.isfinite(g).all(-1))[0]
    if bad.size:
        raise GGIKError(f"goal {int(bad[0])}: contains NaN or infinity")
    norm = np.linalg.norm(g[:, 3:], axis=-1)
    off = np.nonzero(np.abs(norm - 1.0) > QUAT_TOL)[0]
    if off.size:
        i = int(off[0])
        raise GGIKError(f"goal {i}: quaternion (qw qx qy qz) has norm {float(norm[i]):.4g}, expected a unit quaternion")
    w, x, y, z = (g[:, 3:] / norm[:, None]).T
    T = np.zeros((len(g), 4, 4))
    T[:, :3, :3] = np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)
    T[:, :3, 3] = g[:, :3]
    T[:, 3, 3] = 1.0
    return T


def pose_to_xyz_quat(T: np.ndarray) -> np.ndarray:
    """``(G, 7)`` rows ``x y z qw qx qy qz`` (``qw >= 0``) of poses ``(G, 4, 4)``.

    Each of the four rows below is the quaternion times four times one of its components; the
    row of the largest component is the well-conditioned one (Shepperd's method).
    """
    R = T[:, :3, :3]
    r = lambda i, j: R[:, i, j]  # noqa: E731
    cands = np.stack([
        np.stack([1 + r(0, 0) + r(1, 1) + r(2, 2), r(2, 1) - r(1, 2), r(0, 2) - r(2, 0), r(1, 0) - r(0, 1)], -1),
        np.stack([r(2, 1) - r(1, 2), 1 + r(0, 0) - r(1, 1) - r(2, 2), r(0, 1) + r(1, 0), r(0, 2) + r(2, 0)], -1),
        np.stack([r(0, 2) - r(2, 0), r(0, 1) + r(1, 0), 1 - r(0, 0) + r(1, 1) - r(2, 2), r(1, 2) + r(2, 1)], -1),
        np.stack([r(1, 0) - r(0, 1), r(0, 2) + r(2, 0), r(1, 2) + r(2, 1), 1 - r(0, 0) - r(1, 1) + r(2, 2)], -1),
    ], 1)  # (G, 4 candidates, wxyz)
    pick = np.argmax(np.diagonal(cands, axis1=1, axis2=2), axis=1)
    quat = cands[np.arange(len(T)), pick]
    quat = quat / np.linalg.norm(quat, axis=1, keepdims=True)
    quat = np.where(quat[:, :1] < 0, -quat, quat)
    return np.concatenate([T[:, :3, 3], quat], 1)


def _checked_matrices(arr: np.ndarray) -> np.ndarray:
    if not np.isfinite(arr).all():
        raise GGIKError(f"goal {int(np.nonzero(~np.isfinite(arr).reshape(len(arr), -1).all(1))[0][0])}: contains NaN or infinity")
    R = arr[:, :3, :3]
    ortho = np.abs(np.swapaxes(R, 1, 2) @ R - np.eye(3)).max((1, 2))
    det = np.linalg.det(R)
    bottom = np.abs(arr[:, 3] - np.array([0.0, 0.0, 0.0, 1.0])).max(1)
    bad = np.nonzero((ortho > ROT_TOL) | (det < 0) | (bottom > 0))[0]
    if bad.size:
        raise GGIKError(f"goal {int(bad[0])}: not a rigid transform (the rotation must be orthonormal with determinant 1, the last row 0 0 0 1)")
    return arr.copy()


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
