"""Random robot generator (spec §3): geometry of consecutive axes, DH rules, seeding, limits.

The geometric checks do not trust the generator's own ``relation`` labels: they rebuild the
home axis frames with forward kinematics and classify every consecutive axis pair from the
axis lines themselves.
"""

from __future__ import annotations

import math

import pytest
import torch

from ggik_core.robots.kinematics import chain_frames
from ggik_core.robots.random_robots import INTERSECT, PARALLEL, SKEW, RandomRobotConfig, generate_robots
from ggik_core.robots.robot import AXIS_TOL, Robot, axis_relations, dh_chain

DOFS = (5, 6, 7, 8)
COUNT = 2000  # robots per DOF and geometry


def robots(n: int, geometry: str, seed: int, count: int = COUNT, **kw):
    gen = torch.Generator().manual_seed(seed)
    return generate_robots(count, n, RandomRobotConfig(geometry=geometry, **kw), gen)


def geometric_relations(dh: torch.Tensor) -> torch.Tensor:
    """Relations ``(B, n-1)`` (0 intersect, 1 parallel, 2 skew) of consecutive home axes, vectorised."""
    n = dh.shape[-2]
    chain = dh_chain(*dh.unbind(-1))
    frames = chain_frames(chain, torch.zeros(dh.shape[:-1], dtype=torch.float64))[..., :n, :, :]
    p, z = frames[..., :3, 3], frames[..., :3, 2]
    cross = torch.linalg.cross(z[..., :-1, :], z[..., 1:, :], dim=-1)
    cn = cross.norm(dim=-1)
    parallel = cn < AXIS_TOL
    dist = ((p[..., 1:, :] - p[..., :-1, :]) * cross).sum(-1).abs() / cn.clamp(min=1e-300)
    skew = ~parallel & (dist > AXIS_TOL)
    out = torch.full(parallel.shape, INTERSECT, dtype=torch.int64)
    out[parallel] = PARALLEL
    out[skew] = SKEW
    return out


def max_run(mask: torch.Tensor) -> torch.Tensor:
    """Longest run of True along the last dimension, per row."""
    run = torch.zeros(mask.shape[:-1], dtype=torch.int64)
    best = torch.zeros_like(run)
    for i in range(mask.shape[-1]):
        run = torch.where(mask[..., i], run + 1, torch.zeros_like(run))
        best = torch.maximum(best, run)
    return best


def test_geometric_classifier_agrees_with_robot_axis_relations():
    # the vectorised classifier of this file against the library's per-robot one, both geometries
    for geometry in ("coplanar", "noncoplanar"):
        rr = robots(7, geometry, seed=11, count=40)
        geo = geometric_relations(rr.dh)
        names = {"intersect": INTERSECT, "parallel": PARALLEL, "skew": SKEW}
        for b in range(rr.dh.shape[0]):
            a, al, d, th = rr.dh[b].unbind(-1)
            robot = Robot.from_dh("r", a.tolist(), al.tolist(), d.tolist(), th.tolist())
            assert [names[x] for x in robot.axis_relations()] == geo[b].tolist()


@pytest.mark.parametrize("n", DOFS)
def test_coplanar_never_skew(n):
    rr = robots(n, "coplanar", seed=100 + n)
    geo = geometric_relations(rr.dh)
    assert not (geo == SKEW).any(), f"{int((geo == SKEW).any(-1).sum())} coplanar robots have skew axes"
    assert (rr.relation != SKEW).all()
    # the labels describe the geometry
    assert torch.equal(geo, rr.relation.to(torch.int64))
    # both kinds of coplanar relation occur (the generator is not degenerate)
    middle = geo[:, 1:]
    assert (middle == PARALLEL).any() and (middle == INTERSECT).any()


@pytest.mark.parametrize("n", DOFS)
def test_noncoplanar_skew_rate(n):
    p_skew = 0.5
    rr = robots(n, "noncoplanar", seed=200 + n, p_skew=p_skew)
    geo = geometric_relations(rr.dh)
    assert torch.equal(geo, rr.relation.to(torch.int64))
    # joint 1 intersects axis 2; only middle joints (relations 2..n-1) may be skew
    assert (geo[:, 0] == INTERSECT).all()
    middle = geo[:, 1:]
    trials = middle.numel()
    skews = int((middle == SKEW).sum())
    sigma = math.sqrt(trials * p_skew * (1 - p_skew))
    assert abs(skews - trials * p_skew) < 4 * sigma, f"{skews} skew pairs of {trials}, expected {trials * p_skew:.0f} ± {4 * sigma:.0f}"


@pytest.mark.parametrize("p_skew", [0.2, 0.8])
def test_noncoplanar_skew_rate_follows_parameter(p_skew):
    rr = robots(7, "noncoplanar", seed=31, p_skew=p_skew)
    middle = geometric_relations(rr.dh)[:, 1:]
    trials = middle.numel()
    skews = int((middle == SKEW).sum())
    sigma = math.sqrt(trials * p_skew * (1 - p_skew))
    assert abs(skews - trials * p_skew) < 4 * sigma


@pytest.mark.parametrize("n", DOFS)
def test_noncoplanar_p_skew_zero_gives_none(n):
    rr = robots(n, "noncoplanar", seed=300 + n, p_skew=0.0)
    geo = geometric_relations(rr.dh)
    assert not (geo == SKEW).any()
    assert (rr.relation != SKEW).all()


@pytest.mark.parametrize("geometry", ["coplanar", "noncoplanar"])
@pytest.mark.parametrize("n", DOFS)
def test_at_most_two_parallel_relations_in_a_row(geometry, n):
    # a high p_parallel makes long runs likely if the rule were missing
    rr = robots(n, geometry, seed=400 + n, p_parallel=0.9, p_skew=0.2)
    geo = geometric_relations(rr.dh)
    runs = max_run(geo == PARALLEL)
    assert int(runs.max()) <= 2
    if n >= 4:
        assert int(runs.max()) == 2  # runs of two do happen


def test_max_run_helper():
    m = torch.tensor([[True, True, False, True, True, True], [False, False, False, False, False, False]])
    assert max_run(m).tolist() == [3, 0]


@pytest.mark.parametrize("geometry", ["coplanar", "noncoplanar"])
@pytest.mark.parametrize("n", DOFS)
def test_first_and_last_joint_rules(geometry, n):
    cfg = RandomRobotConfig(geometry=geometry)
    rr = robots(n, geometry, seed=500 + n)
    a, alpha, d, theta = rr.dh.unbind(-1)
    # joint 1: alpha = ±pi/2, a = 0, d in [d_min, d_max], zero about half the time
    assert torch.allclose(alpha[:, 0].abs(), torch.full_like(alpha[:, 0], math.pi / 2), atol=1e-12, rtol=0)
    assert (alpha[:, 0] > 0).any() and (alpha[:, 0] < 0).any()
    assert (a[:, 0] == 0).all()
    assert (d[:, 0] >= cfg.d_min).all() and (d[:, 0] <= cfg.d_max).all() and (d[:, 0] < 0).any()
    zero_share = float((d[:, 0] == 0).double().mean())
    assert 0.4 < zero_share < 0.6
    # last joint: alpha = 0, a = 0 (last axis along the EE z, EE on the axis)
    assert (alpha[:, -1] == 0).all()
    assert (a[:, -1] == 0).all()
    assert (d[:, -1] >= cfg.d_min).all() and (d[:, -1] <= cfg.d_max).all()
    assert (theta == 0).all()
    # the EE z-axis is the last joint axis and the EE origin lies on it (home frames)
    chain = dh_chain(a, alpha, d, theta)
    F = chain_frames(chain, torch.zeros(rr.q.shape, dtype=torch.float64))
    z_last, p_last = F[:, n - 1, :3, 2], F[:, n - 1, :3, 3]
    z_ee, p_ee = F[:, n, :3, 2], F[:, n, :3, 3]
    assert torch.allclose(z_ee, z_last, atol=1e-12)
    off = torch.linalg.cross(p_ee - p_last, z_last, dim=-1).norm(dim=-1)
    assert float(off.max()) < 1e-12


@pytest.mark.parametrize("n", DOFS)
def test_middle_joint_dh_rules(n):
    cfg = RandomRobotConfig(geometry="noncoplanar")
    rr = robots(n, "noncoplanar", seed=600 + n)
    a, alpha, d, _ = rr.dh[:, 1:-1].unbind(-1)
    rel = rr.relation[:, 1:]
    inter, par, skew = rel == INTERSECT, rel == PARALLEL, rel == SKEW
    assert torch.allclose(alpha[inter].abs(), torch.full_like(alpha[inter], math.pi / 2), atol=1e-12, rtol=0)
    assert (a[inter] == 0).all()
    assert ((alpha[par] == 0) | (alpha[par] == math.pi)).all()
    assert (d[par] == 0).all() and (a[par].abs() <= cfg.a_max).all()
    assert (a[skew].abs() >= cfg.a_min_skew).all() and (a[skew].abs() <= cfg.a_max).all()
    assert (d[skew] >= cfg.d_min).all() and (d[skew] <= cfg.d_max).all()
    assert 0.4 < float((d[skew] == 0).double().mean()) < 0.6  # d = 0 allowed (the Panda's skew joints 4, 6)
    tw = alpha[skew].abs()
    assert (tw >= math.pi / 6).all() and (tw <= 5 * math.pi / 6).all()


@pytest.mark.parametrize("geometry", ["coplanar", "noncoplanar"])
def test_same_seed_same_robots_other_seed_different(geometry):
    r1 = robots(6, geometry, seed=7, count=300)
    r2 = robots(6, geometry, seed=7, count=300)
    r3 = robots(6, geometry, seed=8, count=300)
    for field in ("dh", "lower", "upper", "q", "relation"):
        assert torch.equal(getattr(r1, field), getattr(r2, field)), field
    assert not torch.equal(r1.dh, r3.dh)
    assert not torch.equal(r1.q, r3.q)


def test_generator_state_is_the_only_randomness():
    # the global RNG must not influence the result
    torch.manual_seed(1)
    r1 = robots(6, "noncoplanar", seed=9, count=100)
    torch.manual_seed(2)
    torch.rand(17)
    r2 = robots(6, "noncoplanar", seed=9, count=100)
    assert torch.equal(r1.dh, r2.dh) and torch.equal(r1.q, r2.q)


@pytest.mark.parametrize("geometry", ["coplanar", "noncoplanar"])
@pytest.mark.parametrize("n", DOFS)
def test_configurations_inside_pi_limits(geometry, n):
    rr = robots(n, geometry, seed=700 + n)
    assert rr.q.dtype == torch.float64 and rr.dh.dtype == torch.float64
    assert rr.q.shape == (COUNT, n) and rr.dh.shape == (COUNT, n, 4) and rr.relation.shape == (COUNT, n - 1)
    assert (rr.lower == -math.pi).all() and (rr.upper == math.pi).all()
    assert (rr.q >= -math.pi).all() and (rr.q <= math.pi).all()
    assert torch.isfinite(rr.dh).all()
    # uniform, the last joint included: every joint spreads over most of the range
    assert (rr.q.min(0).values < -3.0).all() and (rr.q.max(0).values > 3.0).all()
    assert float(rr.q[:, -1].std()) > 1.5


def test_bad_arguments():
    gen = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="geometry"):
        generate_robots(3, 6, RandomRobotConfig(geometry="banana"), gen)
    with pytest.raises(ValueError):
        generate_robots(3, 1, RandomRobotConfig(), gen)


def test_axis_relations_reference_cases():
    # sanity of the library helper used above on hand-made axes
    eye = torch.eye(4, dtype=torch.float64)
    shifted = eye.clone()
    shifted[0, 3] = 1.0  # parallel axis, offset in x
    tilted = eye.clone()
    tilted[:3, :3] = torch.tensor([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=torch.float64)  # z -> -y
    skew = tilted.clone()
    skew[0, 3] = 0.3
    assert axis_relations(torch.stack([eye, shifted])) == ["parallel"]
    assert axis_relations(torch.stack([eye, tilted])) == ["intersect"]
    assert axis_relations(torch.stack([eye, skew])) == ["skew"]


def test_every_catalog_arm_lies_inside_the_default_generator():
    """The default generator (widened: negative offsets, 0.8 m links, mixed geometry) can draw
    the geometry of every evaluation arm; the reference code's coplanar generator could not."""
    from ggik_core.robots.catalog import ARM_NAMES, arm_dh
    from ggik_core.robots.random_robots import support_violations

    for name in ARM_NAMES:
        assert support_violations(arm_dh(name), RandomRobotConfig()) == [], name
    old = RandomRobotConfig(geometry="coplanar", d_min=0.0, d_max=0.5, a_max=0.5)
    outside = {name for name in ARM_NAMES if support_violations(arm_dh(name), old)}
    assert outside == {"ur10", "lwa4d", "panda"}  # long links, negative offsets, skew axes


def test_generated_robots_lie_inside_their_support():
    from ggik_core.robots.random_robots import support_violations

    for geometry in ("coplanar", "noncoplanar", "mixed"):
        cfg = RandomRobotConfig(geometry=geometry)
        rr = generate_robots(200, 7, cfg, torch.Generator().manual_seed(11))
        bad = [v for k in range(200) for v in support_violations(rr.dh[k], cfg)]
        assert bad == [], (geometry, bad[:3])


def test_widened_ranges_are_drawn():
    rr = generate_robots(4000, 7, RandomRobotConfig(), torch.Generator().manual_seed(12))
    a, d = rr.dh[..., 0], rr.dh[..., 2]
    assert d.min() < -0.45 and d.max() > 0.75 and a.abs().max() > 0.75
    skewed = (rr.relation == SKEW).any(-1).double().mean()
    assert 0.3 < float(skewed) < 0.5  # mixed: half the robots may have skew pairs, most of those do
