r"""Serial revolute chains from URDF files.

:func:`load_urdf` reads a URDF's ``<link>`` and ``<joint>`` elements with lxml (meshes, inertials
and everything else are ignored; a mesh library would cost half a second of ``ggik solve``'s
start-up), walks the kinematic tree from a base link to an end-effector link and turns the joints
on that path into a :class:`~ggik_core.robot.Robot`:

* ``fixed`` joints are folded into the constant link transforms;
* ``revolute`` joints become chain joints with the limits of their ``<limit>`` element;
* ``continuous`` joints become chain joints without limits (``Robot.continuous``): they wrap and
  are never clamped; :math:`[-\pi, \pi]` is kept as their nominal range for drawing
  configurations (any ``<limit>`` element on them is ignored);
* ``prismatic``, ``floating`` and ``planar`` joints (and mimic joints) on the path are rejected
  with a :class:`~ggik_core.errors.RobotError`. Joints off the path (e.g. gripper fingers) are
  ignored, whatever their type.

URDF conventions: a joint's ``<origin>`` is the transform ``O`` from the parent link frame to the
joint frame, with :math:`R = R_z(\mathrm{yaw}) R_y(\mathrm{pitch}) R_x(\mathrm{roll})`; the joint
then rotates about its ``<axis>`` ``a`` (expressed in the joint/child frame, normalised here;
missing means ``1 0 0`` as in the URDF specification), so the child link frame is
:math:`O \cdot \mathrm{Rot}(a, q)`.

The chain model (see :mod:`ggik_core.robots.kinematics`) rotates about z. For every joint a constant
rotation ``C`` with :math:`C e_z = a` is chosen (the identity when ``a = e_z``), so that
:math:`\mathrm{Rot}(a, q) = C R_z(q) C^{-1}`: the link transform before the joint ends with
:math:`O\,C` and the one after it starts with :math:`C^{-1}`. The axis frame :math:`A_i` of the
chain therefore has its z-axis along the joint axis and its origin on it, as required.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ggik_core.errors import RobotError
from ggik_core.robots.robot import Robot

#: Joint types that become chain joints.
REVOLUTE_TYPES = ("revolute", "continuous")
#: Joint types that the loader understands but cannot put into a revolute chain.
UNSUPPORTED_TYPES = ("prismatic", "floating", "planar")


def load_urdf(
    path: str | Path,
    base_link: str | None = None,
    ee_link: str | None = None,
    name: str | None = None,
) -> Robot:
    """Build a :class:`Robot` from the chain ``base_link -> ee_link`` of a URDF file.

    Args:
        path: the URDF file.
        base_link: the link whose frame is the robot base; default: the tree's root link.
        ee_link: the end-effector link; default: the single leaf link below ``base_link``.
        name: the robot's label; default: the URDF ``<robot name>`` (or the file stem).

    Raises:
        RobotError: the file cannot be read or parsed, a link is missing, the end effector is
            not downstream of the base, the leaf is ambiguous, or a joint on the path cannot be
            modelled (type, NaN values, zero axis, bad limits).
    """
    path = Path(path)
    model = read_model(path)
    tree = URDFTree(model, path)
    base = tree.pick_base(base_link)
    ee = tree.pick_ee(base, ee_link)
    joints = tree.path(base, ee)

    links: list[np.ndarray] = []
    lower: list[float] = []
    upper: list[float] = []
    joint_names: list[str] = []
    continuous: list[bool] = []
    T = np.eye(4)
    for joint in joints:
        jtype = joint.type
        if jtype in UNSUPPORTED_TYPES:
            raise RobotError(f"{path}: joint {joint.name!r} is {jtype} (on the chain from {base!r} to {ee!r}); only revolute, "
                             f"continuous and fixed joints are supported: choose --base-link/--ee-link so that the chain avoids it")
        if jtype != "fixed" and jtype not in REVOLUTE_TYPES:
            raise RobotError(f"{path}: joint {joint.name!r} has unknown type {jtype!r}")
        O = _origin(joint, path)
        if jtype == "fixed":
            T = T @ O
            continue
        if getattr(joint, "mimic", None) is not None:
            raise RobotError(f"{path}: joint {joint.name!r} mimics joint {joint.mimic!r}; coupled joints are not supported")
        C = _axis_rotation(_axis(joint, path))
        links.append(T @ O @ C)
        T = C.T.copy()
        lo, hi = _limits(joint, path)
        lower.append(lo)
        upper.append(hi)
        joint_names.append(joint.name)
        continuous.append(jtype == "continuous")
    if not joint_names:
        raise RobotError(f"{path}: no revolute joint between base link {base!r} and end-effector link {ee!r}")
    links.append(T)

    label = name or model.name or path.stem
    return Robot(
        name=label,
        chain=np.stack(links),
        lower=lower,
        upper=upper,
        joint_names=joint_names,
        continuous=continuous,
    )


@dataclass
class URDFJoint:
    """The parts of a URDF ``<joint>`` the chain needs (``None``: element or attribute absent)."""

    name: str
    type: str | None
    parent: str | None
    child: str | None
    origin: np.ndarray  # (4, 4), from <origin xyz rpy>
    axis: list[float] | None  # <axis xyz>, as written
    limit: tuple[float | None, float | None]  # <limit lower upper>
    mimic: str | None  # <mimic joint>


@dataclass
class URDFModel:
    name: str | None
    links: list[str]
    joints: list[URDFJoint]


def rpy_rotation(rpy: np.ndarray) -> np.ndarray:
    """URDF fixed-axis roll-pitch-yaw ``(3,)`` as :math:`R = R_z(y) R_y(p) R_x(r)` ``(3, 3)``."""
    (cr, cp, cy), (sr, sp, sy) = np.cos(rpy), np.sin(rpy)
    return np.array([[cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
                     [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
                     [-sp, cp * sr, cp * cr]])


def read_model(path: Path) -> URDFModel:
    """The links and joints of ``path``; every failure becomes a RobotError."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RobotError(f"cannot parse URDF {path}: {_one_line(exc.strerror or exc)}") from None
    from lxml import etree

    try:
        root = etree.fromstring(data)
    except etree.XMLSyntaxError as exc:
        raise RobotError(f"cannot parse URDF {path}: {_one_line(exc)}") from None
    if not isinstance(root.tag, str) or root.tag != "robot":
        raise RobotError(f"cannot parse URDF {path}: the root element is <{root.tag}>, expected <robot>")
    links = [el.get("name") for el in root.findall("link")]
    if any(name is None for name in links):
        raise RobotError(f"cannot parse URDF {path}: a <link> has no name")
    return URDFModel(root.get("name"), links, [_joint(el, path) for el in root.findall("joint")])


def _joint(el, path: Path) -> URDFJoint:
    name = el.get("name")
    if name is None:
        raise RobotError(f"cannot parse URDF {path}: a <joint> has no name")

    def numbers(tag: str, attr: str, default: str | None) -> list[float] | None:
        sub = el.find(tag)
        text = default if sub is None else sub.get(attr, default)
        if text is None:
            return None
        try:
            return [float(v) for v in text.split()]
        except ValueError:
            raise RobotError(f"cannot parse URDF {path}: joint {name!r} has <{tag} {attr}={text!r}>, expected numbers") from None

    xyz, rpy = numbers("origin", "xyz", "0 0 0"), numbers("origin", "rpy", "0 0 0")
    if len(xyz) != 3 or len(rpy) != 3:
        raise RobotError(f"cannot parse URDF {path}: joint {name!r} has an <origin> whose xyz or rpy is not 3 numbers")
    origin = np.eye(4)
    with np.errstate(invalid="ignore"):  # NaN origins are reported per joint on the chain
        origin[:3, :3] = rpy_rotation(np.array(rpy))
    origin[:3, 3] = xyz
    lo, hi = numbers("limit", "lower", None), numbers("limit", "upper", None)
    parent, child, mimic = el.find("parent"), el.find("child"), el.find("mimic")
    return URDFJoint(name=name, type=el.get("type"), parent=None if parent is None else parent.get("link"),
                  child=None if child is None else child.get("link"), origin=origin,
                  axis=numbers("axis", "xyz", None), limit=(lo[0] if lo else None, hi[0] if hi else None),
                  mimic=None if mimic is None else mimic.get("joint", ""))


class URDFTree:
    """Parent/child relations of a URDF's links."""

    def __init__(self, model, path: Path) -> None:
        self.path_name = path
        self.parent_joint: dict[str, object] = {}
        self.child_joints: dict[str, list] = {}
        names: list[str] = list(model.links)
        for joint in model.joints:
            if joint.parent is None or joint.child is None:
                raise RobotError(f"cannot parse URDF {path}: joint {joint.name!r} lacks a <parent> or <child> link")
            if joint.child in self.parent_joint:
                other = self.parent_joint[joint.child].name
                raise RobotError(f"{path}: link {joint.child!r} is the child of joints {other!r} and {joint.name!r}; a URDF must be a tree")
            self.parent_joint[joint.child] = joint
            self.child_joints.setdefault(joint.parent, []).append(joint)
            for link in (joint.parent, joint.child):
                if link not in names:
                    names.append(link)
        self.links = names

    def pick_base(self, base_link: str | None) -> str:
        if base_link is not None:
            if base_link not in self.links:
                raise RobotError(f"{self.path_name}: base link {base_link!r} not found{self._guess(base_link)} "
                                 f"(links: {', '.join(self.links)})")
            return base_link
        if not self.links:
            raise RobotError(f"{self.path_name}: the URDF has no <link> or <joint> elements")
        roots = [link for link in self.links if link not in self.parent_joint]
        if len(roots) == 1:
            return roots[0]
        if not roots:
            raise RobotError(f"{self.path_name}: no root link (the joints form a cycle)")
        raise RobotError(f"{self.path_name}: several root links ({', '.join(roots)}); pass --base-link to choose one")

    def _guess(self, name: str) -> str:
        """'; did you mean ...?' with the link names closest to a mistyped one ('' when none is close)."""
        import difflib

        close = difflib.get_close_matches(name, self.links, n=3, cutoff=0.6)
        return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""

    def pick_ee(self, base: str, ee_link: str | None) -> str:
        if ee_link is not None:
            if ee_link not in self.links:
                raise RobotError(f"{self.path_name}: end-effector link {ee_link!r} not found{self._guess(ee_link)} "
                                 f"(links: {', '.join(self.links)})")
            return ee_link
        leaves, stack, seen = [], [base], {base}
        while stack:
            link = stack.pop()
            kids = [j.child for j in self.child_joints.get(link, [])]
            if not kids and link != base:
                leaves.append(link)
            for kid in reversed(kids):
                if kid not in seen:
                    seen.add(kid)
                    stack.append(kid)
        if len(leaves) == 1:
            return leaves[0]
        if not leaves:
            raise RobotError(f"{self.path_name}: base link {base!r} has no links below it")
        raise RobotError(f"{self.path_name}: several leaf links below {base!r} ({', '.join(leaves)}); pass --ee-link to choose the end effector")

    def path(self, base: str, ee: str) -> list:
        """Joints from ``base`` to ``ee`` in chain order."""
        joints, link, seen = [], ee, {ee}
        while link != base:
            joint = self.parent_joint.get(link)
            if joint is None:
                raise RobotError(f"{self.path_name}: end-effector link {ee!r} is not downstream of base link {base!r}")
            joints.append(joint)
            link = joint.parent
            if link in seen:
                raise RobotError(f"{self.path_name}: the joints above link {ee!r} form a cycle")
            seen.add(link)
        return joints[::-1]


def _origin(joint, path: Path) -> np.ndarray:
    O = joint.origin
    if not np.isfinite(O).all():
        raise RobotError(f"{path}: joint {joint.name!r} has a NaN or infinite <origin>")
    return O


def _axis(joint, path: Path) -> np.ndarray:
    a = np.asarray(joint.axis if joint.axis is not None else (1.0, 0.0, 0.0), dtype=np.float64).reshape(-1)
    if a.shape != (3,):
        raise RobotError(f"{path}: joint {joint.name!r} has an <axis> with {a.size} components, expected 3")
    if not np.isfinite(a).all():
        raise RobotError(f"{path}: joint {joint.name!r} has a NaN or infinite <axis>")
    norm = float(np.linalg.norm(a))
    if norm < 1e-12:
        raise RobotError(f"{path}: joint {joint.name!r} has a zero <axis>")
    return a / norm


def _limits(joint, path: Path) -> tuple[float, float]:
    if joint.type == "continuous":
        return -math.pi, math.pi
    limit = joint.limit
    if limit[0] is None or limit[1] is None:
        raise RobotError(f"{path}: revolute joint {joint.name!r} needs <limit lower=... upper=...> (use type 'continuous' for an unlimited joint)")
    lo, hi = float(limit[0]), float(limit[1])
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise RobotError(f"{path}: joint {joint.name!r} has a NaN or infinite limit")
    if lo > hi:
        raise RobotError(f"{path}: joint {joint.name!r} has lower limit {lo} above upper limit {hi}")
    return lo, hi


def _axis_rotation(a: np.ndarray) -> np.ndarray:
    """A rotation ``C`` (4x4) with ``C e_z = a`` for a unit vector ``a``; identity for ``a = e_z``."""
    if a[2] >= 0:
        R = _rotation_from_z(a)
    else:
        # Rotate onto -a (well conditioned) and flip: C = R(-a) Rx(pi), Rx(pi) e_z = -e_z.
        R = _rotation_from_z(-a) @ np.diag([1.0, -1.0, -1.0])
    C = np.eye(4)
    C[:3, :3] = R
    return C


def _rotation_from_z(b: np.ndarray) -> np.ndarray:
    """The smallest rotation taking ``e_z`` to the unit vector ``b`` (requires ``b_z >= 0``)."""
    v = np.array([-b[1], b[0], 0.0])  # e_z x b
    K = np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
    return np.eye(3) + K + K @ K / (1.0 + b[2])


def _one_line(text: object) -> str:
    return " ".join(str(text).split())
