"""Reach geometry: a sound bound on how far the end effector can be from the first joint's axis."""

from __future__ import annotations

import numpy as np

from ggik_core.robots.robot import Robot

#: Slack (metres) added to the reach bound, so that goals on the boundary are never flagged.
REACH_SLACK = 1e-6


def home_frames(chain: np.ndarray) -> np.ndarray:
    """Axis frames of every joint and the end-effector frame at ``q = 0``, ``(n + 1, 4, 4)``."""
    frames = [chain[0]]
    for L in chain[1:]:
        frames.append(frames[-1] @ L)
    return np.stack(frames)


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
