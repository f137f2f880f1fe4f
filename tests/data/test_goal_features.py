"""The goal as the graph sees it (spec §4): node features and the end-effector anchors.

Every node carries the goal pose as ``(t, R[:, 0], R[:, 1])``: the translation and the goal
frame's x and y axes, i.e. the first two columns of its rotation matrix. The EE anchors are
``p_n = t`` and ``q_n = t + R[:, 2]`` (the goal's z axis). The expectation is computed here from
a pose given as a translation and a quaternion, with scipy turning the unit vectors into the
goal frame's axes — no rotation matrix is indexed.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from ggik_core.data.graph import (NODE_FEATURES, anchor_positions, goal_features, node_features, num_nodes,
                                  partial_distances)

B, DOF = 6, 5


def goals_here() -> tuple[np.ndarray, Rotation, np.ndarray]:
    """``B`` goals as 4x4 matrices, and their rotations and translations as given."""
    rng = np.random.default_rng(0)
    rot = Rotation.from_quat(rng.normal(size=(B, 4)))  # normalised by scipy; no symmetric case
    t = rng.uniform(-1.0, 1.0, size=(B, 3))
    T = np.tile(np.eye(4), (B, 1, 1))
    T[:, :3, :3] = rot.as_matrix()
    T[:, :3, 3] = t
    return T, rot, t


def axis(rot: Rotation, k: int) -> np.ndarray:
    """The goal frame's k-th axis in the base frame: the rotation applied to the unit vector."""
    return rot.apply(np.eye(3)[k])


def test_goal_encoding_is_the_translation_then_the_x_and_y_axes():
    T, rot, t = goals_here()
    expected = np.concatenate([t, axis(rot, 0), axis(rot, 1)], -1)
    got = goal_features(torch.from_numpy(T)).numpy()
    assert got.shape == (B, 9)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_every_node_carries_the_goal_after_its_static_features():
    T, rot, t = goals_here()
    expected = np.concatenate([t, axis(rot, 0), axis(rot, 1)], -1)
    h = node_features(torch.from_numpy(T), DOF).numpy()
    N = num_nodes(DOF)
    assert h.shape == (B, N, NODE_FEATURES)
    np.testing.assert_allclose(h[..., -9:], np.broadcast_to(expected[:, None], (B, N, 9)), rtol=0, atol=1e-12)
    # the static part does not depend on the goal
    other = node_features(torch.from_numpy(T[::-1].copy()), DOF).numpy()
    np.testing.assert_array_equal(h[..., :-9], other[..., :-9])


def test_the_goal_features_determine_the_goal_and_no_other_column_would():
    """x and y fix the rotation (z = x cross y): the pose rebuilt from the features is the goal,
    while a column other than x or y in their place breaks that for a generic goal."""
    T, rot, _ = goals_here()
    f = goal_features(torch.from_numpy(T)).numpy()
    x, y = f[:, 3:6], f[:, 6:9]
    np.testing.assert_allclose(np.cross(x, y), axis(rot, 2), rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.einsum("bi,bi->b", x, y), 0.0, atol=1e-12)
    assert np.abs(x - axis(rot, 2)).max() > 0.1 and np.abs(y - axis(rot, 2)).max() > 0.1
    rows = np.stack([T[:, 0, :3], T[:, 1, :3]], 1)  # a transposed read: R[0, :], R[1, :]
    assert np.abs(rows[:, 0] - x).max() > 0.1


def test_end_effector_anchors_are_the_goal_origin_and_its_z_axis():
    T, rot, t = goals_here()
    N = num_nodes(DOF)
    x = anchor_positions(torch.from_numpy(T), DOF).numpy()
    assert x.shape == (B, N, 3)
    np.testing.assert_allclose(x[:, N - 2], t, rtol=0, atol=1e-12)
    np.testing.assert_allclose(x[:, N - 1], t + axis(rot, 2), rtol=0, atol=1e-12)
    # the base anchors: origin, z, x and y of the canonical frame; nothing else is known
    np.testing.assert_array_equal(x[:, :4], np.broadcast_to([[0, 0, 0], [0, 0, 1], [1, 0, 0], [0, 1, 0]], (B, 4, 3)))
    np.testing.assert_array_equal(x[:, 4:N - 2], 0.0)


def test_anchor_distances_follow_the_goal():
    """Partial-graph distances among anchors: computed here from the goal's origin and z axis."""
    T, rot, t = goals_here()
    N = num_nodes(DOF)
    home = torch.zeros(B, N, 3, dtype=torch.float64)
    known = torch.ones(B, N, N, dtype=torch.bool)
    d = partial_distances(home, known, torch.from_numpy(T)).numpy()
    tip = t + axis(rot, 2)
    base = np.array([[0, 0, 0], [0, 0, 1], [1, 0, 0], [0, 1, 0]], dtype=np.float64)
    for k, b in enumerate(base):
        np.testing.assert_allclose(d[:, k, N - 2], np.linalg.norm(t - b, axis=-1), rtol=0, atol=1e-12)
        np.testing.assert_allclose(d[:, k, N - 1], np.linalg.norm(tip - b, axis=-1), rtol=0, atol=1e-12)
    np.testing.assert_allclose(d[:, N - 2, N - 1], 1.0, rtol=0, atol=1e-12)
