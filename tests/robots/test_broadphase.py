"""The broad phase: world boxes contain the placed geometry, and the overlap tests are those of boxes."""

from __future__ import annotations

import numpy as np
import pytest

coal = pytest.importorskip("coal")

from scipy.spatial.transform import Rotation  # noqa: E402

from ggik_core.robots.broadphase import boxes_meet, boxes_meet_fixed, fixed_boxes, local_boxes, world_boxes  # noqa: E402


def test_world_boxes_hold_every_corner_of_a_placed_box_and_are_tight_without_rotation():
    rng = np.random.default_rng(0)
    size = np.array([0.2, 0.5, 0.1])
    obj = coal.CollisionObject(coal.Box(*size), coal.Transform3s())
    centre, half = local_boxes([obj])
    corners = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) * size / 2
    poses = np.tile(np.eye(4), (200, 1, 1))
    poses[:, :3, :3] = Rotation.random(200, random_state=1).as_matrix()
    poses[:, :3, 3] = rng.normal(size=(200, 3))
    poses = poses[:, None]  # (n, 1 part, 4, 4)
    c, e = world_boxes(poses, centre, half)
    placed = np.einsum("nij,kj->nki", poses[:, 0, :3, :3], corners) + poses[:, 0, None, :3, 3]
    assert (np.abs(placed - c[:, :1]) <= e[:, :1] + 1e-12).all()
    # at the identity the box is the box itself, and some corner touches each face of a rotated one
    c0, e0 = world_boxes(np.eye(4)[None, None], centre, half)
    np.testing.assert_allclose(e0[0, 0], size / 2, atol=1e-8)
    np.testing.assert_allclose(np.abs(placed - c[:, :1]).max(1), e[:, 0], atol=1e-8)


def test_box_overlap_is_decided_axis_by_axis():
    c = np.array([[[0.0, 0, 0], [1.0, 0, 0], [0.0, 0.5, 0]]])
    e = np.full((1, 3, 3), 0.3)
    a, b = np.array([0, 0]), np.array([1, 2])
    np.testing.assert_array_equal(boxes_meet(c, e, a, b), [[False, True]])  # 1.0 > 0.6 apart; 0.5 <= 0.6
    # a half-space z <= 0: its box is unbounded but for its top
    plane = coal.CollisionObject(coal.Halfspace(np.array([0.0, 0, 1]), 0.0), coal.Transform3s())
    lo, hi = fixed_boxes([plane])
    above = np.array([[[0.0, 0, 0.31], [0.0, 0, 0.29]]])
    np.testing.assert_array_equal(boxes_meet_fixed(above, np.full((1, 2, 3), 0.3), np.array([0, 1]), lo[[0, 0]], hi[[0, 0]]),
                                  [[False, True]])
