"""`ggik bench seeds`: do learned seeds pay for themselves? Model-seeded against random-seeded
refinement at equal wall time, on the five catalog arms.

For every arm and ``G`` seeded goals (forward kinematics of configurations uniform inside the
limits):

* **model-seeded**: the model samples a pool of seeds per goal, the LM refines it and keeps ``k``
  (its re-seeds are random); its wall time ``T`` counts sampling and refinement;
* **random-seeded**: fresh batches of ``G x k`` uniformly random seeds are refined, one after the
  other, until ``T`` is used up; exact and distinct solutions are summed over the batches;
* **one LM pass**: the same ``k`` model seeds and ``k`` random seeds, refined once without
  re-seeding — what the seeds are worth on their own, whatever they cost.

* **time to K distinct**: each kind of seed is refined in batches of ``k`` per goal, one after
  the other, until every goal has ``K`` distinct exact solutions in all (or ``limit_s`` passes):
  the wall time, and the share of goals that got there.

Exact: within 1 mm and 0.57° (0.01 rad) by float64 FK, inside the limits; distinct: some joint
differs by more than 0.1 rad (the issue's definition).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import Tensor

from ggik_core.errors import GGIKError
from ggik_core.robots.catalog import ARM_NAMES, load_arm
from ggik_core.solve.refine import RefineConfig
from ggik_core.solve.solver import Solutions, distinct_count, random_seeds, refine_solutions, sample_solutions

POS_TOL, ROT_TOL, DISTINCT_TOL = 1e-3, 0.01, 0.1


def exact_mask(sol: Solutions) -> Tensor:
    """``(G, k)``: candidates within 1 mm and 0.01 rad, inside the limits."""
    return (sol.pos_err < POS_TOL) & (sol.rot_err < ROT_TOL) & sol.within_limits


def exact_and_distinct(sol: Solutions) -> tuple[int, int]:
    ok = exact_mask(sol)
    return int(ok.sum()), int(distinct_count(sol.q, ok, DISTINCT_TOL).sum())


def time_to_k_distinct(batch, K: int, limit_s: float) -> tuple[float, float, int]:
    """Run ``batch(i) -> Solutions`` for i = 0, 1, ... until every goal has ``K`` distinct exact
    solutions over all batches so far, or ``limit_s`` has passed: (seconds, share of goals with
    ``K``, batches)."""
    qs, oks = [], []
    t0 = time.perf_counter()
    while True:
        sol = batch(len(qs))
        qs.append(sol.q)
        oks.append(exact_mask(sol))
        reached = distinct_count(torch.cat(qs, 1), torch.cat(oks, 1), DISTINCT_TOL) >= K
        if bool(reached.all()) or time.perf_counter() - t0 > limit_s:
            return time.perf_counter() - t0, float(reached.double().mean()), len(qs)


def bench_seeds(model_path: Path, goals: int, samples: int, arms: list[str] | None, seed: int, distinct_k: int = 4,
                limit_s: float = 10.0) -> list[dict]:
    """Print a Markdown table (one row per arm) and return its rows."""
    from ggik_core.runtime import set_threads
    from ggik_core.model.files import load_model

    if goals < 1 or samples < 1:
        raise GGIKError(f"need at least one goal and one sample (got {goals} goals, {samples} samples)")
    names = [a.lower() for a in (arms or list(ARM_NAMES))]
    for a in names:
        if a not in ARM_NAMES:
            raise GGIKError(f"unknown robot {a!r}: the catalog has {', '.join(ARM_NAMES)}")
    if not Path(model_path).exists():
        raise GGIKError(f"model {model_path} not found: run `dvc repro` first or pass --model")
    threads = set_threads()
    model = load_model(Path(model_path), torch.device("cpu"))
    cfg, single = RefineConfig(), RefineConfig(restart_after=0, extra_seeds=0)
    G, k = goals, samples
    rows = []
    for name in names:
        robot = load_arm(name)
        gen = torch.Generator().manual_seed(seed * 1009 + ARM_NAMES.index(name))
        goal = robot.fk(robot.sample_q(G, gen))
        sample_solutions(model, robot, goal[:1], k, generator=torch.Generator().manual_seed(seed), refine_cfg=cfg)  # warm-up
        model_sol = sample_solutions(model, robot, goal, k, generator=torch.Generator().manual_seed(seed + 1), refine_cfg=cfg)
        budget = model_sol.seconds
        m_exact, m_distinct = exact_and_distinct(model_sol)
        r_exact = r_distinct = batches = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < budget:
            sol = refine_solutions(robot, random_seeds(robot, G, k, seed * 7919 + batches), goal, RefineConfig(seed=batches))
            e, d = exact_and_distinct(sol)
            r_exact, r_distinct, batches = r_exact + e, r_distinct + d, batches + 1
        raw = sample_solutions(model, robot, goal, k, generator=torch.Generator().manual_seed(seed + 1))
        m_once, _ = exact_and_distinct(refine_solutions(robot, raw.q, goal, single))
        r_once, _ = exact_and_distinct(refine_solutions(robot, random_seeds(robot, G, k, seed + 3), goal, single))
        m_t, m_share, _ = time_to_k_distinct(lambda i: sample_solutions(
            model, robot, goal, k, generator=torch.Generator().manual_seed(seed + 11 + i), refine_cfg=RefineConfig(seed=i)), distinct_k, limit_s)
        r_t, r_share, _ = time_to_k_distinct(lambda i: refine_solutions(
            robot, random_seeds(robot, G, k, seed * 7919 + 101 + i), goal, RefineConfig(seed=i)), distinct_k, limit_s)
        rows.append({"arm": name, "wall_s": budget, "model_exact": m_exact, "model_distinct": m_distinct,
                     "random_batches": batches, "random_exact": r_exact, "random_distinct": r_distinct,
                     "model_seeds_one_pass": m_once / (G * k), "random_seeds_one_pass": r_once / (G * k),
                     "k_distinct": distinct_k, "model_time_to_k_s": m_t, "model_goals_with_k": m_share,
                     "random_time_to_k_s": r_t, "random_goals_with_k": r_share})
    print(f"# ggik bench seeds\n\n{G} goals x {k} candidates per arm, seed {seed}, cpu ({threads} threads), model {model_path}.\n")
    print("| arm | model-seeded wall s | model exact | model distinct | random batches in that time | random exact | random distinct "
          f"| one LM pass: model seeds exact | random seeds exact | time to {distinct_k} distinct per goal: model | random |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['arm']} | {r['wall_s']:.2f} | {r['model_exact']} | {r['model_distinct']} | {r['random_batches']} | {r['random_exact']} "
              f"| {r['random_distinct']} | {r['model_seeds_one_pass']:.1%} | {r['random_seeds_one_pass']:.1%} "
              f"| {r['model_time_to_k_s']:.2f} s ({r['model_goals_with_k']:.0%} of goals) | {r['random_time_to_k_s']:.2f} s ({r['random_goals_with_k']:.0%}) |")
    return rows
