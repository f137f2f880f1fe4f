"""Batched rigid transforms in torch: elementary motions, DH links, rotations, pose errors.

All functions broadcast over leading dimensions and keep the input's dtype and device.
Homogeneous transforms are ``(..., 4, 4)`` tensors.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def broadcast_shape(*shapes: tuple[int, ...]) -> torch.Size:
    """The broadcast of ``shapes`` (NumPy rules). ``torch.broadcast_shapes`` gives the same, but its
    first call imports sympy through ``torch._refs`` (about 0.4 s of ``ggik solve``'s start-up)."""
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(ndim):
        dims = {s[i - ndim + len(s)] for s in shapes if i - ndim + len(s) >= 0} - {1}
        if len(dims) > 1:
            raise RuntimeError(f"shapes {', '.join(str(tuple(s)) for s in shapes)} do not broadcast")
        out.append(dims.pop() if dims else 1)
    return torch.Size(out)


def _eye(shape: tuple[int, ...], like: Tensor) -> Tensor:
    return torch.eye(4, dtype=like.dtype, device=like.device).expand(*shape, 4, 4).clone()


def rot_z(theta: Tensor) -> Tensor:
    """Rotation about z by ``theta``: ``(...,)`` -> ``(..., 4, 4)``."""
    T = _eye(tuple(theta.shape), theta)
    c, s = torch.cos(theta), torch.sin(theta)
    T[..., 0, 0], T[..., 0, 1], T[..., 1, 0], T[..., 1, 1] = c, -s, s, c
    return T


def rot_x(alpha: Tensor) -> Tensor:
    """Rotation about x by ``alpha``: ``(...,)`` -> ``(..., 4, 4)``."""
    T = _eye(tuple(alpha.shape), alpha)
    c, s = torch.cos(alpha), torch.sin(alpha)
    T[..., 1, 1], T[..., 1, 2], T[..., 2, 1], T[..., 2, 2] = c, -s, s, c
    return T


def trans_z(d: Tensor) -> Tensor:
    """Translation along z: ``(...,)`` -> ``(..., 4, 4)``."""
    T = _eye(tuple(d.shape), d)
    T[..., 2, 3] = d
    return T


def dh_standard(a: Tensor, alpha: Tensor, d: Tensor, theta: Tensor) -> Tensor:
    r"""Standard DH link :math:`R_z(\theta) T_z(d) T_x(a) R_x(\alpha)` in closed form."""
    ct, st = torch.cos(theta), torch.sin(theta)
    ca, sa = torch.cos(alpha), torch.sin(alpha)
    T = _eye(tuple(a.shape), a)
    T[..., 0, 0], T[..., 0, 1], T[..., 0, 2], T[..., 0, 3] = ct, -st * ca, st * sa, a * ct
    T[..., 1, 0], T[..., 1, 1], T[..., 1, 2], T[..., 1, 3] = st, ct * ca, -ct * sa, a * st
    T[..., 2, 1], T[..., 2, 2], T[..., 2, 3] = sa, ca, d
    T[..., 2, 0] = 0.0
    return T


def dh_modified(a: Tensor, alpha: Tensor, d: Tensor, theta: Tensor) -> Tensor:
    r"""Modified (Craig) DH link :math:`T_x(a) R_x(\alpha) T_z(d) R_z(\theta)` in closed form."""
    ct, st = torch.cos(theta), torch.sin(theta)
    ca, sa = torch.cos(alpha), torch.sin(alpha)
    T = _eye(tuple(a.shape), a)
    T[..., 0, 0], T[..., 0, 1], T[..., 0, 2], T[..., 0, 3] = ct, -st, 0.0, a
    T[..., 1, 0], T[..., 1, 1], T[..., 1, 2], T[..., 1, 3] = st * ca, ct * ca, -sa, -sa * d
    T[..., 2, 0], T[..., 2, 1], T[..., 2, 2], T[..., 2, 3] = st * sa, ct * sa, ca, ca * d
    return T


def invert(T: Tensor) -> Tensor:
    """Inverse of rigid transforms ``(..., 4, 4)``."""
    R, t = T[..., :3, :3], T[..., :3, 3:]
    out = _eye(tuple(T.shape[:-2]), T)
    Rt = R.transpose(-1, -2)
    out[..., :3, :3] = Rt
    out[..., :3, 3:] = -Rt @ t
    return out


def quat_to_matrix(quat: Tensor) -> Tensor:
    """Unit quaternions ``(..., 4)`` ordered (w, x, y, z) -> rotation matrices ``(..., 3, 3)``."""
    w, x, y, z = quat.unbind(-1)
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ]
    return torch.stack([torch.stack(row, -1) for row in rows], -2)


def matrix_to_quat(R: Tensor) -> Tensor:
    """Rotation matrices ``(..., 3, 3)`` -> unit quaternions (w, x, y, z) with w >= 0."""
    m = R
    trace = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    # Four candidate forms; pick the numerically best per element (largest denominator).
    cands = torch.stack(
        [
            torch.stack([1 + trace, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1),
            torch.stack([m[..., 2, 1] - m[..., 1, 2], 1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2], m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0]], -1),
            torch.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0], 1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2], m[..., 1, 2] + m[..., 2, 1]], -1),
            torch.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1], 1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2]], -1),
        ],
        -2,
    )
    norms = cands.norm(dim=-1)
    best = norms.argmax(dim=-1, keepdim=True)
    q = torch.gather(cands, -2, best.unsqueeze(-1).expand(*best.shape, 4)).squeeze(-2)
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q)


def pose_from_xyz_quat(xyz_quat: Tensor) -> Tensor:
    """``(..., 7)`` rows of x, y, z, qw, qx, qy, qz -> transforms ``(..., 4, 4)``."""
    T = _eye(tuple(xyz_quat.shape[:-1]), xyz_quat)
    T[..., :3, :3] = quat_to_matrix(xyz_quat[..., 3:])
    T[..., :3, 3] = xyz_quat[..., :3]
    return T


def pose_to_xyz_quat(T: Tensor) -> Tensor:
    """Transforms ``(..., 4, 4)`` -> ``(..., 7)`` rows of x, y, z, qw, qx, qy, qz."""
    return torch.cat([T[..., :3, 3], matrix_to_quat(T[..., :3, :3])], -1)


def rotation_angle(R: Tensor) -> Tensor:
    """Angle of rotations ``(..., 3, 3)`` in radians, robust near 0 and pi."""
    skew = torch.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1)
    sin2 = skew.norm(dim=-1)  # 2 sin(angle)
    cos2 = R[..., 0, 0] + R[..., 1, 1] + R[..., 2, 2] - 1  # 2 cos(angle)
    return torch.atan2(sin2, cos2)


def pose_errors(T: Tensor, T_goal: Tensor) -> tuple[Tensor, Tensor]:
    """Position error in metres and rotation error ``angle(R_goal^T R)`` in radians."""
    pos = (T[..., :3, 3] - T_goal[..., :3, 3]).norm(dim=-1)
    rot = rotation_angle(T_goal[..., :3, :3].transpose(-1, -2) @ T[..., :3, :3])
    return pos, rot


def wrap_angle(q: Tensor) -> Tensor:
    """Wrap angles to [-pi, pi): pi itself becomes -pi."""
    return torch.remainder(q + math.pi, 2 * math.pi) - math.pi
