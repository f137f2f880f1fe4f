"""Goal poses: ``x y z qw qx qy qz`` rows and homogeneous matrices, parsed and checked."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ggik_core.errors import GGIKError

#: Largest accepted deviation of a goal quaternion's norm from 1 (it is then normalised).
QUAT_TOL = 1e-3
#: Largest accepted deviation of a goal rotation matrix from orthonormality.
ROT_TOL = 1e-6


def as_poses(poses: Any) -> np.ndarray:
    """Goal poses ``(G, 4, 4)`` float64 from matrices or ``x y z qw qx qy qz`` rows (checked); a
    tensor is accepted too."""
    arr = np.asarray(poses.detach().cpu().numpy() if hasattr(poses, "detach") else poses, dtype=np.float64)
    if arr.shape in ((7,), (4, 4)):
        arr = arr[None]
    if arr.ndim == 2 and arr.shape[1] == 7:
        return poses_from_rows(arr)
    if arr.ndim == 3 and arr.shape[1:] == (4, 4):
        return _checked_matrices(arr)
    raise GGIKError(f"poses must be (4, 4), (G, 4, 4), (7,) or (G, 7) [x y z qw qx qy qz], got shape {arr.shape}")


def poses_from_rows(rows: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """``(G, 4, 4)`` from ``(G, 7)`` rows ``x y z qw qx qy qz``; the quaternions are normalised."""
    g = np.array(rows, dtype=np.float64).reshape(-1, 7)
    bad = np.nonzero(~np.isfinite(g).all(-1))[0]
    if bad.size:
        raise GGIKError(f"goal {int(bad[0])}: contains NaN or infinity")
    norm = np.linalg.norm(g[:, 3:], axis=-1)
    off = np.nonzero(np.abs(norm - 1.0) > QUAT_TOL)[0]
    if off.size:
        i = int(off[0])
        raise GGIKError(f"goal {i}: quaternion (qw qx qy qz) has norm {float(norm[i]):.4g}, expected a unit quaternion")
    w, x, y, z = (g[:, 3:] / norm[:, None]).T
    T = np.zeros((len(g), 4, 4))
    T[:, :3, :3] = np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)
    T[:, :3, 3] = g[:, :3]
    T[:, 3, 3] = 1.0
    return T


def pose_to_xyz_quat(T: np.ndarray) -> np.ndarray:
    """``(G, 7)`` rows ``x y z qw qx qy qz`` (``qw >= 0``) of poses ``(G, 4, 4)``.

    Each of the four rows below is the quaternion times four times one of its components; the
    row of the largest component is the well-conditioned one (Shepperd's method).
    """
    R = T[:, :3, :3]
    r = lambda i, j: R[:, i, j]  # noqa: E731
    cands = np.stack([
        np.stack([1 + r(0, 0) + r(1, 1) + r(2, 2), r(2, 1) - r(1, 2), r(0, 2) - r(2, 0), r(1, 0) - r(0, 1)], -1),
        np.stack([r(2, 1) - r(1, 2), 1 + r(0, 0) - r(1, 1) - r(2, 2), r(0, 1) + r(1, 0), r(0, 2) + r(2, 0)], -1),
        np.stack([r(0, 2) - r(2, 0), r(0, 1) + r(1, 0), 1 - r(0, 0) + r(1, 1) - r(2, 2), r(1, 2) + r(2, 1)], -1),
        np.stack([r(1, 0) - r(0, 1), r(0, 2) + r(2, 0), r(1, 2) + r(2, 1), 1 - r(0, 0) - r(1, 1) + r(2, 2)], -1),
    ], 1)  # (G, 4 candidates, wxyz)
    pick = np.argmax(np.diagonal(cands, axis1=1, axis2=2), axis=1)
    quat = cands[np.arange(len(T)), pick]
    quat = quat / np.linalg.norm(quat, axis=1, keepdims=True)
    quat = np.where(quat[:, :1] < 0, -quat, quat)
    return np.concatenate([T[:, :3, 3], quat], 1)


def _checked_matrices(arr: np.ndarray) -> np.ndarray:
    if not np.isfinite(arr).all():
        raise GGIKError(f"goal {int(np.nonzero(~np.isfinite(arr).reshape(len(arr), -1).all(1))[0][0])}: contains NaN or infinity")
    R = arr[:, :3, :3]
    ortho = np.abs(np.swapaxes(R, 1, 2) @ R - np.eye(3)).max((1, 2))
    det = np.linalg.det(R)
    bottom = np.abs(arr[:, 3] - np.array([0.0, 0.0, 0.0, 1.0])).max(1)
    bad = np.nonzero((ortho > ROT_TOL) | (det < 0) | (bottom > 0))[0]
    if bad.size:
        raise GGIKError(f"goal {int(bad[0])}: not a rigid transform (the rotation must be orthonormal with determinant 1, the last row 0 0 0 1)")
    return arr.copy()
