r"""Robots named on the command line: catalog arms, URDF files and DH YAML files.

:func:`load_robot` accepts

* a catalog name (:data:`ggik_core.catalog.ARM_NAMES`, case-insensitive), e.g. ``ur10``;
  a catalog name wins over a file of the same name in the working directory (write
  ``./ur10`` to mean the file);
* a URDF file (``.urdf`` or ``.xml``, see :func:`ggik_core.urdf.load_urdf`); ``base_link`` and
  ``ee_link`` choose the chain inside it;
* a DH YAML file (``.yaml`` or ``.yml``). Files with another extension are read as URDF when
  their first non-blank character is ``<``, as DH YAML otherwise (an error then lists the
  supported extensions).

A xacro file is refused with a message saying how to expand it (``xacro in.urdf.xacro >
out.urdf``): a ``.xacro`` file, or a URDF that fails to load and still holds xacro markup — an
element in the xacro namespace (``<xacro:property>``, ``<xacro:macro>``, a macro call, ...) or a
``${...}``/``$(...)`` substitution in an attribute value — outside comments and outside the parts
the chain never reads (visuals, collisions, inertials, ``<gazebo>``, ...). The ``xmlns:xacro``
declaration alone does not count: xacro leaves it in the files it expands, so a chain mistake in
an expanded URDF (an unknown link, a branching tree, a prismatic or floating joint on the chain)
gets its own message.

DH YAML format (units: metres, radians)::

    name: my_arm            # optional, default: the file name without extension
    convention: standard    # required: 'standard' or 'modified' (Craig)
    joints:                 # required, one mapping per joint, base to tip
      - {a: 0.0, alpha: 1.5707963268, d: 0.1273, theta_offset: 0.0, lower: -3.14, upper: 3.14}
      - {a: 0.612, alpha: 0.0, d: 0.0}
    tool: {xyz: [0, 0, 0.1], rpy: [0, 0, 0]}   # optional: transform from frame n to the EE

Per joint, ``a``, ``alpha`` and ``d`` are required; ``theta_offset`` defaults to 0 and the limits
``lower``/``upper`` to :math:`\mp\pi`. ``convention: standard`` means
:math:`T_{i-1,i} = R_z(q_i + \theta_i) T_z(d_i) T_x(a_i) R_x(\alpha_i)`; ``convention: modified``
means :math:`T_{i-1,i} = T_x(a_{i-1}) R_x(\alpha_{i-1}) T_z(d_i) R_z(q_i + \theta_i)`, where the
``a`` and ``alpha`` written on joint ``i`` are :math:`a_{i-1}, \alpha_{i-1}` (see
:meth:`ggik_core.robot.Robot.from_dh`). ``tool`` has optional ``xyz`` (default ``[0, 0, 0]``) and
``rpy`` (URDF roll-pitch-yaw, :math:`R = R_z(y) R_y(p) R_x(r)`, default ``[0, 0, 0]``). Every
value must be a finite number (``1e-3``, which YAML reads as a string, is accepted); unknown
keys are errors (they are usually typos). Joints are numbered from 1 in error messages.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from ggik_core.robots.catalog import ARM_NAMES, load_arm
from ggik_core.errors import GGIKError, RobotError
from ggik_core.robots.robot import Robot
from ggik_core.robots.urdf import rpy_rotation

URDF_SUFFIXES = (".urdf", ".xml")
YAML_SUFFIXES = (".yaml", ".yml")
SUPPORTED = ".urdf/.xml (URDF), .yaml/.yml (DH table)"
CONVENTIONS = ("standard", "modified")

_TOP_KEYS = ("name", "convention", "joints", "tool")
_JOINT_KEYS = ("a", "alpha", "d", "theta_offset", "lower", "upper")
_TOOL_KEYS = ("xyz", "rpy")


def load_robot(spec: str, base_link: str | None = None, ee_link: str | None = None) -> Robot:
    """A catalog arm, URDF file or DH YAML file as a :class:`Robot` (see the module docstring).

    Raises:
        GGIKError: ``spec`` is neither a catalog name nor an existing file, or link names were
            given for a robot that is not a URDF.
        RobotError: the file cannot be turned into a robot.
    """
    spec = str(spec)
    if spec.lower() in ARM_NAMES:
        _no_links(spec, base_link, ee_link)
        return load_arm(spec)
    path = Path(spec)
    if not path.is_file():
        raise GGIKError(f"unknown robot {spec!r}: not a catalog name ({', '.join(ARM_NAMES)}) nor a file")
    if path.suffix.lower() == ".xacro":
        raise RobotError(_xacro_message(path))
    if is_urdf(path):
        from ggik_core.robots.urdf import load_urdf

        try:
            return load_urdf(path, base_link=base_link, ee_link=ee_link)
        except RobotError:
            if _unexpanded_xacro(path):  # e.g. '${L}' where a number belongs, or macro calls for joints
                raise RobotError(_xacro_message(path)) from None
            raise
    _no_links(spec, base_link, ee_link)
    if path.suffix.lower() in YAML_SUFFIXES:
        return load_dh_yaml(path)
    try:
        return load_dh_yaml(path)
    except RobotError as exc:
        raise RobotError(f"{exc} (read as a DH table because {path.suffix or 'no extension'} is not a known robot file "
                         f"extension; supported: {SUPPORTED})") from None


def load_dh_yaml(path: str | Path) -> Robot:
    """A robot from a DH YAML file (format in the module docstring)."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RobotError(f"cannot read DH file {path}: {_one_line(getattr(exc, 'strerror', None) or exc)}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RobotError(f"cannot parse DH file {path}: {_one_line(exc)}") from None
    if not isinstance(doc, dict):
        raise RobotError(f"DH file {path}: expected a mapping with keys {', '.join(_TOP_KEYS)}, got {type(doc).__name__}")
    _check_keys(doc, _TOP_KEYS, f"DH file {path}")

    name = doc.get("name", path.stem)
    if not isinstance(name, str) or not name:
        raise RobotError(f"DH file {path}: 'name' must be a non-empty string")

    if "convention" not in doc:
        raise RobotError(f"DH file {path}: missing key 'convention' ({' or '.join(CONVENTIONS)})")
    convention = doc["convention"]
    if not isinstance(convention, str) or convention.lower() not in CONVENTIONS:
        raise RobotError(f"DH file {path}: unknown convention {convention!r}, expected {' or '.join(CONVENTIONS)}")

    if "joints" not in doc:
        raise RobotError(f"DH file {path}: missing key 'joints' (a list with one mapping per joint)")
    rows = doc["joints"]
    if not isinstance(rows, list) or not rows:
        raise RobotError(f"DH file {path}: 'joints' must be a non-empty list of mappings")

    cols: dict[str, list[float]] = {key: [] for key in _JOINT_KEYS}
    defaults = {"theta_offset": 0.0, "lower": -math.pi, "upper": math.pi}
    for i, row in enumerate(rows, start=1):
        where = f"DH file {path}, joint {i}"
        if not isinstance(row, dict):
            raise RobotError(f"{where}: expected a mapping with keys a, alpha, d, got {type(row).__name__}")
        _check_keys(row, _JOINT_KEYS, where)
        for key in _JOINT_KEYS:
            if key in row:
                cols[key].append(_number(row[key], f"{where}, {key!r}"))
            elif key in defaults:
                cols[key].append(defaults[key])
            else:
                raise RobotError(f"{where}: missing key {key!r}")
        if cols["lower"][-1] > cols["upper"][-1]:
            raise RobotError(f"{where}: lower limit {cols['lower'][-1]} above upper limit {cols['upper'][-1]}")

    tool = _tool(doc.get("tool"), path) if "tool" in doc else None
    return Robot.from_dh(
        name,
        cols["a"],
        cols["alpha"],
        cols["d"],
        cols["theta_offset"],
        lower=np.asarray(cols["lower"], dtype=np.float64),
        upper=np.asarray(cols["upper"], dtype=np.float64),
        modified=convention.lower() == "modified",
        tool=tool,
    )


def _tool(spec: object, path: Path) -> np.ndarray:
    where = f"DH file {path}, tool"
    if not isinstance(spec, dict):
        raise RobotError(f"{where}: expected a mapping with keys xyz, rpy")
    _check_keys(spec, _TOOL_KEYS, where)
    vecs = {}
    for key in _TOOL_KEYS:
        value = spec.get(key, [0.0, 0.0, 0.0])
        if not isinstance(value, (list, tuple)) or len(value) != 3:
            raise RobotError(f"{where}: {key!r} must be a list of 3 numbers")
        vecs[key] = np.array([_number(v, f"{where}, {key!r}") for v in value], dtype=np.float64)
    T = np.eye(4)
    T[:3, :3] = rpy_rotation(vecs["rpy"])
    T[:3, 3] = vecs["xyz"]
    return T


def _number(value: object, where: str) -> float:
    # PyYAML reads exponent numbers without a dot (1e-3) as strings: accept numeric strings.
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise RobotError(f"{where}: {value!r} is not a number")
    try:
        out = float(value)
    except ValueError:
        raise RobotError(f"{where}: {value!r} is not a number") from None
    if not math.isfinite(out):
        raise RobotError(f"{where}: value is NaN or infinite")
    return out


def _check_keys(mapping: dict, allowed: tuple[str, ...], where: str) -> None:
    unknown = [str(k) for k in mapping if k not in allowed]
    if unknown:
        raise RobotError(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(allowed)})")


def is_urdf(path: Path) -> bool:
    """Whether ``path`` holds a URDF (by its extension, else by its first element)."""
    suffix = path.suffix.lower()
    if suffix in URDF_SUFFIXES:
        return True
    if suffix in YAML_SUFFIXES:
        return False
    try:
        with path.open("rb") as fh:
            head = fh.read(512).lstrip()
    except OSError:
        return False
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:].lstrip()
    return head.startswith(b"<")


#: xacro substitutions: ``${expression}`` and ``$(command args)``
_SUBSTITUTION = re.compile(r"\$\{[^}]*\}|\$\([^)]*\)")
#: URDF elements whose contents the chain never reads: xacro markup left inside them (a geometry
#: macro in a <visual>, a ``${...}`` in a plugin) cannot be what made the chain fail
_UNREAD = frozenset({"visual", "collision", "inertial", "material", "gazebo", "transmission", "sensor", "dynamics",
                     "calibration", "safety_controller"})


def _unexpanded_xacro(path: Path) -> bool:
    """Whether ``path`` still holds xacro markup that ``xacro`` would expand: an element in the
    xacro namespace (whatever URI the file binds the prefix to, or an undeclared ``xacro:``
    prefix) or a substitution in an attribute value. Comments are ignored, and so is the
    ``xmlns:xacro`` declaration, which xacro keeps in the files it writes, and so is markup inside
    elements the chain does not read (:data:`_UNREAD`). The XML is read with libxml2's recovery,
    so a file that is not well-formed (an undeclared prefix) is judged too."""
    from lxml import etree

    try:
        data = path.read_bytes()
    except OSError:
        return False
    parser = etree.XMLParser(recover=True, remove_comments=True, remove_pis=True, resolve_entities=False,
                             no_network=True, huge_tree=True)
    try:
        root = etree.fromstring(data, parser)
    except (etree.XMLSyntaxError, ValueError):
        return False
    if root is None:
        return False
    stack = [root]
    while stack:
        el = stack.pop()
        stack.extend(child for child in el if isinstance(child.tag, str) and child.tag not in _UNREAD)
        # '{uri}name' in a namespace; 'xacro:name' as written when the prefix is undeclared
        namespace = el.tag[1:el.tag.find("}")] if el.tag.startswith("{") else ""
        if el.prefix == "xacro" or namespace.rstrip("/").endswith("xacro") or el.tag.startswith("xacro:"):
            return True
        if any(_SUBSTITUTION.search(value) for value in el.attrib.values()):
            return True
    return False


def _xacro_message(path: Path) -> str:
    out = path.name[: -len(".xacro")] if path.name.lower().endswith(".xacro") else path.stem
    out = out if out.lower().endswith(".urdf") else f"{out}.urdf"
    if out == path.name:
        out = f"{path.stem}_expanded.urdf"
    return (f"{path} is a xacro file: expand it to a URDF first with `xacro {path.name} > {out}` "
            f"(pip install xacro, or ROS's xacro package), then pass {out}")


def _no_links(spec: str, base_link: str | None, ee_link: str | None) -> None:
    if base_link is not None or ee_link is not None:
        raise GGIKError(f"robot {spec!r}: --base-link/--ee-link apply only to URDF files")


def _one_line(text: object) -> str:
    return " ".join(str(text).split())
