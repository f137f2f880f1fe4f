r"""Random serial revolute robots for training (spec §3), generated in vectorised batches.

Robots are standard DH tables ``(B, n)`` of ``a, alpha, d, theta``. Offsets ``d`` are drawn from
``U(d_min, d_max)`` and zeroed with probability ½ (``d_min < 0``: negative offsets, as on the
Schunk LWA4D); link lengths ``a`` reach ``a_max`` (0.8 m by default, beyond the UR10's 0.61 m):

* joint 1: :math:`\alpha = \pm\pi/2`, ``a = 0``, ``d`` as above;
* middle joints relate axis ``i`` to axis ``i + 1``:

  - intersecting (prob. ``1 - p_parallel``): :math:`\alpha = \pm\pi/2`, ``a = 0``, ``d`` as above;
  - parallel (prob. ``p_parallel``): :math:`\alpha \in \{0, \pi\}`, ``d = 0``, ``a ~ U(-a_max, a_max)``;
    at most two parallel relations in a row (never four parallel axes);
  - skew (non-coplanar robots only, prob. ``p_skew``): ``|a| ~ U(a_min_skew, a_max)`` with a
    random sign, :math:`|\alpha| \sim U(\pi/6, 5\pi/6)`, ``d`` as above (the Panda's skew joints
    have ``d = 0`` and ``d = 0.316``), so the two axes neither meet nor are parallel;
* last joint: :math:`\alpha = 0`, ``a = 0``, ``d`` as above (last axis along EE z).

``geometry``: ``coplanar`` (GGIK: no skew pair), ``noncoplanar`` (GGIK+: every robot may have
skew pairs) or ``mixed`` (each robot is coplanar or non-coplanar with probability ½).
Configurations are uniform in the limits (:math:`\pm\pi` for random robots), the last joint
included, so a DH offset ``theta`` only relabels ``q``: the generator draws ``theta = 0`` and
:func:`support_violations` ignores offsets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

GEOMETRIES = ("coplanar", "noncoplanar", "mixed")


@dataclass(frozen=True)
class RandomRobotConfig:
    geometry: str = "mixed"
    p_parallel: float = 0.25
    p_skew: float = 0.5
    d_min: float = -0.5
    d_max: float = 0.8
    a_max: float = 0.8
    a_min_skew: float = 0.05


@dataclass
class RandomRobots:
    """A batch of ``B`` random robots of one DOF, their configurations and kinds."""

    dh: Tensor  # (B, n, 4): a, alpha, d, theta
    lower: Tensor  # (B, n)
    upper: Tensor  # (B, n)
    q: Tensor  # (B, n)
    relation: Tensor  # (B, n - 1) int8: 0 intersect, 1 parallel, 2 skew (axis i to axis i+1)


INTERSECT, PARALLEL, SKEW = 0, 1, 2


def _sign(shape: tuple[int, ...], gen: torch.Generator) -> Tensor:
    return torch.randint(0, 2, shape, generator=gen, dtype=torch.int64).to(torch.float64) * 2 - 1


def _uniform(shape: tuple[int, ...], gen: torch.Generator, lo: float = 0.0, hi: float = 1.0) -> Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=gen, dtype=torch.float64)


def _relations(B: int, n: int, cfg: RandomRobotConfig, gen: torch.Generator) -> Tensor:
    """Relation of axis i to axis i+1 for i = 1..n-1, shape (B, n-1)."""
    rel = torch.zeros(B, n - 1, dtype=torch.int8)
    if n < 3:
        return rel
    u = _uniform((B, n - 1), gen)
    u_skew = _uniform((B, n - 1), gen)
    if cfg.geometry == "noncoplanar":
        skewed = torch.ones(B, dtype=torch.bool)
    elif cfg.geometry == "mixed":
        skewed = _uniform((B,), gen) < 0.5
    else:
        skewed = torch.zeros(B, dtype=torch.bool)
    run = torch.zeros(B, dtype=torch.int64)  # parallel relations in a row so far
    for i in range(1, n - 1):  # middle joints 2..n-1 (relation index i); loop over joints, not robots
        par = (u[:, i] < cfg.p_parallel) & (run < 2)
        r = torch.where(par, PARALLEL, INTERSECT).to(torch.int8)
        r = torch.where(skewed & (u_skew[:, i] < cfg.p_skew), torch.tensor(SKEW, dtype=torch.int8), r)
        rel[:, i] = r
        run = torch.where(r == PARALLEL, run + 1, torch.zeros_like(run))
    return rel


def generate_robots(B: int, n: int, cfg: RandomRobotConfig, gen: torch.Generator) -> RandomRobots:
    """``B`` random ``n``-DOF robots and one uniform configuration each (float64)."""
    if cfg.geometry not in GEOMETRIES:
        raise ValueError(f"geometry must be one of {GEOMETRIES}, got {cfg.geometry!r}")
    if n < 2:
        raise ValueError("random robots need at least 2 joints")
    rel = _relations(B, n, cfg, gen)
    half = torch.full((B, n), math.pi / 2, dtype=torch.float64)
    bern = (torch.rand(B, n, generator=gen) < 0.5).to(torch.float64)
    d_int = _uniform((B, n), gen, cfg.d_min, cfg.d_max) * bern
    alpha = half * _sign((B, n), gen)
    a = torch.zeros(B, n, dtype=torch.float64)
    d = d_int.clone()
    # middle joints (relation index 1..n-2 belongs to joint index 1..n-2, 0-based)
    relj = torch.cat([torch.zeros(B, 1, dtype=torch.int8), rel[:, 1:], torch.zeros(B, 1, dtype=torch.int8)], 1)
    par = relj == PARALLEL
    alpha = torch.where(par, math.pi * (torch.rand(B, n, generator=gen) < 0.5).to(torch.float64), alpha)
    a = torch.where(par, _uniform((B, n), gen, -cfg.a_max, cfg.a_max), a)
    d = torch.where(par, torch.zeros_like(d), d)
    skew = relj == SKEW
    a_skew = _uniform((B, n), gen, cfg.a_min_skew, cfg.a_max) * _sign((B, n), gen)
    d_skew = d_int
    al_skew = _uniform((B, n), gen, math.pi / 6, 5 * math.pi / 6) * _sign((B, n), gen)
    a = torch.where(skew, a_skew, a)
    d = torch.where(skew, d_skew, d)
    alpha = torch.where(skew, al_skew, alpha)
    # last joint: axis along EE z, EE on the axis
    alpha[:, -1] = 0.0
    a[:, -1] = 0.0
    theta = torch.zeros(B, n, dtype=torch.float64)
    dh = torch.stack([a, alpha, d, theta], -1)
    lower = torch.full((B, n), -math.pi, dtype=torch.float64)
    upper = torch.full((B, n), math.pi, dtype=torch.float64)
    q = lower + (upper - lower) * torch.rand(B, n, generator=gen, dtype=torch.float64)
    return RandomRobots(dh=dh, lower=lower, upper=upper, q=q, relation=rel)


#: tolerance on DH values when classifying a real arm (URDF round-off such as LWA4P's 1.5708)
SUPPORT_TOL = 1e-3


def support_violations(dh: Tensor, cfg: RandomRobotConfig) -> list[str]:
    """Why the DH table ``dh (n, 4)`` (``a, alpha, d, theta``) lies outside the generator's support
    under ``cfg``: an empty list when the generator can draw this geometry (offsets ``theta``
    ignored: they only relabel ``q``). One message per offending joint, 1-based."""
    tol, out = SUPPORT_TOL, []
    n = dh.shape[0]
    a, alpha, d = (dh[:, k].tolist() for k in range(3))

    def near(x: float, y: float) -> bool:
        return abs(x - y) <= tol

    def d_ok(x: float) -> bool:
        return near(x, 0.0) or cfg.d_min - tol <= x <= cfg.d_max + tol

    run = 0
    for i in range(n):
        kinds = []
        intersect = near(abs(alpha[i]), math.pi / 2) and near(a[i], 0.0) and d_ok(d[i])
        if i == 0:
            kinds = ["intersect"] if intersect else []
        elif i == n - 1:
            kinds = ["last"] if near(alpha[i], 0.0) and near(a[i], 0.0) and d_ok(d[i]) else []
        else:
            if intersect:
                kinds.append("intersect")
            if (near(alpha[i], 0.0) or near(abs(alpha[i]), math.pi)) and near(d[i], 0.0) and abs(a[i]) <= cfg.a_max + tol:
                kinds.append("parallel")
            if (cfg.geometry != "coplanar" and cfg.p_skew > 0 and cfg.a_min_skew - tol <= abs(a[i]) <= cfg.a_max + tol
                    and math.pi / 6 - tol <= abs(alpha[i]) <= 5 * math.pi / 6 + tol and d_ok(d[i])):
                kinds.append("skew")
        if not kinds:
            out.append(f"joint {i + 1} (a={a[i]:.4g}, alpha={alpha[i]:.4g}, d={d[i]:.4g}) is outside the "
                       f"{cfg.geometry} generator (d in [{cfg.d_min}, {cfg.d_max}], |a| <= {cfg.a_max})")
        run = run + 1 if kinds == ["parallel"] else 0
        if run > 2:
            out.append(f"joint {i + 1}: more than two parallel relations in a row")
    return out
