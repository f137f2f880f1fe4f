r"""Obstacle scenes: a YAML list of primitive shapes in the robot's base frame.

Format (all lengths in metres, angles in radians)::

    obstacles:
      - name: table            # optional; default "<type> #<position>"
        type: plane            # the half-space below the plane z = 0 of the entry's pose
        xyz: [0, 0, -0.01]
      - name: box_left
        type: box
        size: [0.2, 0.3, 0.4]  # full edge lengths along the box's x, y, z
        xyz: [0.5, 0.3, 0.2]
        rpy: [0, 0, 0.3]       # fixed-axis roll, pitch, yaw: R = Rz(yaw) Ry(pitch) Rx(roll)
      - type: sphere
        radius: 0.1
        xyz: [0.4, -0.3, 0.5]
      - type: cylinder         # axis along the shape's z, centred on its pose
        radius: 0.05
        length: 0.3
        xyz: [0.3, 0.0, 0.15]
        quat: [1, 0, 0, 0]     # w x y z (normalised here); give rpy or quat, not both
      - type: capsule          # a cylinder of that length with hemispherical caps
        radius: 0.05
        length: 0.3

Every entry needs ``type`` and its size keys (``box``: ``size``; ``sphere``: ``radius``;
``cylinder`` / ``capsule``: ``radius`` and ``length``; ``plane``: none); ``xyz`` defaults to the
origin and the rotation to the identity. A ``plane`` is the half-space under its pose's xy-plane:
its normal is the pose's z axis, and everything below counts as inside the obstacle. Poses are in
the frame of the robot's base link (the one the solver's goals are given in). Sizes must be
positive and finite; unknown keys, unknown types and missing keys are errors
(:class:`~ggik_core.errors.CollisionError`, one line naming the entry).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ggik_core.errors import CollisionError

#: shape type -> the size keys it needs
SHAPES: dict[str, tuple[str, ...]] = {
    "box": ("size",),
    "sphere": ("radius",),
    "cylinder": ("radius", "length"),
    "capsule": ("radius", "length"),
    "plane": (),
}
POSE_KEYS = ("xyz", "rpy", "quat")


@dataclass(frozen=True)
class Obstacle:
    """One obstacle: ``type`` (a key of :data:`SHAPES`), its sizes and its pose ``(4, 4)`` in the
    base frame. ``size`` is ``(x, y, z)`` for a box, ``(radius,)`` for a sphere, ``(radius,
    length)`` for a cylinder or capsule and ``()`` for a plane."""

    name: str
    type: str
    size: tuple[float, ...]
    pose: np.ndarray

    def geometry(self) -> Any:
        """The shape as a coal collision geometry (in the shape's own frame)."""
        import coal

        if self.type == "box":
            return coal.Box(*self.size)
        if self.type == "sphere":
            return coal.Sphere(self.size[0])
        if self.type == "cylinder":
            return coal.Cylinder(*self.size)
        if self.type == "capsule":
            return coal.Capsule(*self.size)
        return coal.Halfspace(np.array([0.0, 0.0, 1.0]), 0.0)


@dataclass(frozen=True)
class Scene:
    """Obstacles in the robot's base frame (:func:`load_scene`, :func:`parse_scene`)."""

    obstacles: tuple[Obstacle, ...]
    source: str = "<scene>"


def load_scene(path: str | Path) -> Scene:
    """Read a scene YAML file (format: this module's docstring).

    Raises:
        CollisionError: the file cannot be read or parsed, or an entry is invalid.
    """
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise CollisionError(f"cannot read scene {path}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CollisionError(f"cannot parse scene {path}: {' '.join(str(exc).split())}") from None
    return parse_scene(data, str(path))


def parse_scene(data: Any, source: str = "<scene>") -> Scene:
    """A :class:`Scene` from parsed YAML (a mapping with an ``obstacles`` list, or the list itself)."""
    if isinstance(data, dict):
        extra = sorted(set(data) - {"obstacles"})
        if extra:
            raise CollisionError(f"scene {source}: unknown top-level key {extra[0]!r} (expected 'obstacles')")
        data = data.get("obstacles", [])
    if data is None:
        data = []
    if not isinstance(data, list):
        raise CollisionError(f"scene {source}: 'obstacles' must be a list of entries")
    obstacles = [_obstacle(entry, i, source) for i, entry in enumerate(data)]
    names = [o.name for o in obstacles]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise CollisionError(f"scene {source}: two obstacles are named {dup!r}")
    return Scene(tuple(obstacles), source)


def _obstacle(entry: Any, i: int, source: str) -> Obstacle:
    where = f"scene {source}: obstacle #{i + 1}"
    if not isinstance(entry, dict):
        raise CollisionError(f"{where} is not a mapping")
    if "name" in entry:
        where += f" ({entry['name']!r})"
    kind = entry.get("type")
    if kind is None:
        raise CollisionError(f"{where} has no 'type' (one of {', '.join(SHAPES)})")
    if kind not in SHAPES:
        raise CollisionError(f"{where} has unknown type {kind!r} (one of {', '.join(SHAPES)})")
    allowed = ("name", "type", *SHAPES[kind], *POSE_KEYS)
    extra = sorted(set(entry) - set(allowed))
    if extra:
        raise CollisionError(f"{where}: unknown key {extra[0]!r} for a {kind} (allowed: {', '.join(allowed)})")
    missing = [k for k in SHAPES[kind] if k not in entry]
    if missing:
        raise CollisionError(f"{where}: a {kind} needs {missing[0]!r}")
    if kind == "box":
        size = _numbers(entry["size"], 3, where, "size")
    else:
        size = tuple(_numbers(entry[k], 1, where, k)[0] for k in SHAPES[kind])
    bad = [v for v in size if not v > 0]
    if bad:
        raise CollisionError(f"{where}: sizes must be positive, got {bad[0]}")
    if "rpy" in entry and "quat" in entry:
        raise CollisionError(f"{where}: give 'rpy' or 'quat', not both")
    pose = np.eye(4)
    pose[:3, 3] = _numbers(entry.get("xyz", (0.0, 0.0, 0.0)), 3, where, "xyz")
    if "rpy" in entry:
        from ggik_core.robots.urdf import rpy_rotation

        pose[:3, :3] = rpy_rotation(np.array(_numbers(entry["rpy"], 3, where, "rpy")))
    elif "quat" in entry:
        w, x, y, z = _numbers(entry["quat"], 4, where, "quat")
        norm = math.sqrt(w * w + x * x + y * y + z * z)
        if norm < 1e-9:
            raise CollisionError(f"{where}: 'quat' is zero")
        w, x, y, z = w / norm, x / norm, y / norm, z / norm
        pose[:3, :3] = [[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]]
    name = str(entry.get("name", f"{kind} #{i + 1}"))
    return Obstacle(name=name, type=kind, size=tuple(size), pose=pose)


def _numbers(value: Any, count: int, where: str, key: str) -> tuple[float, ...]:
    """``count`` finite numbers from a scalar (count 1) or a list."""
    items = [value] if count == 1 and not isinstance(value, (list, tuple)) else value
    if not isinstance(items, (list, tuple)) or len(items) != count:
        raise CollisionError(f"{where}: {key!r} must be {count} number{'s' if count > 1 else ''}, got {value!r}")
    out = []
    for v in items:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise CollisionError(f"{where}: {key!r} must be finite numbers, got {value!r}")
        out.append(float(v))
    return tuple(out)
