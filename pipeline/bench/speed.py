"""Benchmarks: their output is the figure we quote; nothing here is asserted in tests."""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import torch
import typer

from ggik_core.data.graph import build_problem_graphs
from ggik_core.data.problems import random_problems, to_table, write_tables
from ggik_core.robots.random_robots import RandomRobotConfig
from ggik_core.data.shards import save_shard, write_manifest
from pipeline.bench.train_paths import COMPILED, bench_model, placement, profile_step, sync, timed, train_step, variant


def bench_data(n: int, dof: int, chunk: int, write: Path | None) -> None:
    cfg = RandomRobotConfig()
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    t_gen = t_build = t_write = 0.0
    tables, entries = [], []
    done = 0
    while done < n:
        b = min(chunk, n - done)
        t = time.perf_counter()
        batch = random_problems(b, dof, cfg, gen)
        table = to_table(batch, "coplanar", done)
        t_gen += time.perf_counter() - t
        t = time.perf_counter()
        g = build_problem_graphs(batch.chain, batch.q, batch.goal)
        t_build += time.perf_counter() - t
        if write is not None:
            t = time.perf_counter()
            tables.append(table)
            entries.append(save_shard(write / "graphs", f"dof{dof}_{len(entries):03d}.pt", g))
            t_write += time.perf_counter() - t
        done += b
    if write is not None:
        t = time.perf_counter()
        write_tables(write / "problems.parquet", tables)
        write_manifest(write / "graphs", entries, {"shard_size": chunk})
        t_write += time.perf_counter() - t
    total = time.perf_counter() - t0
    typer.echo(f"bench data: {n} problems, dof {dof}, threads {torch.get_num_threads()}")
    typer.echo(f"  generate (robots + FK + Arrow table): {t_gen:8.2f} s  {n / t_gen:12,.0f} problems/s")
    typer.echo(f"  build graphs (canonical frames, positions, masks): {t_build:8.2f} s  {n / t_build:12,.0f} problems/s")
    if write is not None:
        typer.echo(f"  write Parquet + shards: {t_write:8.2f} s")
    typer.echo(f"  total: {total:8.2f} s  {n / total:12,.0f} problems/s")


def bench_train(layers: list[str], paths: list[str], batch_size: int, steps: int, rounds: int, dof: int, hidden: int,
                depth: int, device: str | None, profile: bool = False) -> None:
    """Training graphs per second (forward + backward + AdamW step) at the given sizes, for each
    layer and each path, timed in interleaved rounds (the median round is reported). A path with
    ``procs=N`` runs data-parallel in ``N`` processes that share the threads, and one with
    ``malloc=default`` in a process of its own (:mod:`pipeline.bench.procs`); their rounds interleave
    with the others'. ``profile``: then each single-process path's step time by operator
    family (:func:`profile_step`), CPU only."""
    from ggik_core.data.batch import make_batch
    from ggik_core.data.graph import build_problem_graphs
    from ggik_core.model.config import ModelConfig
    from ggik_core.errors import GGIKError
    from contextlib import ExitStack

    from pipeline.bench.procs import ProcsJob, ProcsPath
    from ggik_core.model.files import pick_device

    procs = {v: placement(v) for v in paths}
    variants = {v: variant(place.spec) for v, place in procs.items()}
    dev = torch.device(device) if device else pick_device()
    for v, place in procs.items():
        if place.own_processes and dev.type != "cpu":
            raise GGIKError(f"--path {v!r} runs in processes of its own on the CPU cores; it needs --device cpu")
        if batch_size % place.procs:
            raise GGIKError(f"--path {v!r}: the batch of {batch_size} graphs does not split evenly over "
                            f"{place.procs} processes")
    gen = torch.Generator().manual_seed(0)
    pb = random_problems(batch_size, dof, RandomRobotConfig(), gen)
    graphs = build_problem_graphs(pb.chain, pb.q, pb.goal)
    threads = torch.get_num_threads()
    typer.echo(f"bench train: device {dev}, batch {batch_size} graphs of {dof} DOF, {rounds} rounds of {steps} steps, "
               f"threads {threads} (procs=N: N processes of {threads}/N threads, batch {batch_size}/N each, "
               "gradients all-reduced)")
    for layer in layers:
        base_cfg = ModelConfig(layer=layer, hidden=hidden, layers=depth)
        b = make_batch(graphs, base_cfg).to(dev)
        with ExitStack() as stack:
            runs, steps_of, n_params = {}, {}, {}
            for name in paths:
                path, overrides = variants[name]
                try:
                    model, opt = bench_model(dataclasses.replace(base_cfg, **overrides), path, dev)
                except ValueError as exc:  # e.g. symmetric messages on EGAT
                    typer.echo(f"  {layer:4s} {name:40s} not applicable: {exc}")
                    continue
                if procs[name].own_processes:  # its processes, started once and asked for each round
                    n = procs[name].procs
                    job = ProcsJob(layer, path, overrides, n, max(1, threads // n), hidden, depth, steps,
                                   keep_freed_memory=procs[name].malloc == "kept")
                    del model, opt
                    runner = stack.enter_context(ProcsPath(job, graphs))
                    runs[name], n_params[name] = runner.round, runner.params
                    continue
                n_params[name] = sum(p.numel() for p in model.parameters())
                steps_of[name] = step = train_step(model, opt, b, path)
                runs[name] = timed(step, steps, dev)
                t = time.perf_counter()
                for _ in range(2):  # warm-up (and compilation)
                    step()
                sync(dev)
                if path.endswith(COMPILED):
                    typer.echo(f"  {layer} {name}: compiled in {time.perf_counter() - t:.1f} s")
            names = [n for n in paths if n in runs]
            times: dict[str, list[float]] = {p: [] for p in names}
            for _ in range(rounds):  # interleaved: every path once per round
                for name in names:
                    times[name].append(runs[name]())
        if not names:
            continue
        base = sorted(times[names[0]])[len(times[names[0]]) // 2]
        for path in names:
            dt = sorted(times[path])[len(times[path]) // 2]
            typer.echo(f"  {layer:4s} {path:40s} {n_params[path]:9,} params: "
                       f"{dt * 1000:8.1f} ms/step  {batch_size / dt:10,.0f} graphs/s  x{base / dt:5.2f} vs {names[0]}")
        if profile and dev.type != "cpu":
            typer.echo(f"  {layer:4s} --profile splits CPU steps only; not profiled on {dev.type}")
        elif profile:
            for path in [n for n in names if n in steps_of]:
                fams = profile_step(steps_of[path], steps)
                total = sum(ms for ms, _ in fams.values())
                parts = "; ".join(f"{k} {ms:.1f} ms ({100 * ms / total:.0f} %{f', {g:.0f} GFLOP/s' if g else ''})"
                                  for k, (ms, g) in sorted(fams.items(), key=lambda kv: -kv[1][0]))
                typer.echo(f"  {layer:4s} {path:40s} profile, self time per step: {parts}")


def bench_sample(model_path: Path | None, robot_name: str, device: str | None, repeats: int,
                 shapes: list[tuple[int, int]] = ((1, 1), (1, 32), (1, 1000), (1000, 32)), overrides: dict | None = None) -> None:
    """Wall time of sampling (decode + joint recovery + FK check) for several batch shapes, one-pass
    and with two re-encoding passes, by today's eager float32 path and the fused inference kernels
    side by side (rounds interleaved: this machine's speed drifts). ``overrides``: time an untrained
    model of the default config with these changes instead of ``model_path``."""
    from ggik_core.robots.catalog import load_arm
    from ggik_core.model.config import REFERENCE_SIZES, ModelConfig
    from ggik_core.model.cvae import GGIK
    from ggik_core.model.fused.kernels import native_bf16
    from ggik_core.solve.solver import sample_solutions
    from ggik_core.model.files import load_model, pick_device

    dev = torch.device(device) if device else pick_device()
    if overrides is not None:
        model = GGIK(ModelConfig(**overrides)).to(dev).eval()
        what = f"untrained default-size model with {overrides} (timing does not depend on weights)"
    elif model_path is not None and model_path.exists():
        model = load_model(model_path, dev)
        what = f"{model_path} ({model.cfg.layer}, hidden {model.cfg.hidden}, {model.cfg.layers} layers)"
    else:
        model = GGIK(ModelConfig(**REFERENCE_SIZES)).to(dev).eval()
        what = "untrained model at reference size (egnn, hidden 128, 5 layers): timing does not depend on weights"
    robot = load_arm(robot_name)
    gen = torch.Generator().manual_seed(0)
    paths = ("eager", "fused")
    typer.echo(f"bench sample: {robot_name}, device {dev}, {what}; fused: "
               f"{'bf16' if native_bf16() else 'float32'} products; best of {repeats} interleaved rounds")
    for goals_n, k in shapes:
        goals = robot.fk(robot.sample_q(goals_n, gen))
        best: dict[tuple[str, int], float] = {}
        for path in paths:
            for passes in (0, 2):
                sample_solutions(model, robot, goals, k, passes=passes, kernels=path)  # warm-up (and compile)
        for _ in range(repeats):
            for path in paths:
                for passes in (0, 2):
                    t = sample_solutions(model, robot, goals, k, passes=passes, kernels=path).seconds
                    best[path, passes] = min(best.get((path, passes), math.inf), t)
        n = goals_n * k
        for path in paths:
            one, two = best[path, 0], best[path, 2]
            typer.echo(f"  {goals_n:5d} goal(s) x {k:5d}, {path:5s}: one-pass {one * 1000:9.1f} ms "
                       f"({n / one:10,.0f} solutions/s, {best['eager', 0] / one:4.2f}x eager); "
                       f"a re-encoding pass {(two - one) / 2 * 1000:9.1f} ms ({(two - one) / 2 / one:4.2f}x its one-pass)")


def bench_overfit(robot_name: str, problems: int, steps: int, lr: float, layer: str, overrides: list[str], precision: str,
                  seed: int, every: int, batch: int = 0, mean: bool = False) -> float:
    """Memorise ``problems`` goals of one arm through the posterior (beta = 0, one-cycle lr) and
    report the RMS error of the unknown nodes, decoded from the posterior mean, in mm (gate a of
    the learning issue). ``batch`` > 0: each step trains on ``batch`` of the problems (a fresh
    shuffle every pass over them) instead of all of them. ``mean``: train on the posterior mean
    instead of a reparameterised sample. Returns the final RMS in mm."""

    from ggik_core.data.batch import make_batch
    from ggik_core.data.graph import build_problem_graphs
    from ggik_core.model.config import ModelConfig
    from ggik_core.model.cvae import GGIK
    from ggik_core.robots.files import load_robot
    from pipeline.stages.train.batching import subset
    from pipeline.stages.train.precision import precision_context

    _, sets = variant(" ".join(["dense", *overrides]))
    cfg = dataclasses.replace(ModelConfig(layer=layer), **sets)
    robot = load_robot(robot_name)
    gen = torch.Generator().manual_seed(seed)
    q = robot.sample_q(problems, gen)
    chain = robot.chain.expand(problems, *robot.chain.shape)
    g = build_problem_graphs(chain, q, robot.fk(q))
    b = make_batch(g, cfg)
    batch = batch if 0 < batch < problems else problems
    order = torch.Generator().manual_seed(seed + 1)
    minibatches: list = []
    torch.manual_seed(seed)
    model = GGIK(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    autocast = precision_context(precision, torch.device("cpu"))
    unknown = ~b.anchor
    typer.echo(f"bench overfit: {problems} {robot_name} problems, {batch} per step, {layer}, {cfg}, {steps} steps, lr {lr}, "
               f"{precision}, {'posterior mean' if mean else 'posterior samples'}, threads {torch.get_num_threads()}")
    t0 = time.perf_counter()
    rms = float("nan")
    for step in range(1, steps + 1):
        if batch < problems and not minibatches:
            minibatches = list(torch.randperm(problems, generator=order).split(batch))
        mb = b if batch == problems else make_batch(subset(g, minibatches.pop()), cfg)
        with autocast:
            out = model(mb, 0.0, sample=not mean)
        opt.zero_grad(set_to_none=True)
        out["total"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        sched.step()
        if step % every == 0 or step == steps:
            with torch.no_grad():
                h_p, x_p = model.encode_partial(b)
                mu, _ = model.posterior(b, h_p)
                err = (model.decode(mu, h_p, x_p, b) - b.x).norm(dim=-1)[unknown] * 1000.0
            rms = float(err.pow(2).mean().sqrt())
            typer.echo(f"  step {step:6d}  {time.perf_counter() - t0:7.0f} s  rec {float(out['rec'].detach()):.6f}  "
                       f"unknown-node RMS {rms:8.2f} mm  median {float(err.median()):8.2f} mm  max {float(err.max()):8.2f} mm")
    return rms


def bench_startup(runs: int, robot: str, goal: str) -> dict:
    """Wall time of whole ``ggik solve`` processes (start to CSV on stdout, one goal x 4 random
    seeds, one thread), beside a bare ``import torch`` and a bare interpreter for scale; medians
    (and the best) of ``runs`` interleaved rounds."""
    import statistics
    import subprocess
    import sys

    cmds = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -c 'import torch'": [sys.executable, "-c", "import torch"],
        "ggik solve (1 goal x 4, random seeds)": [sys.executable, "-m", "pipeline", "solve", "--robot", robot, "--goal", goal,
                                                  "-k", "4", "--threads", "1"],
    }
    times: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(runs):
        for name, cmd in cmds.items():
            t = time.perf_counter()
            out = subprocess.run(cmd, capture_output=True, text=True)
            times[name].append(time.perf_counter() - t)
            if out.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} failed: {out.stderr.strip().splitlines()[-1:]}")
    typer.echo(f"bench startup: {runs} rounds, robot {robot}")
    result = {}
    for name, ts in times.items():
        result[name] = {"median_s": statistics.median(ts), "min_s": min(ts)}
        typer.echo(f"  {name:40s} median {statistics.median(ts):6.2f} s   best {min(ts):6.2f} s")
    return result


def bench_gap(model_path: Path, robot_name: str, goals: int, samples: int, seed: int, passes: int = 2,
              relax: float = 1.0) -> dict:
    """Where the raw samples' error comes from: the same goals decoded from the posterior mean (the
    latent that encodes the true configuration) and from the prior (what ``ggik solve --raw``
    does). End-effector errors go through joint recovery and FK, like every raw error we report."""
    from ggik_core.data.batch import make_batch
    from ggik_core.data.graph import build_problem_graphs, canonical_chain
    from ggik_core.model.files import load_model
    from ggik_core.robots.files import load_robot
    from ggik_core.robots.transforms import invert
    from ggik_core.solve.joints import recover_joints
    from ggik_core.solve.solver import errors, sample_solutions

    model = load_model(model_path, torch.device("cpu"))
    model.eval()
    robot = load_robot(robot_name)
    q = robot.sample_q(goals, torch.Generator().manual_seed(seed))
    T = robot.fk(q)
    b = make_batch(build_problem_graphs(robot.chain.expand(goals, *robot.chain.shape), q, T), model.cfg)
    chain_c, base = canonical_chain(robot.chain)
    with torch.no_grad():
        h_p, x_p = model.encode_partial(b)
        mu, _ = model.posterior(b, h_p)
        x_hat = model.decode(mu, h_p, x_p, b).double()
        node_mm = (x_hat - b.x.double()).norm(dim=-1)[~b.anchor] * 1000
        q_post = recover_joints(chain_c, x_hat.reshape(goals, -1, 3), invert(base) @ T)
        post_mm = errors(robot, q_post[:, None], T)[0][:, 0] * 1000
        raw = sample_solutions(model, robot, T, samples, generator=torch.Generator().manual_seed(seed + 1))
        again = sample_solutions(model, robot, T, samples, generator=torch.Generator().manual_seed(seed + 1), passes=passes,
                                  relax=relax)
    raw_mm, again_mm = raw.pos_err * 1000, again.pos_err * 1000
    res = {"posterior_mean_ee_median_mm": float(post_mm.median()), "posterior_mean_node_median_mm": float(node_mm.median()),
           "posterior_mean_node_rms_mm": float(node_mm.pow(2).mean().sqrt()), "prior_raw_median_mm": float(raw_mm.median()),
           "prior_best_of_k_median_mm": float(raw_mm.min(1).values.median()),
           "reencoded_median_mm": float(again_mm.median()), "reencoded_best_of_k_median_mm": float(again_mm.min(1).values.median())}
    typer.echo(f"bench gap: {model_path}, {robot_name}, {goals} goals, {samples} prior samples each")
    typer.echo(f"  posterior mean (true configuration encoded): end effector median {res['posterior_mean_ee_median_mm']:7.1f} mm; "
               f"unknown nodes median {res['posterior_mean_node_median_mm']:.1f} mm, RMS {res['posterior_mean_node_rms_mm']:.1f} mm")
    typer.echo(f"  prior samples (ggik solve --raw):            end effector median {res['prior_raw_median_mm']:7.1f} mm; "
               f"best of {samples} median {res['prior_best_of_k_median_mm']:.1f} mm")
    typer.echo(f"  the same samples re-encoded {passes} times{f' (relax {relax:g})' if relax != 1 else ''}:     end effector median {res['reencoded_median_mm']:7.1f} mm; "
               f"best of {samples} median {res['reencoded_best_of_k_median_mm']:.1f} mm")
    return res
