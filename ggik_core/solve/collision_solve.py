"""Collision checks inside a solve: which model to build (:func:`setup_collision`) and how a batch
of candidates becomes ``k`` collision-free distinct solutions per goal (:func:`free_candidates`).

Modes (``Solver(collision=...)``, ``ggik solve --collision``):

* ``off``: nothing is checked;
* ``self``: link against link of the URDF's ``<collision>`` geometry;
* ``scene``: moving links against the obstacles of a scene file;
* ``all``: both;
* ``auto``: ``all`` (``self`` without a scene) when the robot is a URDF with collision geometry
  and coal is installed; otherwise nothing is checked and one note says why. Catalog arms and DH
  files have no geometry: ``auto`` checks nothing for them, silently.

An explicit mode on a robot without geometry, or a mesh that cannot be found, is an error; under
``auto`` a missing mesh or a missing coal package is a note.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ggik_core.errors import CollisionError, GGIKError
from ggik_core.robots.robot import Robot

MODES = ("auto", "off", "self", "scene", "all")


@dataclass
class CollisionSetup:
    """The model to check with (None: nothing checked), the mode it runs in and a note or None."""

    model: Any = None
    mode: str = "off"
    note: str | None = None


def parse_pairs(text: str | Sequence[Any] | None) -> list[tuple[str, str]]:
    """``"linkA:linkB,linkC:linkD"`` (or a list of such strings or of pairs) as link pairs."""
    if text is None:
        return []
    items: list[Any] = [p for p in text.split(",") if p.strip()] if isinstance(text, str) else list(text)
    out = []
    for item in items:
        if isinstance(item, str):
            for sub in [p for p in item.split(",") if p.strip()]:
                a, sep, b = sub.strip().partition(":")
                if not sep or not a.strip() or not b.strip() or ":" in b:
                    raise GGIKError(f"--exclude-pairs: {sub.strip()!r} is not 'linkA:linkB' (pairs separated by commas)")
                out.append((a.strip(), b.strip()))
        else:
            a, b = item
            out.append((str(a), str(b)))
    return out


def setup_collision(spec: Any, robot: Robot, mode: str, scene: Any = None, package_dirs: Sequence[str | Path] = (),
                    exclude: Sequence[tuple[str, str]] = (), base_link: str | None = None, ee_link: str | None = None,
                    seed: int = 0) -> CollisionSetup:
    """The :class:`CollisionSetup` of a solver for ``robot`` loaded from ``spec`` (module docstring).

    ``scene``: a scene YAML path or a :class:`~ggik_core.robots.scene.Scene`, or None."""
    from ggik_core.robots.files import is_urdf

    if mode not in MODES:
        raise GGIKError(f"--collision {mode!r}: expected one of {', '.join(MODES)}")
    extras = [name for name, given in (("--scene", scene is not None), ("--package-dir", bool(package_dirs)),
                                       ("--exclude-pairs", bool(exclude))) if given]
    if mode == "off":
        if extras:
            raise GGIKError(f"{extras[0]} has no effect with --collision off")
        return CollisionSetup()
    if mode == "self" and scene is not None:
        raise GGIKError("--scene has no effect with --collision self (use scene or all)")
    if mode == "scene" and scene is None:
        raise GGIKError("--collision scene needs --scene FILE")
    urdf = None if isinstance(spec, Robot) or not Path(str(spec)).is_file() or not is_urdf(Path(str(spec))) else Path(str(spec))
    if urdf is None:
        if mode == "auto" and not extras:
            return CollisionSetup()
        what = f"--collision {mode}" if mode != "auto" else extras[0]
        raise GGIKError(f"{what}: {robot.name} has no collision geometry (a catalog arm, DH file or Robot); pass a URDF with "
                        f"<collision> elements")
    scene_obj = _scene(scene)
    try:
        from ggik_core.robots.collision import CollisionModel

        model = CollisionModel.from_urdf(urdf, base_link, ee_link, package_dirs=package_dirs, exclude=exclude, scene=scene_obj,
                                         seed=seed)
    except CollisionError as exc:
        if mode != "auto" or scene is not None or package_dirs or exclude:
            raise
        return CollisionSetup(note=f"note: collisions unchecked: {exc}; pass --package-dir DIR, or --collision off")
    if not model.checked:
        if scene_obj is not None:
            raise GGIKError(f"--scene: {urdf.name} has no <collision> geometry, so its links cannot be checked against obstacles")
        return CollisionSetup(note=f"note: {model.note}")
    effective = ("all" if scene_obj is not None else "self") if mode == "auto" else mode
    return CollisionSetup(model=model, mode=effective)


def _scene(scene: Any) -> Any:
    if scene is None or not isinstance(scene, (str, Path)):
        return scene
    from ggik_core.robots.scene import load_scene

    return load_scene(scene)


def free_candidates(setup: CollisionSetup, goals: np.ndarray, q: np.ndarray, solved: np.ndarray, k: np.ndarray, reseed: np.ndarray,
                    cfg: Any, distinct_tol: float, budget_s: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(q, free, min_distance_m)`` ``(G, K, ...)``: each goal's candidates ``q (G, K, n)`` with
    colliding ones replaced, as far as the time budget allows, by fresh collision-free ones.

    For the goals in ``reseed (G,)`` the solved candidates are checked and the goal is re-seeded
    (LM multistart from ``K`` uniform seeds a round) until it has ``k[g]`` distinct collision-free
    solutions, a round brings no new solution, or ``budget_s`` is spent. Its rows are then those
    solutions followed by the original candidates that were not kept. The other goals' solved
    candidates are only checked. ``free`` is False and the distance NaN for unsolved rows."""
    from ggik_core.solve.collision_free import check_candidates, collision_free_solutions

    model, mode = setup.model, setup.mode
    G, K, n = q.shape
    out_q = q.copy()
    free, dist = check_candidates(model, q, solved & ~reseed[:, None], mode=mode)
    todo = np.nonzero(reseed)[0]
    if todo.size == 0:
        return out_q, free, dist
    propose = _proposer(model.robot, goals[todo], q[todo], solved[todo], K, cfg, distinct_tol, seed)
    found = collision_free_solutions(model, propose, len(todo), np.asarray(k)[todo], time_budget_s=budget_s, distinct_tol=distinct_tol, mode=mode)
    filler = np.zeros((G, K), dtype=bool)  # original solved rows kept after the new solutions
    for r, g in enumerate(todo):
        kept = found.q[r][:K]
        m = len(kept)
        used = [j for j in range(K) if m and (np.abs(q[g, j] - kept).max(-1) < 1e-12).any()]
        rest = [j for j in range(K) if j not in used][:K - m]
        out_q[g] = np.concatenate([kept, q[g, rest]]) if m else q[g]
        free[g, :m], dist[g, :m] = True, found.min_distance[r][:m]
        filler[g, m:] = solved[g, rest]
    f, d = check_candidates(model, out_q, filler, mode=mode)
    free[filler], dist[filler] = f[filler], d[filler]
    return out_q, free, dist


def _proposer(robot: Robot, goals: np.ndarray, q0: np.ndarray, solved0: np.ndarray, m: int, cfg: Any, tol: float, seed: int) -> Any:
    """Round 0: the solver's own candidates; later rounds: LM multistart from ``m`` uniform seeds
    per goal, skipping goals whose previous round found no new distinct solution."""
    import dataclasses

    from ggik_core.solve.multistart import forward_kinematics, pose_errors, random_configurations, refine_pools, wrap_angle

    lower, upper = robot.bounds_np()
    lm = dataclasses.replace(cfg, extra_seeds=0.0, time_budget_s=None)
    seen: list[list[np.ndarray]] = [[] for _ in range(len(goals))]
    exhausted = np.zeros(len(goals), dtype=bool)

    def note_new(g: int, rows: np.ndarray) -> bool:
        new = False
        for row in rows:
            if not seen[g] or (np.abs(wrap_angle(np.stack(seen[g]) - row)).max(-1) >= tol).all():
                seen[g].append(row)
                new = True
        return new

    def propose(todo: np.ndarray, round_: int) -> tuple[np.ndarray, np.ndarray]:
        if round_ == 0:
            for r, g in enumerate(todo):
                note_new(g, q0[g][solved0[g]])
            return q0[todo], solved0[todo]
        qs, valid = np.zeros((len(todo), m, robot.dof)), np.zeros((len(todo), m), dtype=bool)
        live = np.array([r for r, g in enumerate(todo) if not exhausted[g]], dtype=int)
        if live.size:
            rng = np.random.default_rng((seed, round_))
            start = random_configurations(robot.lower_np, robot.upper_np, live.size * m, rng).reshape(live.size, m, robot.dof)
            sub = todo[live]
            got = refine_pools(robot.chain_np, start, goals[sub], lower, upper, lm, keep=m)
            pos, rot = pose_errors(forward_kinematics(robot.chain_np, got), goals[sub][:, None])
            ok = (pos < 10 * lm.pos_tol) & (rot < 10 * lm.rot_tol) & robot.within_limits_np(got)
            qs[live], valid[live] = got, ok
            for r, g in zip(live, sub):
                exhausted[g] = not note_new(g, got[r][ok[r]])
        return qs, valid

    return propose


def elapsed_budget(t0: float, budget: float | None, default: float) -> float:
    """What is left of ``budget`` (or ``default`` when None) since ``t0``, at least zero."""
    return max(0.0, (default if budget is None else budget) - (time.perf_counter() - t0))

