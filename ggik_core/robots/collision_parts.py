r"""Collision geometry of a URDF for :mod:`ggik_core.robots.collision`: its ``<collision>``
elements as coal objects (:func:`read_parts`, mesh paths by :func:`resolve_mesh`) and the poses of
every link of its tree (:class:`TreeFK`). The rules (mesh lookup, convex hulls, which joints move)
are in :mod:`ggik_core.robots.collision`'s docstring."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ggik_core.errors import CollisionError


@dataclass
class Part:
    """One ``<collision>`` element: its link, its coal geometry and its pose in the link frame."""

    link: str
    geometry: Any
    origin: np.ndarray
    kind: str


def require_coal() -> None:
    """Raise a one-line :class:`CollisionError` when the coal package is missing."""
    try:
        import coal  # noqa: F401
    except ImportError:
        raise CollisionError("collision checks need the coal package: pip install 'ggik[collision]'") from None


# --- URDF geometry -------------------------------------------------------------------------------


def link_key(a: str, b: str) -> tuple[str, str]:
    """A link pair as sorted names."""
    return (a, b) if a <= b else (b, a)


def coal_object(geometry: Any) -> Any:
    """A coal collision object of ``geometry`` at the identity."""
    import coal

    return coal.CollisionObject(geometry, coal.Transform3s())


def read_parts(root: Any, path: Path, package_dirs: list[Path], convex: bool) -> list[Part]:
    """Every ``<collision>`` element of the URDF's links."""
    from ggik_core.robots.urdf import rpy_rotation

    out: list[Part] = []
    for link in root.findall("link"):
        name = link.get("name")
        for col in link.findall("collision"):
            origin = np.eye(4)
            el = col.find("origin")
            if el is not None:
                xyz = _floats(el.get("xyz", "0 0 0"), 3, path, name, "origin xyz")
                rpy = _floats(el.get("rpy", "0 0 0"), 3, path, name, "origin rpy")
                origin[:3, :3] = rpy_rotation(np.array(rpy))
                origin[:3, 3] = xyz
            geom = col.find("geometry")
            shape = None if geom is None else next((c for c in geom if isinstance(c.tag, str)), None)
            if shape is None:
                raise CollisionError(f"{path}: a <collision> of link {name!r} has no <geometry> shape")
            out.append(Part(name, shape_geometry(shape, path, name, package_dirs, convex), origin, shape.tag))
    return out


def shape_geometry(el: Any, path: Path, link: str, package_dirs: list[Path], convex: bool) -> Any:
    import coal

    tag = el.tag

    def size(attr: str, count: int = 1) -> list[float]:
        text = el.get(attr)
        if text is None:
            raise CollisionError(f"{path}: <{tag}> in link {link!r} has no {attr!r}")
        values = _floats(text, count, path, link, f"{tag} {attr}")
        if not all(v > 0 for v in values):
            raise CollisionError(f"{path}: <{tag} {attr}={text!r}> in link {link!r} must be positive")
        return values

    if tag == "box":
        return coal.Box(*size("size", 3))
    if tag == "sphere":
        return coal.Sphere(size("radius")[0])
    if tag == "cylinder":
        return coal.Cylinder(size("radius")[0], size("length")[0])
    if tag == "capsule":
        return coal.Capsule(size("radius")[0], size("length")[0])
    if tag == "mesh":
        filename = el.get("filename")
        if not filename:
            raise CollisionError(f"{path}: a <mesh> of link {link!r} has no filename")
        scale = np.array(_floats(el.get("scale", "1 1 1"), 3, path, link, "mesh scale"))
        file = resolve_mesh(filename, path, package_dirs)
        if file is None:
            raise CollisionError(f"{path}: mesh {filename!r} of link {link!r} not found (pass the folder that holds its package)")
        try:
            mesh = coal.MeshLoader().load(str(file), scale)
        except Exception as exc:  # coal raises its own exception types from C++
            raise CollisionError(f"{path}: cannot load mesh {file} of link {link!r}: {' '.join(str(exc).split())}") from None
        if convex:
            mesh.buildConvexHull(True, "Qt")
            return mesh.convex
        return mesh
    raise CollisionError(f"{path}: link {link!r} has an unsupported collision shape <{tag}>")


def resolve_mesh(filename: str, urdf: Path, package_dirs: Sequence[Path] = ()) -> Path | None:
    """The file a URDF mesh reference names, or None when it does not exist (module docstring)."""
    if filename.startswith("package://"):
        pkg, _, rest = filename[len("package://"):].partition("/")
        candidates = []
        for d in package_dirs:
            candidates += [Path(d) / pkg / rest] + ([Path(d) / rest] if Path(d).name == pkg else [])
        for d in urdf.resolve().parents:
            candidates += [d / rest] if d.name == pkg else [d / pkg / rest]
    elif filename.startswith("file://"):
        candidates = [Path(filename[len("file://"):])]
    else:
        candidates = [urdf.parent / filename]
    return next((c for c in candidates if c.is_file()), None)


def _floats(text: str, count: int, path: Path, link: str, what: str) -> list[float]:
    try:
        values = [float(v) for v in text.split()]
    except ValueError:
        values = []
    if len(values) != count or not all(math.isfinite(v) for v in values):
        raise CollisionError(f"{path}: link {link!r} has {what} {text!r}, expected {count} finite numbers")
    return values


# --- forward kinematics of the whole tree --------------------------------------------------------


class TreeFK:
    """Poses of every link below the tree's root, in the base link's frame, with the chain joints
    at given angles and every other joint at zero.

    ``body[link]`` is the index of the last chain joint above the link (``-1``: no chain joint, the
    link does not move relative to the base)."""

    def __init__(self, tree: Any, base: str, chain_joints: Sequence[str]) -> None:
        root = base
        while root in tree.parent_joint:
            root = tree.parent_joint[root].parent
        self.order: list[str] = [root]
        self.joints: list[tuple[Any, int]] = []  # (joint, chain index or -1) in topological order
        self.body: dict[str, int] = {root: -1}
        self.parent_body_joint: dict[str, Any] = {}
        index = {name: i for i, name in enumerate(chain_joints)}
        stack = [root]
        while stack:
            link = stack.pop(0)
            for joint in tree.child_joints.get(link, []):
                if joint.child in self.body:
                    continue
                i = index.get(joint.name, -1)
                self.joints.append((joint, i))
                self.body[joint.child] = i if i >= 0 else self.body[link]
                self.order.append(joint.child)
                stack.append(joint.child)
        for link in tree.links:  # links of other trees: static, at the identity
            if link not in self.body:
                self.body[link] = -1
                self.order.append(link)
        self.base = base
        self.chain_parent = {i: self.body[j.parent] for j, i in self.joints if i >= 0}

    def link_poses(self, q: np.ndarray) -> dict[str, np.ndarray]:
        n = q.shape[0]
        poses: dict[str, np.ndarray] = {self.order[0]: np.broadcast_to(np.eye(4), (n, 4, 4))}
        for joint, i in self.joints:
            T = poses[joint.parent] @ joint.origin
            if i >= 0:
                T = T @ _rotation(_unit_axis(joint.axis), q[:, i])
            poses[joint.child] = T
        for link in self.order:
            poses.setdefault(link, np.broadcast_to(np.eye(4), (n, 4, 4)))
        inv = np.linalg.inv(poses[self.base][0])
        return {link: inv @ T for link, T in poses.items()}


def adjacent(fk: TreeFK, a: str, b: str) -> bool:
    """One chain joint connects the bodies of ``a`` and ``b``."""
    ba, bb = fk.body[a], fk.body[b]
    lo, hi = min(ba, bb), max(ba, bb)
    return hi >= 0 and fk.chain_parent.get(hi) == lo


def _unit_axis(axis: Sequence[float] | None) -> np.ndarray:
    a = np.asarray(axis if axis is not None else (1.0, 0.0, 0.0), dtype=np.float64)
    return a / np.linalg.norm(a)


def _rotation(axis: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Rotations ``(n, 4, 4)`` about a unit ``axis`` by angles ``theta (n,)`` (Rodrigues)."""
    K = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    s, c = np.sin(theta)[:, None, None], np.cos(theta)[:, None, None]
    out = np.zeros((theta.shape[0], 4, 4))
    out[:, :3, :3] = np.eye(3) + s * K + (1.0 - c) * (K @ K)
    out[:, 3, 3] = 1.0
    return out
