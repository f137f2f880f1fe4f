r"""Self-collision and obstacle checks from a URDF's own ``<collision>`` geometry (coal).

:meth:`CollisionModel.from_urdf` reads every ``<link>``'s ``<collision>`` elements (``mesh``,
``box``, ``cylinder``, ``sphere`` and the non-standard ``capsule``) and builds one coal object per
element. Every link of the URDF's tree is placed, not only those of the solver's chain
``base_link -> ee_link``: joints on the chain take the configuration's angles, every other joint
(gripper fingers, a second arm, a head) stays at zero, so hands and tools fixed below the end
effector move with it and the rest of the robot is a static obstacle. Poses are in the frame of
``base_link``, the frame of the solver's goals and of obstacle scenes (:mod:`ggik_core.robots.scene`).

Meshes are loaded with coal's mesh loader (STL, DAE, OBJ, ...) and, by default, replaced by their
convex hulls: about eight times faster distance queries and a conservative test (a configuration
free with the hulls is free with the meshes). Mesh paths: ``package://pkg/rest`` is looked up under
each of ``package_dirs`` (``dir/pkg/rest``, or ``dir/rest`` when ``dir`` is itself named ``pkg``)
and then next to the URDF: in every folder above it, a folder named ``pkg`` (or the folder itself
when it is named ``pkg``); ``file://`` and plain paths are absolute or relative to the URDF.

Which link pairs are checked follows MoveIt's setup assistant. A pair is excluded when

* ``rigid``: no chain joint lies between the two links (same moving body, or both static);
* ``adjacent``: one chain joint connects their bodies;
* ``default``: they collide at the home configuration (zero clamped into the limits);
* ``never``: they collide in none of ``samples`` configurations drawn uniformly in the limits
  (pairs that collide in at least :data:`ALWAYS_FRACTION` of them are excluded as ``always``);
* ``user``: listed in ``exclude``.

Obstacles are checked against every link that a chain joint moves (static links, such as a base
standing on a table plane, would collide in every configuration).

Reading the geometry and placing the links: :mod:`ggik_core.robots.collision_parts`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence

import numpy as np

from ggik_core.errors import CollisionError
from ggik_core.robots.broadphase import boxes_meet, boxes_meet_fixed, fixed_boxes, local_boxes, world_boxes
from ggik_core.robots.collision_parts import Part, TreeFK, adjacent, coal_object, link_key, read_parts, require_coal, resolve_mesh  # noqa: F401
from ggik_core.robots.robot import Robot
from ggik_core.robots.scene import Scene

Mode = Literal["self", "scene", "all"]
MODES = ("self", "scene", "all")
#: random configurations drawn to find link pairs that never collide
DEFAULT_SAMPLES = 2000
#: share of the random configurations in which a pair must collide to count as always colliding
ALWAYS_FRACTION = 0.95


@dataclass
class CollisionModel:
    """Collision geometry of one robot and optionally a scene (build it with :meth:`from_urdf`).

    Attributes:
        robot: the solver's chain (``base_link -> ee_link``).
        parts: every collision element of the URDF's links.
        self_pairs: the link pairs that are checked, as indices into ``parts``.
        scene_pairs: ``(part, obstacle)`` index pairs that are checked.
        excluded: every excluded link pair (sorted names) and why (module docstring).
        note: ``None``, or one line for the user when self-collision is not checked.
    """

    robot: Robot
    parts: list[Part]
    self_pairs: list[tuple[int, int]]
    scene_pairs: list[tuple[int, int]]
    excluded: dict[tuple[str, str], str]
    scene: Scene | None = None
    note: str | None = None
    _fk: Any = None
    _objects: list[Any] = field(default_factory=list)
    _obstacles: list[Any] = field(default_factory=list)
    _boxes: Any = None  # local part boxes and fixed obstacle boxes (:mod:`ggik_core.robots.broadphase`), built on first use

    @property
    def base_link(self) -> str:
        """The link whose frame the poses, goals and obstacles are in."""
        return self._fk.base

    @property
    def checked(self) -> bool:
        """Whether the robot has collision geometry (else :meth:`check` reports every
        configuration free and :attr:`note` says so)."""
        return bool(self.parts)

    @classmethod
    def from_urdf(cls, path: str | Path, base_link: str | None = None, ee_link: str | None = None,
                  package_dirs: Sequence[str | Path] = (), exclude: Iterable[tuple[str, str]] = (),
                  scene: Scene | None = None, samples: int = DEFAULT_SAMPLES, convex: bool = True,
                  seed: int = 0) -> "CollisionModel":
        """Build the model of a URDF's chain ``base_link -> ee_link`` (defaults as
        :func:`ggik_core.robots.urdf.load_urdf`).

        Args:
            package_dirs: folders where ``package://`` paths are looked up first.
            exclude: extra link pairs never to check.
            scene: obstacles in the base frame, or None.
            samples: random configurations used to find pairs that never collide (0: keep them).
            convex: replace meshes by their convex hulls.
            seed: seeds those random configurations.

        Raises:
            RobotError: the chain cannot be built (see ``load_urdf``).
            CollisionError: a mesh file is missing or unreadable, a geometry is invalid, or an
                excluded link does not exist.
        """
        from lxml import etree

        from ggik_core.robots.urdf import URDFTree, load_urdf, read_model

        require_coal()
        path = Path(path)
        robot = load_urdf(path, base_link, ee_link)
        model = read_model(path)
        tree = URDFTree(model, path)
        base = tree.pick_base(base_link)
        root = etree.fromstring(path.read_bytes())
        parts = read_parts(root, path, [Path(d) for d in package_dirs], convex)
        fk = TreeFK(tree, base, robot.joint_names)
        excluded: dict[tuple[str, str], str] = {}
        for a, b in exclude:
            for link in (a, b):
                if link not in tree.links:
                    raise CollisionError(f"{path}: excluded pair ({a!r}, {b!r}) names no link {link!r} of the URDF")
            excluded[link_key(a, b)] = "user"
        out = cls(robot=robot, parts=parts, self_pairs=[], scene_pairs=[], excluded=excluded, scene=scene, _fk=fk)
        if not parts:
            out.note = f"self-collision unchecked: {path.name} has no <collision> geometry"
            return out
        out._objects = [coal_object(p.geometry) for p in parts]
        out._select_pairs(samples, seed)
        if scene is not None:
            import coal

            out._obstacles = []
            for obstacle in scene.obstacles:
                obj = coal_object(obstacle.geometry())
                obj.setTransform(coal.Transform3s(obstacle.pose[:3, :3].copy(), obstacle.pose[:3, 3].copy()))
                out._obstacles.append(obj)
            moving = [i for i, p in enumerate(parts) if fk.body[p.link] >= 0]
            out.scene_pairs = [(i, j) for i in moving for j in range(len(scene.obstacles))]
            out._boxes = None  # the pair selection built them before the obstacles were placed
        return out

    # -- pair selection ---------------------------------------------------------------------------

    def _select_pairs(self, samples: int, seed: int) -> None:
        body = self._fk.body
        links = sorted({p.link for p in self.parts}, key=self._fk.order.index)
        candidates: list[tuple[str, str]] = []
        for i, a in enumerate(links):
            for b in links[i + 1:]:
                key = link_key(a, b)
                if key in self.excluded:
                    continue
                if body[a] == body[b]:
                    self.excluded[key] = "rigid"
                elif adjacent(self._fk, a, b):
                    self.excluded[key] = "adjacent"
                else:
                    candidates.append(key)
        by_link: dict[str, list[int]] = {}
        for i, p in enumerate(self.parts):
            by_link.setdefault(p.link, []).append(i)
        pairs = {key: [(i, j) for i in by_link[key[0]] for j in by_link[key[1]]] for key in candidates}
        lo, hi = self.robot.lower_np, self.robot.upper_np
        home = np.clip(np.zeros(self.robot.dof), lo, hi)[None]
        hits_home = self._link_pair_hits(home, pairs)[:, 0]
        remaining = [key for key, hit in zip(candidates, hits_home) if not hit]
        for key, hit in zip(candidates, hits_home):
            if hit:
                self.excluded[key] = "default"
        if samples > 0 and remaining:
            rng = np.random.default_rng(seed)
            q = lo + rng.random((samples, self.robot.dof)) * (hi - lo)
            hits = self._link_pair_hits(q, {key: pairs[key] for key in remaining})
            counts = hits.sum(1)
            kept = []
            for key, c in zip(remaining, counts):
                if c == 0:
                    self.excluded[key] = "never"
                elif c >= ALWAYS_FRACTION * samples:
                    self.excluded[key] = "always"
                else:
                    kept.append(key)
            # the pairs that collide most often first: a colliding configuration stops sooner
            hits = dict(zip(remaining, counts))
            remaining = sorted(kept, key=lambda key: -int(hits[key]))
        self.self_pairs = [ij for key in remaining for ij in pairs[key]]

    def _link_pair_hits(self, q: np.ndarray, pairs: dict[tuple[str, str], list[tuple[int, int]]]) -> np.ndarray:
        """``(len(pairs), n)`` bool: the link pair collides at each configuration (boxes first, as
        :meth:`check`)."""
        import coal

        out = np.zeros((len(pairs), q.shape[0]), dtype=bool)
        flat = [(r, i, j) for r, group in enumerate(pairs.values()) for i, j in group]
        if not flat:
            return out
        row, a, b = (np.array(x) for x in zip(*flat))
        poses = self.part_poses(q)
        meet = boxes_meet(*world_boxes(poses, *self._box_data()[0]), a, b)
        req, res = coal.CollisionRequest(), coal.CollisionResult()
        for s in np.nonzero(meet.any(1))[0]:
            placed: set[int] = set()
            for f in np.nonzero(meet[s])[0]:
                if out[row[f], s]:
                    continue
                for i in (a[f], b[f]):
                    if i not in placed:
                        self._place_part(i, poses[s, i])
                        placed.add(i)
                res.clear()
                out[row[f], s] = coal.collide(self._objects[a[f]], self._objects[b[f]], req, res)
        return out

    def _box_data(self) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """(local part boxes, fixed obstacle boxes), built on first use (:mod:`ggik_core.robots.broadphase`)."""
        if self._boxes is None:
            self._boxes = local_boxes(self._objects), fixed_boxes(self._obstacles)
        return self._boxes

    def _place_part(self, i: int, T: np.ndarray) -> None:
        import coal

        self._objects[i].setTransform(coal.Transform3s(T[:3, :3].copy(), T[:3, 3].copy()))

    # -- checks -----------------------------------------------------------------------------------

    def part_poses(self, q: np.ndarray) -> np.ndarray:
        """Poses ``(n, parts, 4, 4)`` of every collision element in the base frame for ``q (n, dof)``."""
        q = np.asarray(q, dtype=np.float64).reshape(-1, self.robot.dof)
        links = self._fk.link_poses(q)
        if not self.parts:
            return np.zeros((q.shape[0], 0, 4, 4))
        return np.stack([links[p.link] @ p.origin for p in self.parts], 1)

    def _place(self, poses: np.ndarray) -> None:
        for i, T in enumerate(poses):
            self._place_part(i, T)

    def check(self, q: np.ndarray, mode: Mode = "all", distance: bool = True,
              broadphase: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Collision flags of configurations.

        Args:
            q: ``(n, dof)`` (or ``(dof,)``) joint angles.
            mode: ``self`` (link pairs), ``scene`` (links against obstacles) or ``all``.
            distance: compute the minimum distance; without it, each configuration stops at its
                first collision and ``min_distance`` is NaN.
            broadphase: without distances, test exactly only the pairs whose world boxes meet
                (:mod:`ggik_core.robots.broadphase`, for all configurations at once); the same
                flags as testing every pair.

        Returns:
            ``free (n,)`` bool and ``min_distance (n,)`` in metres over the checked pairs: the
            smallest separation, zero or negative (penetration) when in collision, ``inf`` when
            nothing is checked.
        """
        import coal

        if mode not in MODES:
            raise CollisionError(f"collision mode {mode!r}: expected one of {', '.join(MODES)}")
        q = np.asarray(q, dtype=np.float64).reshape(-1, self.robot.dof)
        n = q.shape[0]
        free = np.ones(n, dtype=bool)
        dmin = np.full(n, math.inf if distance else math.nan)
        pairs = []
        if mode in ("self", "all"):
            pairs += [(self._objects[i], self._objects[j]) for i, j in self.self_pairs]
        if mode in ("scene", "all"):
            pairs += [(self._objects[i], self._obstacles[j]) for i, j in self.scene_pairs]
        if not pairs:
            if distance:
                dmin[:] = math.inf
            return free, dmin
        poses = self.part_poses(q)
        if not distance and broadphase:
            return self._first_hits(poses, mode), dmin
        req, res = coal.CollisionRequest(), coal.CollisionResult()
        dreq, dres = coal.DistanceRequest(), coal.DistanceResult()
        for s in range(n):
            self._place(poses[s])
            best = math.inf
            for a, b in pairs:
                res.clear()
                hit = coal.collide(a, b, req, res)
                if hit:
                    free[s] = False
                    if not distance:
                        break
                if distance:
                    dres.clear()
                    d = coal.distance(a, b, dreq, dres)
                    best = min(best, min(d, 0.0) if hit else d)
            if distance:
                dmin[s] = best
        return free, dmin

    def _first_hits(self, poses: np.ndarray, mode: Mode) -> np.ndarray:
        """``free (n,)`` of parts placed at ``poses (n, P, 4, 4)``: the boxes of every checked pair
        in one numpy pass, then coal on the pairs whose boxes meet, placing only their parts."""
        import coal

        (centre, half), (lo, hi) = self._box_data()
        c, e = world_boxes(poses, centre, half)
        a_parts, b_parts, b_objects, meet = [], [], [], []  # b_parts: -1 for an obstacle
        if mode in ("self", "all") and self.self_pairs:
            a, b = np.array(self.self_pairs).T
            meet.append(boxes_meet(c, e, a, b))
            a_parts += list(a)
            b_parts += list(b)
            b_objects += [self._objects[j] for j in b]
        if mode in ("scene", "all") and self.scene_pairs:
            a, o = np.array(self.scene_pairs).T
            meet.append(boxes_meet_fixed(c, e, a, lo[o], hi[o]))
            a_parts += list(a)
            b_parts += [-1] * len(o)
            b_objects += [self._obstacles[j] for j in o]
        free = np.ones(poses.shape[0], dtype=bool)
        if not meet:
            return free
        meet_any = np.concatenate(meet, 1)
        placed = np.array([a_parts, b_parts]).T  # (pairs, 2)
        req, res = coal.CollisionRequest(), coal.CollisionResult()
        for s in np.nonzero(meet_any.any(1))[0]:
            done: set[int] = set()  # parts placed for this configuration (placed when first needed)
            for p in np.nonzero(meet_any[s])[0]:
                for i in placed[p]:
                    if i >= 0 and i not in done:
                        self._place_part(i, poses[s, i])
                        done.add(i)
                res.clear()
                if coal.collide(self._objects[a_parts[p]], b_objects[p], req, res):
                    free[s] = False
                    break
        return free

    def colliding_pairs(self, q: np.ndarray, mode: Mode = "all") -> list[tuple[str, str]]:
        """The link (or link, obstacle) name pairs in collision at one configuration ``q (dof,)``."""
        import coal

        poses = self.part_poses(np.asarray(q, dtype=np.float64).reshape(1, -1))
        self._place(poses[0])
        req, res = coal.CollisionRequest(), coal.CollisionResult()
        out: list[tuple[str, str]] = []
        if mode in ("self", "all"):
            for i, j in self.self_pairs:
                res.clear()
                if coal.collide(self._objects[i], self._objects[j], req, res):
                    out.append(link_key(self.parts[i].link, self.parts[j].link))
        if mode in ("scene", "all") and self.scene is not None:
            for i, j in self.scene_pairs:
                res.clear()
                if coal.collide(self._objects[i], self._obstacles[j], req, res):
                    out.append((self.parts[i].link, self.scene.obstacles[j].name))
        return sorted(set(out))

    def checked_link_pairs(self) -> list[tuple[str, str]]:
        """The link pairs the self check looks at (sorted names)."""
        return sorted({link_key(self.parts[i].link, self.parts[j].link) for i, j in self.self_pairs})
