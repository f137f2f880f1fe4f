"""``ggik bench learn``: a learning lever at a fixed budget of graph passes, on one arm.

Trains a fresh model on ``n`` problems of one robot for ``steps`` steps of ``batch`` graphs
(warm-up then cosine lr, β per step), and every ``every`` steps prints the model's raw accuracy on
50 fixed goals × 32 samples (median position error and median best-of-32, in mm) and the RMS error
of the unknown nodes decoded from the posterior mean on 256 held-out problems. It is the quick,
in-memory form of a ``dvc exp run`` of the same settings, used for the ablation's pilots
(docs/ablation.md); its output is the figure, nothing is written.
"""

from __future__ import annotations

import dataclasses
import json
import time

import torch
import typer

HELD_OUT = 256  # problems kept out of training for the posterior error


def beta_schedule(beta: float, beta_start: float, warm: float, steps: int):
    """β at a step: linear from 0 over ``warm`` of the steps, or geometric from ``beta_start``
    reaching ``beta`` at ``warm`` of the steps when ``beta_start`` > 0."""

    from pipeline.stages.train.schedules import beta_ramp

    def at(step: int) -> float:
        return beta_ramp(beta, beta_start, min(1.0, step / max(1.0, warm * steps)))

    return at


def bench_learn(robot_name: str, n: int, steps: int, batch: int, lr: float, beta: float, beta_start: float, warm: float,
                overrides: list[str], every: int, seed: int = 0, consistency: float = 0.0) -> dict:
    """Run the pilot; returns the last report."""
    from ggik_core.data.batch import make_batch
    from ggik_core.data.graph import build_problem_graphs
    from ggik_core.data.problems import robot_problems
    from ggik_core.model.config import ModelConfig
    from ggik_core.model.cvae import GGIK
    from ggik_core.robots.files import load_robot
    from pipeline.bench.train_paths import variant
    from pipeline.stages.train.params import TrainParams
    from pipeline.stages.train.batching import subset
    from pipeline.stages.train.precision import precision_context
    from pipeline.stages.train.schedules import make_scheduler

    _, sets = variant(" ".join(["dense", *overrides]))
    cfg = dataclasses.replace(ModelConfig(), **sets)
    robot = load_robot(robot_name)
    pb = robot_problems(robot, n, torch.Generator().manual_seed(seed))
    g = build_problem_graphs(pb.chain, pb.q, pb.goal)
    torch.manual_seed(seed)
    model = GGIK(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    # the training stage's warm-up + cosine schedule, over this run's steps
    sched = make_scheduler(opt, TrainParams(lr_schedule="cosine", epochs=1, warmup_fraction=0.05), steps)
    beta_at = beta_schedule(beta, beta_start, warm, steps)
    autocast = precision_context("bf16", torch.device("cpu"))
    goals = robot.fk(robot.sample_q(50, torch.Generator().manual_seed(123)))
    held = make_batch(subset(g, torch.arange(n - HELD_OUT, n)), cfg)
    typer.echo(f"bench learn: {robot_name}, {n} problems, {steps} steps x {batch}, lr {lr}, beta {beta} "
               f"(from {beta_start or 0} over {warm:.0%} of the steps), consistency {consistency}, {cfg}, threads {torch.get_num_threads()}")
    shuffle = torch.Generator().manual_seed(seed + 1)
    perm, pos = torch.randperm(n - HELD_OUT, generator=shuffle), 0
    t0 = time.perf_counter()
    sums, count, report = torch.zeros(2, dtype=torch.float64), 0, {}
    for step in range(1, steps + 1):
        if pos + batch > n - HELD_OUT:
            perm, pos = torch.randperm(n - HELD_OUT, generator=shuffle), 0
        b = make_batch(subset(g, perm[pos:pos + batch]), cfg)
        pos += batch
        with autocast:
            out = model(b, beta_at(step), 1.0, 10.0, consistency=consistency)
        opt.zero_grad(set_to_none=True)
        out["total"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        sched.step()
        sums += torch.stack([out["rec"].detach().double(), out["kl"].detach().double()])
        count += 1
        if step % every == 0 or step == steps:
            report = {"step": step, "seconds": round(time.perf_counter() - t0), **_accuracy(model, robot, goals, held),
                      "rec": round(float(sums[0]) / count, 4), "kl": round(float(sums[1]) / count, 3)}
            sums.zero_()
            count = 0
            typer.echo(json.dumps(report))
    return report


@torch.no_grad()
def _accuracy(model, robot, goals, held) -> dict:
    from ggik_core.solve.solver import sample_solutions

    model.eval()
    s = sample_solutions(model, robot, goals, 32, generator=torch.Generator().manual_seed(5))
    pos_mm = s.pos_err.reshape(goals.shape[0], 32) * 1000
    h_p, x_p = model.encode_partial(held)
    mu, _ = model.posterior(held, h_p)
    err = (model.decode(mu, h_p, x_p, held) - held.x).norm(dim=-1)[~held.anchor] * 1000
    model.train()
    return {"raw_median_mm": round(float(pos_mm.median()), 1), "best_of_32_mm": round(float(pos_mm.min(1).values.median()), 1),
            "posterior_rms_mm": round(float(err.pow(2).mean().sqrt()), 1)}
