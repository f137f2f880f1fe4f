r"""Batched forward kinematics of serial revolute chains.

A chain of ``n`` joints is stored as ``n + 1`` constant link transforms ``L``:

.. math::
    A_1 = L_1,\quad A_{i+1} = A_i R_z(q_i) L_{i+1},\quad T_{ee} = A_n R_z(q_n) L_{n+1}

where :math:`A_i` is the frame of joint ``i``'s axis (its z-axis is the axis, its origin lies on
it) before joint ``i`` turns. Any number of robots of the same DOF and any number of
configurations are evaluated in one call by broadcasting the leading dimensions.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ggik_core.robots.transforms import broadcast_shape, rot_z


def chain_frames(chain: Tensor, q: Tensor) -> Tensor:
    """Axis frames of every joint and the end-effector frame.

    Args:
        chain: link transforms ``(..., n + 1, 4, 4)``.
        q: joint angles ``(..., n)``; leading dimensions broadcast with ``chain``'s.

    Returns:
        ``(..., n + 1, 4, 4)``: entries ``0..n-1`` are the axis frames :math:`A_1..A_n`,
        entry ``n`` is the end-effector frame.
    """
    n = chain.shape[-3] - 1
    if q.shape[-1] != n:
        raise ValueError(f"q has {q.shape[-1]} joints, the chain has {n}")
    q = q.to(chain.dtype)
    batch = broadcast_shape(chain.shape[:-3], q.shape[:-1])
    chain = chain.expand(*batch, n + 1, 4, 4)
    Rz = rot_z(q.expand(*batch, n))
    frames = [chain[..., 0, :, :]]
    for i in range(n):
        frames.append(frames[-1] @ Rz[..., i, :, :] @ chain[..., i + 1, :, :])
    return torch.stack(frames, -3)


def home_frames(chain: Tensor) -> Tensor:
    """:func:`chain_frames` at the home configuration ``q = 0``."""
    zeros = torch.zeros(chain.shape[:-3] + (chain.shape[-3] - 1,), dtype=chain.dtype, device=chain.device)
    return chain_frames(chain, zeros)


def forward_kinematics(chain: Tensor, q: Tensor) -> Tensor:
    """End-effector pose ``(..., 4, 4)`` for link transforms ``(..., n+1, 4, 4)`` and ``q (..., n)``."""
    n = chain.shape[-3] - 1
    q = q.to(chain.dtype)
    batch = broadcast_shape(chain.shape[:-3], q.shape[:-1])
    chain = chain.expand(*batch, n + 1, 4, 4)
    Rz = rot_z(q.expand(*batch, n))
    T = chain[..., 0, :, :]
    for i in range(n):
        T = T @ Rz[..., i, :, :] @ chain[..., i + 1, :, :]
    return T
