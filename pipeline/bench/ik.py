"""`ggik bench ik`: GGIK against numerical IK on the five catalog arms (and any URDF chains given
with ``--urdf PATH:BASE:EE``), on shared goals.

For every arm the goals are the forward kinematics of configurations drawn uniformly inside the
joint limits (seeded), and every method proposes ``samples`` candidates per goal:

* ``ggik``: the CVAE's samples, joint angles recovered in closed form, no refinement;
* ``ggik_refined``: the same samples (same generator seed) refined by batched Levenberg–Marquardt;
* ``random_refined``: the same Levenberg–Marquardt from seeds drawn uniformly inside the limits;
* ``pytorch_kinematics``: pytorch-kinematics' batched ``PseudoInverseIK`` from the same seeds;
* ``trac_ik``: TRAC-IK (the ``pytracik`` wheel), one goal and one seed per call.

Every candidate is checked the same way: forward kinematics of the catalog robot in float64
(:func:`ggik_core.solver.errors`). A candidate succeeds when its position and rotation errors are
below the threshold and it lies inside the joint limits. The baselines are optional imports: a
missing one is reported as ``not installed: <reason>``. Each method's figures are also given as a
ratio to the best baseline (the best of ``random_refined``, ``pytorch_kinematics`` and
``trac_ik`` per metric: highest rate / throughput / distinct count, lowest wall time).
"""

from __future__ import annotations

import platform
import time
from dataclasses import asdict
from pathlib import Path

import torch
from torch import Tensor

from ggik_core.robots.catalog import ARM_NAMES, load_arm
from ggik_core.errors import GGIKError
from ggik_core.data.io import write_json, write_text
from ggik_core.solve.refine import BACKENDS, RefineConfig
from ggik_core.robots.robot import Robot
from ggik_core.robots.transforms import wrap_angle
from ggik_core.solve.solver import Solutions, distinct_count, refine_solutions, sample_solutions
from pipeline.bench.baselines import (
    TRAC_IK_EPSILON, TRAC_IK_TIMEOUT_S, UrdfChain, availability, catalog_chain, import_pytorch_kinematics, import_trac_ik,
    package_version, pk_solver, run_pytorch_kinematics, run_trac_ik, trac_ik_solver,
)
from pipeline.bench.branches import AnalyticIK, coverage, import_eaik
from pipeline.bench.ik_scores import (
    BASELINES, DISTINCT_TOL, LATENCY_REPEATS, METHODS, THRESHOLDS, add_ratios, markdown, pooled, score, success_mask,
)
from pipeline.common.progress import progress, stderr

# --- the robots ----------------------------------------------------------------------------------
def parse_urdf_spec(spec: str) -> UrdfChain:
    """``PATH:BASE:EE`` (the chain from link BASE to link EE of the URDF file PATH)."""
    parts = spec.rsplit(":", 2)
    if len(parts) != 3 or not all(parts):
        raise GGIKError(f"--urdf {spec!r}: expected PATH:BASE_LINK:EE_LINK, e.g. ur5_robot.urdf:base_link:tool0")
    path = Path(parts[0])
    if not path.is_file():
        raise GGIKError(f"--urdf {spec!r}: file {path} not found")
    return UrdfChain(path, parts[1], parts[2])


def bench_robots(arms: list[str], urdfs: list[UrdfChain]) -> list[tuple[str, Robot, UrdfChain]]:
    """(label, robot, URDF chain) for the catalog arms, then the user's URDF chains (labelled by
    file stem, with a ``_urdf`` suffix where that is a catalog name or taken)."""
    from ggik_core.robots.files import load_robot

    out = [(a, load_arm(a), catalog_chain(a)) for a in arms]
    for u in urdfs:
        taken = {o[0] for o in out} | set(ARM_NAMES)  # a URDF is never mistaken for a catalog arm
        label = u.path.stem if u.path.stem not in taken else f"{u.path.stem}_urdf"
        label = next(f"{label}{i or ''}" for i in range(len(out) + 1) if f"{label}{i or ''}" not in taken)
        out.append((label, load_robot(str(u.path), u.base, u.ee), u))
    return out


def wrap_continuous(robot: Robot, sol: Solutions) -> Solutions:
    """Continuous joints folded into [-π, π), so that one solution is not counted twice as distinct."""
    if robot.continuous.any():
        sol.q = torch.where(robot.continuous.to(sol.q.device), wrap_angle(sol.q), sol.q)
    return sol


# --- the methods ---------------------------------------------------------------------------------
def arm_problem(robot: Robot, index: int, goals: int, k: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """Seeded goal configurations ``(G, n)``, goal poses ``(G, 4, 4)`` and random seeds ``(G, k, n)``."""
    gen = torch.Generator().manual_seed(seed * 1009 + index)
    q_goal = robot.sample_q(goals, gen)
    q_seed = robot.sample_q(goals * k, gen).reshape(goals, k, robot.dof)
    return q_goal, robot.fk(q_goal), q_seed


def run_ggik(model, robot: Robot, goals: Tensor, k: int, seed: int, refine_cfg: RefineConfig | None) -> Solutions:
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    return sample_solutions(model, robot, goals, k, generator=gen, refine_cfg=refine_cfg)


def run_random_refined(robot: Robot, goals: Tensor, q_seed: Tensor, cfg: RefineConfig, device: torch.device) -> Solutions:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    sol = refine_solutions(robot, q_seed.to(device), goals.to(device), cfg)
    sol.seconds = time.perf_counter() - t0  # refine_solutions' own timer starts after the copy
    return sol


def warm_latency_ms(robot: Robot, goal: Tensor, q_seed: Tensor, cfg: RefineConfig, device: torch.device) -> dict:
    """Median and best wall time (ms) of random-seed LM for one goal ``(1, 4, 4)`` and its seeds
    ``(1, k, n)``, after a warm-up call, with the success of the last call."""
    run_random_refined(robot, goal, q_seed, cfg, device)
    times, sol = [], None
    for _ in range(LATENCY_REPEATS):
        sol = run_random_refined(robot, goal, q_seed, cfg, device)
        times.append(sol.seconds * 1000.0)
    times.sort()
    ok = success_mask(sol, "1mm_1deg")
    return {"candidates": q_seed.shape[1], "median_ms": times[len(times) // 2], "min_ms": times[0],
            "successes": int(ok.sum()), "distinct": int(distinct_count(sol.q, ok, DISTINCT_TOL).sum())}


# --- the benchmark -------------------------------------------------------------------------------
def bench_ik(
    model_path: Path | None,
    goals_per_arm: int,
    samples: int,
    seed: int,
    out_dir: Path,
    max_iter: int,
    arms: list[str] | None,
    device: str | None,
    urdfs: list[str] | None = None,
    rounds: int = 1,
    backend: str = "auto",
) -> dict:
    """Run every method on every arm (and URDF chain ``PATH:BASE:EE`` in ``urdfs``), write
    ``out_dir/bench.json`` and ``out_dir/bench.md``. ``backend``: the LM's
    (:attr:`RefineConfig.backend`; "torch" is the batched loop the compiled kernel replaced)."""
    from ggik_core.model.files import load_model, pick_device

    if goals_per_arm < 1 or samples < 1:
        raise GGIKError(f"need at least one goal and one sample per arm (got {goals_per_arm} goals, {samples} samples)")
    if max_iter < 0:
        raise GGIKError(f"max_iter must be >= 0 (got {max_iter})")
    if rounds < 1:
        raise GGIKError(f"rounds must be >= 1 (got {rounds})")
    names = [a.lower() for a in (arms if arms is not None else list(ARM_NAMES))]
    for a in names:
        if a not in ARM_NAMES:
            raise GGIKError(f"unknown robot {a!r}: the catalog has {', '.join(ARM_NAMES)}")
    robots = bench_robots(names, [parse_urdf_spec(u) for u in urdfs or []])
    if not robots:
        raise GGIKError("no robots to bench: give --arm or --urdf")
    names = [r[0] for r in robots]
    from ggik_core.runtime import set_threads

    set_threads()  # the shared-machine thread policy (GGIK_THREADS, else the free cores)
    dev = torch.device(device) if device else pick_device()
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise GGIKError(f"device {device!r} asked for but CUDA is not available")
    if backend not in BACKENDS:
        raise GGIKError(f"--lm-backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    cfg = RefineConfig(max_iter=max_iter, backend=backend)
    k = samples

    model, model_note = None, ""
    if model_path is None:
        model_note = "skipped: no model given"
    else:
        model = load_model(Path(model_path), dev)
    EAIK, eaik_reason = availability(import_eaik)
    pk, pk_reason = availability(import_pytorch_kinematics)
    TracIK, tk_reason = availability(import_trac_ik)
    pk_reason = pk_reason and f"not installed: {pk_reason}"
    tk_reason = tk_reason and f"not installed: {tk_reason}"

    stderr.print(f"bench ik: {len(names)} arms x {goals_per_arm} goals x {k} samples, LM max_iter {max_iter} ({backend}), "
                 f"device {dev}, threads {torch.get_num_threads()}")
    results: dict[str, dict] = {}
    latency: dict[str, dict] = {}
    branches: dict[str, dict] = {}
    with progress() as bar:
        task = bar.add_task("bench ik", total=len(names) * len(METHODS), info="")
        for name, robot, urdf in robots:
            index = ARM_NAMES.index(name) if name in ARM_NAMES else len(ARM_NAMES) + names.index(name)
            _, goals, q_seed = arm_problem(robot, index, goals_per_arm, k, seed)
            row: dict[str, dict] = {}
            ggik_seed = seed * 1009 + index + 7
            analytic = None
            if robot.dof == 6 and name in ARM_NAMES:
                if EAIK is None:
                    branches[name] = {"status": f"not installed: {eaik_reason}"}
                else:
                    oracle = AnalyticIK(EAIK, robot)
                    analytic = oracle.solve(goals, DISTINCT_TOL)
                    branches[name] = {"status": "ok", "family": oracle.family, "exact_geometry": oracle.exact,
                                      "solutions_per_goal": sum(len(a) for a in analytic) / len(analytic), "coverage": {}}
            no_urdf = None if urdf.path.is_file() else f"unavailable: URDF {urdf.path} not found (set GGIK_SHARED)"

            def run(method: str, fn) -> None:
                bar.update(task, info=f"{name}: {METHODS[method]}")
                try:
                    # the seeded methods are timed `rounds` times and the median run is kept (the
                    # machine is noisy; TRAC-IK's timeout is wall time); the model's rows once
                    runs = [wrap_continuous(robot, fn()) for _ in range(1 if method in ("ggik", "ggik_refined") else rounds)]
                    sol = sorted(runs, key=lambda s: s.seconds)[len(runs) // 2]
                    row[method] = score(sol)
                    if analytic is not None:
                        ok = success_mask(sol, "1mm_1deg").cpu()
                        branches[name]["coverage"][method] = coverage(sol.q.cpu(), ok, analytic, DISTINCT_TOL)
                except GGIKError:
                    raise
                except Exception as exc:  # noqa: BLE001 - a baseline that breaks is reported, not fatal
                    if method not in BASELINES:
                        raise
                    row[method] = {"status": f"failed: {type(exc).__name__}: {exc}".replace("\n", " ")}
                e = row[method]
                if e["status"] == "ok":
                    t = e["1mm_1deg"]
                    stderr.print(f"  {name:6s} {METHODS[method]:40s} {t['success_candidates']:7.1%} of candidates, "
                                 f"{t['success_goals']:7.1%} of goals at 1 mm & 1°, {e['wall_s']:8.3f} s")
                else:
                    stderr.print(f"  {name:6s} {METHODS[method]:40s} {e['status']}")
                bar.advance(task)

            def skip(method: str, status: str) -> None:
                row[method] = {"status": status}
                stderr.print(f"  {name:6s} {METHODS[method]:40s} {status}")
                bar.advance(task)

            warm = goals[:1]
            if model is None:
                skip("ggik", model_note)
                skip("ggik_refined", model_note)
            else:
                run_ggik(model, robot, warm, k, ggik_seed, cfg)  # warm-up, untimed
                run("ggik", lambda: run_ggik(model, robot, goals, k, ggik_seed, None))
                run("ggik_refined", lambda: run_ggik(model, robot, goals, k, ggik_seed, cfg))
            run_random_refined(robot, warm, q_seed[:1], cfg, dev)  # warm-up
            run("random_refined", lambda: run_random_refined(robot, goals, q_seed, cfg, dev))
            if pk is None or no_urdf:
                skip("pytorch_kinematics", pk_reason or no_urdf)
            else:
                def do_pk():
                    solver = pk_solver(pk, robot, urdf, k, cfg, dev)
                    run_pytorch_kinematics(pk, solver, robot, warm, q_seed[:1], dev)  # warm-up
                    return run_pytorch_kinematics(pk, solver, robot, goals, q_seed, dev)

                run("pytorch_kinematics", do_pk)
            if TracIK is None or no_urdf:
                skip("trac_ik", tk_reason or no_urdf)
            else:
                run("trac_ik", lambda: run_trac_ik(trac_ik_solver(TracIK, robot, urdf), robot, goals, q_seed))
            add_ratios(row)
            results[name] = row
            latency[name] = warm_latency_ms(robot, goals[:1], q_seed[:1], cfg, dev)
            stderr.print(f"  {name:6s} warm latency, random seeds + LM, 1 goal x {k}: median {latency[name]['median_ms']:.1f} ms "
                         f"(best {latency[name]['min_ms']:.1f} ms), {latency[name]['successes']} exact, {latency[name]['distinct']} distinct")

    overall = {m: pooled([results[a][m] for a in names]) for m in METHODS}
    add_ratios(overall)
    pools = {}  # the catalog arms and the user's URDFs apart, when both ran
    groups = {"five arms": [a for a in names if a in ARM_NAMES], "URDFs": [a for a in names if a not in ARM_NAMES]}
    if all(groups.values()):
        for label, members in groups.items():
            pools[label] = {m: pooled([results[a][m] for a in members]) for m in METHODS}
            add_ratios(pools[label])
    report = {
        "config": {
            "model": None if model_path is None else str(model_path),
            "arms": names,
            "urdfs": {label: f"{u.path}:{u.base}:{u.ee}" for label, _, u in robots if label not in ARM_NAMES},
            "goals_per_arm": goals_per_arm,
            "samples": k,
            "seed": seed,
            "rounds": rounds,
            "device": str(dev),
            "threads": torch.get_num_threads(),
            "refine": asdict(cfg),
            "thresholds": {key: {"pos_m": p, "rot_rad": r} for key, (p, r) in THRESHOLDS.items()},
            "distinct_tol_rad": DISTINCT_TOL,
            "success": "position and rotation error below the threshold (catalog FK, float64) and inside the joint limits",
            "timing": "wall time of the solve plus the FK check of every candidate; setup (model load, chain build) and one warm-up call excluded",
            "trac_ik": {"timeout_s": TRAC_IK_TIMEOUT_S, "epsilon": TRAC_IK_EPSILON, "solve_type": "Speed", "device": "cpu"},
            "versions": {"torch": torch.__version__, "pytorch-kinematics": package_version("pytorch-kinematics"),
                         "pytracik": package_version("pytracik"), "python": platform.python_version()},
        },
        "methods": METHODS,
        "baselines": list(BASELINES),
        "results": results,
        "overall": overall,
        "pools": pools,
        "latency_1_goal": latency,
        "branch_coverage": branches,
    }
    out_dir = Path(out_dir)
    write_json(out_dir / "bench.json", report)
    table = markdown(report)
    write_text(out_dir / "bench.md", table)
    print(table, end="")
    return report
