"""The five commercial arms used for evaluation, as kinematic facts.

Geometry: standard DH tables derived from the arms' URDFs (base = URDF root link, frame ``n`` =
the URDF end-effector link, no tool transform). Limits: the URDF joint limits. The Panda's
end effector is the flange (``panda_link8``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ggik_core.errors import GGIKError
from ggik_core.robots.robot import Robot

if TYPE_CHECKING:
    import torch

PI = 3.1415926536
HALF_PI = 1.5707963268

# name -> (long name, rows of (a, alpha, d, theta_offset), lower, upper, URDF base link, URDF EE link)
_ARMS: dict[str, tuple] = {
    "ur10": (
        "Universal Robots UR10",
        [(0.0, HALF_PI, 0.1273, PI), (0.612, 0.0, 0.0, HALF_PI), (0.5723, 0.0, 0.0, 0.0),
         (0.0, HALF_PI, 0.163941, PI), (0.0, HALF_PI, 0.1157, PI), (0.0, 0.0, 0.0922, PI)],
        [-2 * math.pi, -2 * math.pi, -math.pi, -2 * math.pi, -2 * math.pi, -2 * math.pi],
        [2 * math.pi, 2 * math.pi, math.pi, 2 * math.pi, 2 * math.pi, 2 * math.pi],
        "world", "ee_link",
    ),
    "kuka": (
        "KUKA LBR iiwa",
        [(0.0, HALF_PI, 0.36, PI), (0.0, HALF_PI, 0.0, PI), (0.0, HALF_PI, 0.42, 0.0),
         (0.0, HALF_PI, 0.0, PI), (0.0, HALF_PI, 0.4, 0.0), (0.0, HALF_PI, 0.0, PI), (0.0, 0.0, 0.081, 0.0)],
        [-2.9670597284, -2.0943951024, -2.9670597284, -2.0943951024, -2.9670597284, -2.0943951024, -3.054326191],
        [2.9670597284, 2.0943951024, 2.9670597284, 2.0943951024, 2.9670597284, 2.0943951024, 3.054326191],
        "world", "ee_link",
    ),
    "lwa4d": (
        "Schunk LWA 4D",
        [(0.0, HALF_PI, 0.24, 0.0), (0.0, HALF_PI, 0.0, 0.0), (0.0, HALF_PI, -0.328, PI),
         (0.0, HALF_PI, 0.0, PI), (0.0, HALF_PI, -0.323, 0.0), (0.0, HALF_PI, 0.0, 0.0), (0.0, 0.0, 0.0824, 0.0)],
        [-3.1215926536, -2.12, -3.1215926536, -2.16, -3.1215926536, -2.07, -2.94],
        [3.1215926536, 2.12, 3.1215926536, 2.16, 3.1215926536, 2.07, 2.94],
        "world", "lwa4d_ee_link",
    ),
    "lwa4p": (
        "Schunk LWA 4P",
        [(0.0, 1.5708, 0.0, 0.0), (0.35, 3.14159, 0.0, HALF_PI), (0.0, 1.5707926536, 0.0, HALF_PI),
         (1.4e-08, 1.5708, 0.3050000193, 3.1415873464), (0.0, 1.5708, 0.005263, PI), (0.0, 0.0, 0.0824, PI)],
        [-2.947, -2.947, -2.694, -2.947, -2.947, -2.947],
        [2.947, 2.947, 2.694, 2.947, 2.947, 2.947],
        "world", "lwa4p_ee_link",
    ),
    "panda": (
        "Franka Emika Panda (EE: flange, panda_link8)",
        [(0.0, HALF_PI, 0.333, PI), (0.0, HALF_PI, 0.0, PI), (0.0825, HALF_PI, 0.316, 0.0),
         (0.0825, HALF_PI, 0.0, PI), (0.0, HALF_PI, 0.384, PI), (0.088, HALF_PI, 0.0, 0.0), (0.0, 0.0, 0.107, 0.0)],
        [-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973],
        [2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973],
        "world", "panda_link8",
    ),
}

ARM_NAMES: tuple[str, ...] = tuple(_ARMS)


def arm_description(name: str) -> str:
    return _ARMS[name][0]


#: file names of the arms' URDFs in the GGIK reference set (graphIK)
_URDF_FILES = {"ur10": "ur10_mod.urdf", "kuka": "kuka_iiwr.urdf", "lwa4d": "lwa4d.urdf", "lwa4p": "lwa4p.urdf", "panda": "panda_arm.urdf"}


def urdf_file(name: str) -> str:
    """File name of the arm's URDF in the reference set."""
    return _URDF_FILES[name]


def urdf_links(name: str) -> tuple[str, str]:
    """(base link, EE link) of the arm's URDF."""
    return _ARMS[name][4], _ARMS[name][5]


def arm_dh(name: str) -> torch.Tensor:
    """The arm's standard DH table ``(n, 4)``: ``a, alpha, d, theta`` (float64)."""
    if name.lower() not in _ARMS:
        raise GGIKError(f"unknown robot {name!r}: the catalog has {', '.join(ARM_NAMES)}")
    import torch

    return torch.tensor(_ARMS[name.lower()][1], dtype=torch.float64)


def load_arm(name: str) -> Robot:
    """One of :data:`ARM_NAMES` as a :class:`Robot`."""
    key = name.lower()
    if key not in _ARMS:
        raise GGIKError(f"unknown robot {name!r}: the catalog has {', '.join(ARM_NAMES)}")
    _, rows, lower, upper, _, _ = _ARMS[key]
    a, alpha, d, theta = (list(col) for col in zip(*rows))
    return Robot.from_dh(key, a, alpha, d, theta, lower=lower, upper=upper)
