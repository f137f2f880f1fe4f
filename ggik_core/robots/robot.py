r"""The robot model: a serial chain of revolute joints.

A :class:`Robot` holds ``n + 1`` constant link transforms (see :mod:`ggik_core.robots.kinematics`),
joint limits and names. Loaders build it from standard DH tables, modified (Craig) DH tables
and URDF files (:mod:`ggik_core.robots.urdf`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ggik_core.errors import RobotError

if TYPE_CHECKING:  # torch is imported where a tensor is first asked for: loading a robot needs none
    import torch
    from torch import Tensor

#: Tolerance (metres / radians) for geometric tests on axes; the URDFs round angles to ~1e-5 rad.
AXIS_TOL = 1e-4


class Robot:
    """A serial revolute robot.

    Its arrays are stored in NumPy (``chain_np``, ``lower_np``, ``upper_np``, ``continuous_np``),
    so that loading a robot does not import torch; ``chain``, ``lower``, ``upper`` and
    ``continuous`` are the same arrays as torch tensors (sharing memory), made on first use.

    Attributes:
        name: a label.
        chain: link transforms ``(n + 1, 4, 4)``, float64.
        lower, upper: joint limits ``(n,)`` in radians. For a continuous joint they are the
            nominal range [-pi, pi] used to draw configurations; it has no limits.
        joint_names: one name per joint.
        continuous: ``(n,)`` bool, True for joints that turn without limits (URDF
            ``continuous``): they wrap, are never clamped, and are always within limits.
    """

    def __init__(self, name: str, chain: Any, lower: Any, upper: Any, joint_names: Sequence[str] | None = None,
                 continuous: Any = None) -> None:
        self.name = name
        self.chain_np = _array(chain, np.float64)
        n = self.chain_np.shape[0] - 1 if self.chain_np.ndim == 3 else 0
        if n < 1 or self.chain_np.shape[1:] != (4, 4):
            raise RobotError(f"robot {self.name!r}: a chain needs at least one joint")
        self.lower_np = _array(lower, np.float64).reshape(-1)
        self.upper_np = _array(upper, np.float64).reshape(-1)
        if self.lower_np.size != n or self.upper_np.size != n:
            raise RobotError(f"robot {self.name!r}: {n} joints but {self.lower_np.size} lower / {self.upper_np.size} upper limits")
        if not np.isfinite(self.chain_np).all():
            raise RobotError(f"robot {self.name!r}: the kinematic parameters contain NaN or infinity")
        if not (np.isfinite(self.lower_np).all() and np.isfinite(self.upper_np).all()):
            raise RobotError(f"robot {self.name!r}: joint limits contain NaN or infinity")
        bad = np.nonzero(self.lower_np > self.upper_np)[0]
        if bad.size:
            raise RobotError(f"robot {self.name!r}: joint {int(bad[0]) + 1} has lower limit above upper limit")
        self.joint_names = list(joint_names) if joint_names else [f"joint_{i + 1}" for i in range(n)]
        self.continuous_np = np.zeros(n, dtype=bool) if continuous is None else _array(continuous, bool).reshape(-1)
        if self.continuous_np.size != n:
            raise RobotError(f"robot {self.name!r}: {n} joints but {self.continuous_np.size} continuous flags")
        self._tensors: dict[str, Tensor] = {}

    def __repr__(self) -> str:
        return f"Robot(name={self.name!r}, dof={self.dof}, joint_names={self.joint_names!r})"

    def _tensor(self, key: str) -> Tensor:
        if key not in self._tensors:
            import torch

            self._tensors[key] = torch.from_numpy(getattr(self, f"{key}_np"))
        return self._tensors[key]

    @property
    def chain(self) -> Tensor:
        return self._tensor("chain")

    @property
    def lower(self) -> Tensor:
        return self._tensor("lower")

    @property
    def upper(self) -> Tensor:
        return self._tensor("upper")

    @property
    def continuous(self) -> Tensor:
        return self._tensor("continuous")

    def bounds_np(self) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`bounds` in NumPy."""
        return (np.where(self.continuous_np, -math.inf, self.lower_np), np.where(self.continuous_np, math.inf, self.upper_np))

    def within_limits_np(self, q: np.ndarray, tol: float = 1e-9) -> np.ndarray:
        """:meth:`within_limits` in NumPy."""
        lower, upper = self.bounds_np()
        return ((q >= lower - tol) & (q <= upper + tol)).all(-1)

    @property
    def dof(self) -> int:
        return self.chain_np.shape[0] - 1

    def fk(self, q: Tensor) -> Tensor:
        """End-effector poses ``(..., 4, 4)`` for ``q (..., n)`` (float64)."""
        import torch

        from ggik_core.robots.kinematics import forward_kinematics

        return forward_kinematics(self.chain, torch.as_tensor(q, dtype=torch.float64))

    def frames(self, q: Tensor | None = None) -> Tensor:
        """Axis frames and EE frame ``(..., n + 1, 4, 4)`` (home configuration when ``q`` is None)."""
        import torch

        from ggik_core.robots.kinematics import chain_frames

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
        import torch

        q = torch.as_tensor(q, dtype=torch.float64)
        lower, upper = self.bounds()
        lower, upper = lower.to(q.device), upper.to(q.device)
        return ((q >= lower - tol) & (q <= upper + tol)).all(-1)

    def bounds(self) -> tuple[Tensor, Tensor]:
        """Joint bounds for solvers ``(n,)``: the limits, and minus and plus infinity for continuous joints."""
        import torch

        lower, upper = self.bounds_np()
        return torch.from_numpy(lower), torch.from_numpy(upper)

    def sample_q(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` configurations uniform inside the joint limits ``(n, dof)``."""
        import torch

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
            a_, al_, d_, th_ = (np.array([float(v) for v in cols[k]], dtype=np.float64) for k in ("a", "alpha", "d", "theta_offset"))
        except (TypeError, ValueError) as exc:
            raise RobotError(f"robot {name!r}: DH table has a non-numeric entry ({exc})") from None
        for key, col in zip(("a", "alpha", "d", "theta_offset"), (a_, al_, d_, th_)):
            if not np.isfinite(col).all():
                row = int(np.nonzero(~np.isfinite(col))[0][0]) + 1
                raise RobotError(f"robot {name!r}: DH column {key!r} of joint {row} is NaN or infinite")
        lower = [-math.pi] * n if lower is None else lower
        upper = [math.pi] * n if upper is None else upper
        tool_T = np.eye(4) if tool is None else _array(tool, np.float64)
        return cls(name=name, chain=dh_chain_np(a_, al_, d_, th_, modified, tool_T), lower=lower, upper=upper)


def _array(x: Any, dtype: Any) -> np.ndarray:
    """A NumPy copy of an array, a tensor (any device) or a sequence."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.array(x, dtype=dtype)


def dh_chain_np(a: np.ndarray, alpha: np.ndarray, d: np.ndarray, theta: np.ndarray, modified: bool,
                tool: np.ndarray) -> np.ndarray:
    r"""Link transforms ``(n + 1, 4, 4)`` of one DH table, in NumPy (:func:`dh_chain` is the batched
    torch form). Standard links are :math:`R_z(\theta) T_z(d) T_x(a) R_x(\alpha)` and
    :math:`L_1 = I`; modified ones :math:`T_x(a) R_x(\alpha) T_z(d) R_z(\theta)` and
    :math:`L_{n+1} = I`; the last link is then multiplied by ``tool``."""
    n = a.shape[0]
    ct, st, ca, sa = np.cos(theta), np.sin(theta), np.cos(alpha), np.sin(alpha)
    links = np.zeros((n, 4, 4))
    links[:, 3, 3] = 1.0
    if not modified:
        links[:, 0] = np.stack([ct, -st * ca, st * sa, a * ct], -1)
        links[:, 1] = np.stack([st, ct * ca, -ct * sa, a * st], -1)
        links[:, 2, 1:] = np.stack([sa, ca, d], -1)
        chain = np.concatenate([np.eye(4)[None], links])
    else:
        links[:, 0] = np.stack([ct, -st, np.zeros(n), a], -1)
        links[:, 1] = np.stack([st * ca, ct * ca, -sa, -sa * d], -1)
        links[:, 2] = np.stack([st * sa, ct * sa, ca, ca * d], -1)
        chain = np.concatenate([links, np.eye(4)[None]])
    chain[-1] = chain[-1] @ tool
    return chain


def dh_chain(a: Tensor, alpha: Tensor, d: Tensor, theta_offset: Tensor, modified: bool = False, tool: Tensor | None = None) -> Tensor:
    """Link transforms ``(..., n + 1, 4, 4)`` of DH tables ``(..., n)`` (batched)."""
    import torch

    from ggik_core.robots.transforms import dh_modified, dh_standard

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
    import torch

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
