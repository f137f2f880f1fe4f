r"""The robot model: a serial chain of revolute joints.

A :class:`Robot` holds ``n + 1`` constant link transforms (see :mod:`ggik_core.robots.kinematics`),
joint limits and names. Loaders build it from standard DH tables, modified (Craig) DH tables
and URDF files (:mod:`ggik_core.robots.urdf`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import Tensor

from ggik_core.errors import RobotError
from ggik_core.robots.kinematics import chain_frames, forward_kinematics
from ggik_core.robots.transforms import dh_modified, dh_standard

#: Tolerance (metres / radians) for geometric tests on axes; the URDFs round angles to ~1e-5 rad.
AXIS_TOL = 1e-4


@dataclass
class Robot:
    """A serial revolute robot.

    Attributes:
        name: a label.
        chain: link transforms ``(n + 1, 4, 4)``, float64.
        lower, upper: joint limits ``(n,)`` in radians. For a continuous joint they are the
            nominal range [-pi, pi] used to draw configurations; it has no limits.
        joint_names: one name per joint.
        continuous: ``(n,)`` bool, True for joints that turn without limits (URDF
            ``continuous``): they wrap, are never clamped, and are always within limits.
    """

    name: str
    chain: Tensor
    lower: Tensor
    upper: Tensor
    joint_names: list[str] = field(default_factory=list)
    continuous: Tensor | None = None

    def __post_init__(self) -> None:
        self.chain = torch.as_tensor(self.chain, dtype=torch.float64)
        n = self.chain.shape[0] - 1
        self.lower = torch.as_tensor(self.lower, dtype=torch.float64).reshape(-1)
        self.upper = torch.as_tensor(self.upper, dtype=torch.float64).reshape(-1)
        if n < 1 or self.chain.shape[1:] != (4, 4):
            raise RobotError(f"robot {self.name!r}: a chain needs at least one joint")
        if self.lower.numel() != n or self.upper.numel() != n:
            raise RobotError(f"robot {self.name!r}: {n} joints but {self.lower.numel()} lower / {self.upper.numel()} upper limits")
        if not torch.isfinite(self.chain).all():
            raise RobotError(f"robot {self.name!r}: the kinematic parameters contain NaN or infinity")
        if not (torch.isfinite(self.lower).all() and torch.isfinite(self.upper).all()):
            raise RobotError(f"robot {self.name!r}: joint limits contain NaN or infinity")
        bad = (self.lower > self.upper).nonzero().flatten().tolist()
        if bad:
            raise RobotError(f"robot {self.name!r}: joint {bad[0] + 1} has lower limit above upper limit")
        if not self.joint_names:
            self.joint_names = [f"joint_{i + 1}" for i in range(n)]
        if self.continuous is None:
            self.continuous = torch.zeros(n, dtype=torch.bool)
        self.continuous = torch.as_tensor(self.continuous, dtype=torch.bool).reshape(-1)
        if self.continuous.numel() != n:
            raise RobotError(f"robot {self.name!r}: {n} joints but {self.continuous.numel()} continuous flags")

    @property
    def dof(self) -> int:
        return self.chain.shape[0] - 1

    def fk(self, q: Tensor) -> Tensor:
        """End-effector poses ``(..., 4, 4)`` for ``q (..., n)`` (float64)."""
        return forward_kinematics(self.chain, torch.as_tensor(q, dtype=torch.float64))

    def frames(self, q: Tensor | None = None) -> Tensor:
        """Axis frames and EE frame ``(..., n + 1, 4, 4)`` (home configuration when ``q`` is None)."""
        q = torch.zeros(self.dof, dtype=torch.float64) if q is None else torch.as_tensor(q, dtype=torch.float64)
        return chain_frames(self.chain, q)

    def axis_relations(self) -> list[str]:
        """For each consecutive pair of joint axes: 'intersect', 'parallel' or 'skew'."""
        return axis_relations(self.frames()[: self.dof])

    @property
    def coplanar(self) -> bool:
        """True when every consecutive pair of axes intersects or is parallel."""
        return "skew" not in self.axis_relations()

    def within_limits(self, q: Tensor, tol: float = 1e-9) -> Tensor:
        """Boolean ``(...,)``: every joint of ``q (..., n)`` inside its limits (continuous joints
        always are)."""
        q = torch.as_tensor(q, dtype=torch.float64)
        lower, upper = self.bounds()
        lower, upper = lower.to(q.device), upper.to(q.device)
        return ((q >= lower - tol) & (q <= upper + tol)).all(-1)

    def bounds(self) -> tuple[Tensor, Tensor]:
        """Joint bounds for solvers ``(n,)``: the limits, and minus and plus infinity for continuous joints."""
        inf = torch.full_like(self.lower, math.inf)
        return torch.where(self.continuous, -inf, self.lower), torch.where(self.continuous, inf, self.upper)

    def sample_q(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` configurations uniform inside the joint limits ``(n, dof)``."""
        u = torch.rand(n, self.dof, dtype=torch.float64, generator=generator)
        return self.lower + u * (self.upper - self.lower)

    @classmethod
    def from_dh(
        cls,
        name: str,
        a: Sequence[float],
        alpha: Sequence[float],
        d: Sequence[float],
        theta_offset: Sequence[float] | None = None,
        lower: Sequence[float] | None = None,
        upper: Sequence[float] | None = None,
        modified: bool = False,
        tool: Tensor | None = None,
    ) -> "Robot":
        r"""Build from a DH table.

        Standard: :math:`T_{i-1,i} = R_z(q_i + \theta_i) T_z(d_i) T_x(a_i) R_x(\alpha_i)`, joint ``i``
        turns about :math:`z_{i-1}`; the EE is frame ``n`` (times ``tool``).
        Modified (Craig): :math:`T_{i-1,i} = T_x(a_{i-1}) R_x(\alpha_{i-1}) T_z(d_i) R_z(q_i + \theta_i)`
        with ``a[i], alpha[i]`` listed on joint ``i``; joint ``i`` turns about :math:`z_i`; the EE is
        frame ``n`` times ``tool``. Limits default to :math:`\pm\pi`.
        """
        cols = {"a": a, "alpha": alpha, "d": d}
        n = len(a)
        theta_offset = [0.0] * n if theta_offset is None else theta_offset
        cols["theta_offset"] = theta_offset
        for key, col in cols.items():
            if len(col) != n:
                raise RobotError(f"robot {name!r}: DH column {key!r} has {len(col)} entries, expected {n}")
        try:
            a_, al_, d_, th_ = (torch.tensor([float(v) for v in cols[k]], dtype=torch.float64) for k in ("a", "alpha", "d", "theta_offset"))
        except (TypeError, ValueError) as exc:
            raise RobotError(f"robot {name!r}: DH table has a non-numeric entry ({exc})") from None
        for key, col in zip(("a", "alpha", "d", "theta_offset"), (a_, al_, d_, th_)):
            if not torch.isfinite(col).all():
                row = int((~torch.isfinite(col)).nonzero()[0]) + 1
                raise RobotError(f"robot {name!r}: DH column {key!r} of joint {row} is NaN or infinite")
        lower = [-math.pi] * n if lower is None else lower
        upper = [math.pi] * n if upper is None else upper
        tool_T = torch.eye(4, dtype=torch.float64) if tool is None else torch.as_tensor(tool, dtype=torch.float64)
        chain = dh_chain(a_, al_, d_, th_, modified=modified, tool=tool_T)
        return cls(name=name, chain=chain, lower=torch.tensor(lower, dtype=torch.float64), upper=torch.tensor(upper, dtype=torch.float64))


def dh_chain(a: Tensor, alpha: Tensor, d: Tensor, theta_offset: Tensor, modified: bool = False, tool: Tensor | None = None) -> Tensor:
    """Link transforms ``(..., n + 1, 4, 4)`` of DH tables ``(..., n)`` (batched)."""
    eye = torch.eye(4, dtype=a.dtype, device=a.device).expand(*a.shape[:-1], 1, 4, 4)
    if not modified:
        # Joint i turns about z_{i-1}: L_1 = I, L_{i+1} = DH_i (constant part), L_{n+1} = DH_n * tool.
        links = dh_standard(a, alpha, d, theta_offset)
        chain = torch.cat([eye, links], -3)
    else:
        # Joint i turns about z_i: L_i = Tx(a_{i-1}) Rx(alpha_{i-1}) Tz(d_i) Rz(theta_i), L_{n+1} = tool.
        links = dh_modified(a, alpha, d, theta_offset)
        chain = torch.cat([links, eye], -3)
    if tool is not None:
        chain = chain.clone()
        chain[..., -1, :, :] = chain[..., -1, :, :] @ tool.to(chain)
    return chain


def axis_relations(axes: Tensor, tol: float = AXIS_TOL) -> list[str]:
    """Relations of consecutive axes given axis frames ``(n, 4, 4)`` (z = axis direction)."""
    out = []
    for i in range(axes.shape[0] - 1):
        p1, z1 = axes[i, :3, 3], axes[i, :3, 2]
        p2, z2 = axes[i + 1, :3, 3], axes[i + 1, :3, 2]
        cross = torch.linalg.cross(z1, z2)
        if cross.norm() < tol:
            out.append("parallel")
            continue
        dist = torch.abs(torch.dot(p2 - p1, cross / cross.norm()))
        out.append("intersect" if dist < tol else "skew")
    return out
