r"""Distance graphs of IK problems (spec §4), built vectorised for a batch of robots of one DOF.

Nodes (``N = 2n + 4``), in this order::

    0 p0   1 q0   2 bx   3 by   | 4 p1  5 q1 | ... | 2n+2 p_n  2n+3 q_n

* ``p0, q0``: the axis of joint 1 (origin and origin + z of the canonical frame); ``bx, by``: the
  unit points on the canonical x and y axes — together the four base anchors.
* pair ``k`` (``1 <= k < n``): ``p_k`` on the axis of joint ``k+1`` and ``q_k = p_k + axis``.
* pair ``n``: the end effector, ``p_n`` its origin and ``q_n = p_n + EE z``.

The *canonical frame* is the axis frame of joint 1 slid along that axis to the foot of its
common normal with axis 2; every ``p_k`` likewise sits at the foot of the common normal with the
previous axis (for parallel axes: the projection of the previous point). Goals are expressed in
the canonical frame. Anchors: the four base points and the EE pair.

A distance is *known* (independent of the configuration) for: pairs among the anchors, points of
the same pair, points of consecutive pairs, and skip-one pairs ``(k, k+2)`` where one of the two
points lies on axis ``k+2`` (the joint between them); ``bx, by`` count as pair ``-1``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

from ggik_core.robots.kinematics import chain_frames, home_frames
from ggik_core.robots.transforms import invert

#: Node roles.
ROLE_NAMES = ("p0", "q0", "bx", "by", "p", "q", "p_ee", "q_ee")
NUM_ROLES = len(ROLE_NAMES)
#: Node features: role one-hot, anchor flag, position along the chain, goal (t, R[:, 0], R[:, 1]).
NODE_FEATURES = NUM_ROLES + 2 + 9
ON_LINE_TOL = 1e-7


def num_nodes(dof: int) -> int:
    return 2 * dof + 4


@dataclass(frozen=True)
class Layout:
    """Node bookkeeping shared by every graph of one DOF."""

    dof: int
    role: Tensor  # (N,) int64
    anchor: Tensor  # (N,) bool
    pair: Tensor  # (N,) int64, -1 for bx/by
    edge_index: Tensor  # (2, E) complete directed graph, row = source j, col = target i


@lru_cache(maxsize=None)
def layout(dof: int, device: torch.device | str | None = None) -> Layout:
    """The layout of ``dof``, its tensors on ``device`` (cached per device, so batches built on
    a GPU copy nothing from the host)."""
    if device is not None:  # one CPU layout; a copy of it per other device
        cpu = layout(dof)
        return cpu if torch.device(device).type == "cpu" else Layout(dof, *(t.to(device) for t in (cpu.role, cpu.anchor, cpu.pair, cpu.edge_index)))
    N = num_nodes(dof)
    role = torch.tensor([0, 1, 2, 3] + [4, 5] * (dof - 1) + [6, 7])
    anchor = torch.zeros(N, dtype=torch.bool)
    anchor[:4] = True
    anchor[-2:] = True
    pair = torch.tensor([0, 0, -1, -1] + [k for k in range(1, dof + 1) for _ in range(2)])
    src, dst = torch.meshgrid(torch.arange(N), torch.arange(N), indexing="ij")
    keep = src != dst
    edge_index = torch.stack([src[keep], dst[keep]])
    return Layout(dof, role, anchor, pair, edge_index)


def _foot_on_second(p1: Tensor, d1: Tensor, p2: Tensor, d2: Tensor, eps: float = 1e-9) -> Tensor:
    """Parameter ``s`` of the point ``p2 + s d2`` closest to line ``(p1, d1)``; unit directions.

    For (near-)parallel lines: the projection of ``p1`` onto the second line.
    """
    w = p1 - p2
    b = (d1 * d2).sum(-1)
    dw = (d1 * w).sum(-1)
    ew = (d2 * w).sum(-1)
    denom = 1 - b * b
    par = denom < eps
    return torch.where(par, ew, (ew - dw * b) / torch.where(par, torch.ones_like(denom), denom))


def canonical_chain(chain: Tensor) -> tuple[Tensor, Tensor]:
    """Re-express a chain ``(..., n+1, 4, 4)`` in its canonical frame with canonical axis points.

    Returns ``(chain_c, base)``: ``chain_c`` has the same forward kinematics up to the fixed
    change of frame ``base`` (``T_world = base @ T_canonical``), its first link is the identity,
    and each axis frame origin sits at the foot of the common normal with the previous axis
    (joint 1: with axis 2). Sliding a frame along its own z-axis commutes with the joint rotation,
    so the kinematics are unchanged.
    """
    n = chain.shape[-3] - 1
    A = home_frames(chain)  # (..., n+1, 4, 4)
    o, z = A[..., :n, :3, 3], A[..., :n, :3, 2]
    t = torch.zeros(chain.shape[:-3] + (n,), dtype=chain.dtype, device=chain.device)
    if n >= 2:
        t[..., 0] = _foot_on_second(o[..., 1, :], z[..., 1, :], o[..., 0, :], z[..., 0, :])
    for i in range(1, n):  # loop over joints; every robot of the batch at once
        prev = o[..., i - 1, :] + t[..., i - 1, None] * z[..., i - 1, :]
        t[..., i] = _foot_on_second(prev, z[..., i - 1, :], o[..., i, :], z[..., i, :])
    slide = torch.eye(4, dtype=chain.dtype, device=chain.device).expand(*t.shape, 4, 4).clone()
    slide[..., 2, 3] = t
    slide_inv = slide.clone()
    slide_inv[..., 2, 3] = -t
    # L'_1 = L_1 Tz(t_1); L'_i = Tz(-t_{i-1}) L_i Tz(t_i); L'_{n+1} = Tz(-t_n) L_{n+1}
    new = chain.clone()
    new[..., :n, :, :] = new[..., :n, :, :] @ slide
    new[..., 1:, :, :] = slide_inv @ new[..., 1:, :, :]
    base = new[..., 0, :, :].clone()
    new[..., 0, :, :] = torch.eye(4, dtype=chain.dtype, device=chain.device)
    return new, base


def node_positions(frames: Tensor) -> Tensor:
    """Node positions ``(..., N, 3)`` from canonical axis/EE frames ``(..., n+1, 4, 4)``."""
    n = frames.shape[-3] - 1
    p = frames[..., :3, 3]  # (..., n+1, 3)
    q = p + frames[..., :3, 2]
    pairs = torch.stack([p, q], -2)  # (..., n+1, 2, 3)
    eye = torch.eye(3, dtype=frames.dtype, device=frames.device)
    base_xy = eye[:2].expand(*frames.shape[:-3], 2, 3)
    out = torch.cat([pairs[..., 0, :, :], base_xy, pairs[..., 1:, :, :].reshape(*frames.shape[:-3], 2 * n, 3)], -2)
    return out


def anchor_positions(goal: Tensor, dof: int) -> Tensor:
    """Positions ``(..., N, 3)`` with anchors from the canonical goal ``(..., 4, 4)`` and zeros elsewhere."""
    N = num_nodes(dof)
    x = torch.zeros(*goal.shape[:-2], N, 3, dtype=goal.dtype, device=goal.device)
    x[..., 1, 2] = 1.0
    x[..., 2, 0] = 1.0
    x[..., 3, 1] = 1.0
    x[..., N - 2, :] = goal[..., :3, 3]
    x[..., N - 1, :] = goal[..., :3, 3] + goal[..., :3, 2]
    return x


def known_mask(home: Tensor, dof: int, tol: float = ON_LINE_TOL) -> Tensor:
    """Which distances are configuration-invariant: ``(..., N, N)`` bool from home positions ``(..., N, 3)``."""
    lay = layout(dof, home.device)
    pair = lay.pair
    # distance of every node to the line of every pair 0..n-1 (joint axes 1..n)
    idx_p = torch.tensor([0] + [2 * k + 2 for k in range(1, dof)], device=home.device)
    lp = home[..., idx_p, :]  # (..., n, 3)
    ld = home[..., idx_p + 1, :] - lp
    rel = home[..., :, None, :] - lp[..., None, :, :]  # (..., N, n, 3)
    on_line = torch.linalg.cross(rel, ld[..., None, :, :].expand_as(rel), dim=-1).norm(dim=-1) < tol  # (..., N, n)
    pu, pv = pair[:, None], pair[None, :]
    N = num_nodes(dof)
    # bx/by (pair -1) and pair 0 are both fixed to the base: known; bx/by to pair 1 is a skip-one.
    base_both = (pu <= 0) & (pv <= 0)
    base_xy_to_pair1 = ((pu == -1) & (pv == 1)) | ((pu == 1) & (pv == -1))
    next_not_base = ((pu - pv).abs() <= 1) & ~base_xy_to_pair1
    skip = ((pu - pv).abs() == 2) | base_xy_to_pair1
    mid = (torch.minimum(pu, pv) + 1).clamp(0, dof - 1)  # the line (pair index) of the joint in between
    u_on = on_line.gather(-1, mid.expand(*on_line.shape[:-1], N))
    # u_on[..., u, v] = node u lies on line mid(u, v); v_on by transposing the symmetric index
    v_on = u_on.transpose(-1, -2)
    skip_known = skip & (u_on | v_on)
    anchors = lay.anchor
    both_anchor = anchors[:, None] & anchors[None, :]
    structural = base_both | next_not_base | both_anchor
    known = structural | skip_known
    eye = torch.eye(N, dtype=torch.bool, device=home.device)
    return known & ~eye


def goal_features(goal: Tensor) -> Tensor:
    """Goal encoding ``(..., 9)``: translation and the first two columns of the rotation."""
    return torch.cat([goal[..., :3, 3], goal[..., :3, 0], goal[..., :3, 1]], -1)


@lru_cache(maxsize=None)
def _static_features(dof: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """The goal-independent node features ``(N, NUM_ROLES + 2)``: role one-hot, anchor flag, chain position."""
    lay = layout(dof)
    onehot = torch.nn.functional.one_hot(lay.role, NUM_ROLES).to(dtype)
    along = (lay.pair.clamp(min=0).to(dtype) / dof)[:, None]
    return torch.cat([onehot, lay.anchor.to(dtype)[:, None], along], -1).to(device)


def node_features(goal: Tensor, dof: int) -> Tensor:
    """Node features ``(..., N, NODE_FEATURES)``: role one-hot, anchor flag, chain position, goal."""
    N = num_nodes(dof)
    static = _static_features(dof, goal.device, goal.dtype)
    static = static.expand(*goal.shape[:-2], N, static.shape[-1])
    g = goal_features(goal)[..., None, :].expand(*goal.shape[:-2], N, 9)
    return torch.cat([static, g], -1)


@dataclass
class ProblemGraphs:
    """Graph tensors of ``B`` problems of one DOF (what a shard stores).

    ``pos``: true node positions (answer); ``home``: positions at the home configuration (used
    only for configuration-invariant distances); ``known``: the known-distance mask; ``goal``:
    canonical goal pose; ``q``: the configuration.
    """

    dof: int
    pos: Tensor  # (B, N, 3)
    home: Tensor  # (B, N, 3)
    known: Tensor  # (B, N, N) bool
    goal: Tensor  # (B, 4, 4)
    q: Tensor  # (B, n)


def build_problem_graphs(chain: Tensor, q: Tensor, goal: Tensor) -> ProblemGraphs:
    """Graphs for robots ``chain (B, n+1, 4, 4)`` at ``q (B, n)`` with goals ``goal (B, 4, 4)``.

    ``goal`` is the EE pose in the robot's base frame; the partial-graph inputs (``home``,
    ``known``, canonical ``goal``) depend only on the robot and the goal, never on ``q``.
    """
    dof = chain.shape[-3] - 1
    chain_c, base = canonical_chain(chain)
    goal_c = invert(base) @ goal.to(chain.dtype)
    frames = chain_frames(chain_c, q)
    pos = node_positions(frames)
    home = node_positions(home_frames(chain_c))
    known = known_mask(home, dof)
    return ProblemGraphs(dof=dof, pos=pos, home=home, known=known, goal=goal_c, q=q)


def partial_distances(home: Tensor, known: Tensor, goal: Tensor) -> Tensor:
    """Known distances ``(..., N, N)`` of the partial graph (zero where unknown).

    Anchor-to-anchor distances come from the goal; the rest from the home configuration.
    """
    dof = (home.shape[-2] - 4) // 2
    anchors = layout(dof, home.device).anchor
    both = anchors[:, None] & anchors[None, :]
    xa = anchor_positions(goal.to(home.dtype), dof)
    d_home = torch.cdist(home, home)
    d_anchor = torch.cdist(xa, xa)
    d = torch.where(both, d_anchor, d_home)
    return torch.where(known, d, torch.zeros_like(d))
