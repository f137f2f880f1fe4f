r"""Batched damped least squares (Levenberg–Marquardt) refinement of IK solutions.

All candidates of all goals are refined at once. With the geometric Jacobian
:math:`J_i = [z_i \times (p_{ee} - o_i);\ z_i]` and the pose error
:math:`e = [p_{goal} - p;\ \log(R_{goal} R^\top)^\vee]`, each step is

.. math::
    \Delta q = J^\top (J J^\top + \lambda I)^{-1} e,

accepted when it lowers the error (then :math:`\lambda` shrinks) and rejected otherwise (then
:math:`\lambda` grows). Starting angles are first shifted by whole turns into the limits where
they fit; joint angles are clipped to the limits after every step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ggik_core.solve.joints import fit_to_limits
from ggik_core.robots.kinematics import chain_frames
from ggik_core.robots.transforms import pose_errors


@dataclass(frozen=True)
class RefineConfig:
    max_iter: int = 50
    pos_tol: float = 1e-5  # metres
    rot_tol: float = 1e-4  # radians
    damping: float = 1e-3
    rot_weight: float = 0.5  # metres per radian in the error norm


def so3_log(R: Tensor) -> Tensor:
    """Rotation vectors ``(..., 3)`` of rotation matrices ``(..., 3, 3)``."""
    skew = torch.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1)
    s = skew.norm(dim=-1, keepdim=True)  # 2 sin(theta)
    c = (R[..., 0, 0] + R[..., 1, 1] + R[..., 2, 2] - 1)[..., None]  # 2 cos(theta)
    theta = torch.atan2(s, c)
    scale = torch.where(s > 1e-8, theta / s.clamp(min=1e-12), 0.5 + theta * theta / 12)
    vec = skew * scale
    # near pi: axis from the symmetric part
    near_pi = (theta > 3.13).squeeze(-1)
    if near_pi.any():
        B = (R + R.transpose(-1, -2)) / 2 - torch.eye(3, dtype=R.dtype, device=R.device) * ((c[..., None] / 2))
        axis = torch.diagonal(B, dim1=-2, dim2=-1).clamp(min=0).sqrt()
        # fix signs using off-diagonal terms relative to the largest component
        k = axis.argmax(-1, keepdim=True)
        row = torch.gather(B, -2, k[..., None].expand(*k.shape, 3)).squeeze(-2)
        axis = row / row.norm(dim=-1, keepdim=True).clamp(min=1e-12)
        axis = torch.where((axis * skew).sum(-1, keepdim=True) < 0, -axis, axis)
        vec = torch.where(near_pi[..., None], axis * theta, vec)
    return vec


def pose_residual(chain: Tensor, q: Tensor, goal: Tensor, rot_weight: float) -> tuple[Tensor, Tensor]:
    """Error ``(..., 6)`` and geometric Jacobian ``(..., 6, n)`` (rotation rows weighted)."""
    n = q.shape[-1]
    F = chain_frames(chain, q)
    o, z = F[..., :n, :3, 3], F[..., :n, :3, 2]
    p_ee = F[..., n, :3, 3]
    Jv = torch.linalg.cross(z, p_ee[..., None, :] - o, dim=-1)
    J = torch.cat([Jv, rot_weight * z], -1).transpose(-1, -2)
    e_pos = goal[..., :3, 3] - p_ee
    e_rot = so3_log(goal[..., :3, :3] @ F[..., n, :3, :3].transpose(-1, -2))
    return torch.cat([e_pos, rot_weight * e_rot], -1), J


def refine(chain: Tensor, q: Tensor, goal: Tensor, lower: Tensor, upper: Tensor, cfg: RefineConfig = RefineConfig()) -> Tensor:
    """Refine configurations ``q (..., n)`` towards ``goal (..., 4, 4)`` for ``chain (..., n+1, 4, 4)``.

    Leading dimensions broadcast (e.g. chain ``(B, 1, n+1, 4, 4)``, q ``(B, K, n)``, goal
    ``(B, 1, 4, 4)``). Returns refined ``q`` inside ``[lower, upper]``.
    """
    # whole turns first (an angle recovered in (-pi, pi] may fit the limits only shifted by 2 pi),
    # then clamp what still lies outside
    q = fit_to_limits(q.to(chain.dtype), lower, upper)
    q = torch.maximum(torch.minimum(q, upper), lower)
    e, J = pose_residual(chain, q, goal, cfg.rot_weight)
    err = e.pow(2).sum(-1)
    lam = torch.full_like(err, cfg.damping)
    eye = torch.eye(6, dtype=q.dtype, device=q.device)
    for _ in range(cfg.max_iter):
        pe = e[..., :3].norm(dim=-1)
        re = e[..., 3:].norm(dim=-1) / cfg.rot_weight
        active = (pe > cfg.pos_tol) | (re > cfg.rot_tol)
        if not bool(active.any()):
            break
        JJt = J @ J.transpose(-1, -2) + lam[..., None, None] * eye
        dq = (J.transpose(-1, -2) @ torch.linalg.solve(JJt, e[..., None])).squeeze(-1)
        q_new = torch.maximum(torch.minimum(q + dq, upper), lower)
        e_new, J_new = pose_residual(chain, q_new, goal, cfg.rot_weight)
        err_new = e_new.pow(2).sum(-1)
        better = (err_new < err) & active
        q = torch.where(better[..., None], q_new, q)
        e = torch.where(better[..., None], e_new, e)
        J = torch.where(better[..., None, None], J_new, J)
        err = torch.where(better, err_new, err)
        lam = torch.where(better, lam * 0.3, lam * 4).clamp(1e-9, 1e3)
    return q


def solve_errors(chain: Tensor, q: Tensor, goal: Tensor) -> tuple[Tensor, Tensor]:
    """Position (m) and rotation (rad) errors of ``q`` by forward kinematics."""
    from ggik_core.robots.kinematics import forward_kinematics

    return pose_errors(forward_kinematics(chain, q), goal)
