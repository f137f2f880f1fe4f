"""Stage `train`: fit the GGIK CVAE on the graph shards.

One loop, nanoGPT style: batches of one DOF each (bucketed, shuffled by a seeded generator,
:mod:`~pipeline.stages.train.batching`), AdamW with a step-decay or cosine schedule and a β
warm-up (:mod:`~pipeline.stages.train.schedules`), a validation split, a checkpoint after every
epoch (model, optimiser, scheduler, RNG states, history, typed config) and resumption from it
(:mod:`~pipeline.stages.train.checkpoint`). With ``train.ema`` an average of the weights
(:mod:`~pipeline.stages.train.ema`) is probed and saved as ``model.pt``.
Per-epoch losses, learning rate, β and minutes, and ``train.probes`` accuracy probes (raw
samples on the training robots, or on the five arms for random ones, in mm, against training
minutes: :mod:`pipeline.stages.probe`) are logged with DVCLive in ``metrics/train/``
(:mod:`~pipeline.stages.train.logbook`).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from torch.nn.parallel import DistributedDataParallel

from ggik_core.data.batch import make_batch
from ggik_core.data.io import torch_save
from ggik_core.data.shards import MANIFEST, load_graphs
from ggik_core.errors import TrainingError
from ggik_core.model.cvae import GGIK
from ggik_core.model.files import save_model
from pipeline.common.progress import progress, stderr
from pipeline.stages.probe import Probe, probe_steps
from pipeline.stages.train.batching import batches, split, subset, to_device
from pipeline.stages.train.checkpoint import fingerprint, read_checkpoint, same_run, set_aside
from pipeline.stages.train.distributed import Dist
from pipeline.stages.train.ema import WeightAverage
from pipeline.stages.train.logbook import TrainLog
from pipeline.stages.train.params import TrainingParams, TrainParams
from pipeline.stages.train.precision import precision_context, set_determinism
from pipeline.stages.train.schedules import beta_at, make_optimizer, make_scheduler

@dataclass
class EpochPart:
    """How far an epoch stopped by ``train.max_minutes`` had gone: its training steps (of every
    rank), the loss sums and graphs of all ranks so far, and the training minutes of the run."""

    steps: int
    rec: float
    kl: float
    graphs: float
    minutes: float = 0.0


#: graphs per validation step (no gradients: large batches are cheaper, and the losses are per graph)
VAL_BATCH = 256


def run_epoch(net: torch.nn.Module, graphs, plan, tp: TrainParams, beta: float | Callable[[float], float], env: Dist, opt=None,
              bar=None, task=None, step_sched=None, after_step: Callable[[int, float], None] | None = None,
              part: EpochPart | None = None, stop: Callable[[], bool] | None = None) -> tuple[dict[str, float], EpochPart | None]:
    """One pass over ``plan`` (this rank's batches); returns the mean losses over all ranks, and
    where it stopped (``None`` when it ran to the end).

    ``net`` is the model or its DistributedDataParallel wrapper; calling it gives the losses.
    ``beta`` is a number, or a function of the fraction of the epoch done (β per step).
    ``graphs`` live on the training device, so batches are built there. Losses are summed on the
    device and read back every ``tp.log_every`` steps (and at the end): no host sync per step.
    ``after_step(step, beta)`` is called after each training step (the accuracy probes).
    ``part`` continues an epoch that stopped after ``part.steps`` batches, its losses included;
    ``stop()``, asked at every read of the losses, ends the pass there (``train.max_minutes``).
    """
    training = opt is not None
    net.train(training)
    cfg = (net.module if isinstance(net, DistributedDataParallel) else net).cfg
    sums = torch.zeros(2, dtype=torch.float64, device=env.device)  # rec * n, kl * n
    seen = 0  # graphs so far (known on the host)
    skip = part.steps if part is not None else 0
    # the losses of the part done before (all ranks' sums, counted once: by rank 0)
    carried = [part.rec, part.kl, part.graphs] if part is not None and env.main else [0.0, 0.0, 0.0]
    plan = list(plan)
    steps = len(plan)
    plan = plan[skip:]
    stopped = None
    if bar is not None and skip:
        bar.update(task, advance=int(part.graphs))
    autocast = precision_context(tp.precision, env.device)
    pending = 0
    # every batch's indices go to the device in one copy per epoch, not one (synchronising) copy per step
    on_device = torch.cat([i for _, i in plan]).to(env.device).split([i.numel() for _, i in plan]) if plan else ()
    for step, ((dof, _), idx) in enumerate(zip(plan, on_device), skip + 1):
        b = make_batch(subset(graphs[dof], idx), cfg)
        beta_now = beta(step / steps) if callable(beta) else beta
        with torch.set_grad_enabled(training), autocast:
            losses = net(b, beta_now, tp.anchor_weight, tp.node_weight, tp.free_bits, consistency=tp.consistency if training else 0.0)
        if training:
            opt.zero_grad(set_to_none=True)
            losses["total"].backward()
            if tp.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(net.parameters(), tp.grad_clip)
            opt.step()
            if step_sched is not None:
                step_sched.step()
            if after_step is not None:
                after_step(step, beta_now)
        n = idx.numel()
        sums += torch.stack([losses["rec"].detach().double() * n, losses["kl"].detach().double() * n])
        seen += n
        pending += n
        if step % tp.log_every == 0 or step == steps:
            rec, kl = sums.tolist()  # the one host sync of the interval
            if training and not math.isfinite(rec + kl):
                raise TrainingError(f"training loss became NaN or infinite (dof {dof}, step {step}); lower train.lr (now {tp.lr})")
            if bar is not None:
                bar.update(task, advance=pending * env.world, info=f"rec {rec / max(seen, 1):.4f} kl {kl / max(seen, 1):.3f}")
            pending = 0
            if training and stop is not None and step < steps and stop():
                stopped = step
                break
    rec_sum, kl_sum, n = env.sum([a + b for a, b in zip(carried, [*sums.tolist(), float(seen)])])
    if stopped is not None:
        return {}, EpochPart(stopped, rec_sum, kl_sum, n)
    n = max(n, 1)
    rec, kl = rec_sum / n, kl_sum / n
    return {"rec": rec, "kl": kl, "total": rec + tp.beta * kl}, None


def train(params: TrainingParams, graph_dir: Path, out_dir: Path, metrics_dir: Path) -> dict:
    """Train (or resume); under ``torchrun`` every process trains a share of each epoch's
    batches with DistributedDataParallel and rank 0 writes checkpoints and metrics."""
    env = Dist()
    try:
        return _train(params, graph_dir, out_dir, metrics_dir, env)
    finally:
        env.close()


def _train(params: TrainingParams, graph_dir: Path, out_dir: Path, metrics_dir: Path, env: Dist) -> dict:
    tp = params.train
    device = env.device
    set_determinism(tp, device)
    graphs = load_graphs(graph_dir)
    train_idx, val_idx = split(graphs, tp.val_fraction, tp.seed)
    graphs = {dof: to_device(g, device) for dof, g in graphs.items()}  # device-resident: batches are built there
    cfg = params.model
    model = GGIK(cfg).to(device)
    model.use_kernels(tp.kernels)  # CPU only: the layers run torch ops on a GPU
    net: torch.nn.Module = model
    # the weight average (rank 0 keeps it): the weights probed and saved as model.pt when it is on
    ema = WeightAverage(model, tp.ema, tp.kernels) if tp.ema > 0 and env.main else None
    shipped = ema.module if ema is not None else model
    if env.world > 1:
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    opt = make_optimizer(model, tp.lr, tp.weight_decay)
    steps_per_epoch = len(env.shard(batches(train_idx, tp.batch_size, None)))
    sched = make_scheduler(opt, tp, steps_per_epoch)
    ckpt_path = out_dir / "checkpoint.pt"
    fp = fingerprint(params, graph_dir / MANIFEST)
    history: list[dict] = []
    probes: list[dict] = []  # accuracy probes up to the last checkpoint
    start = 0
    part: EpochPart | None = None  # the part of epoch `start` trained before a mid-epoch stop
    ckpt = read_checkpoint(ckpt_path, env) if ckpt_path.exists() else None
    if ckpt is not None:
        if same_run(ckpt.get("fingerprint"), fp) and ckpt.get("world", 1) == env.world:
            model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            sched.load_state_dict(ckpt["scheduler"])
            if ema is not None:
                ema.load_state_dict(ckpt["ema"])
            torch.set_rng_state(ckpt["rng"]["torch"])
            if device.type == "cuda" and ckpt["rng"].get("cuda") is not None:
                torch.cuda.set_rng_state(ckpt["rng"]["cuda"])
            history = ckpt["history"]
            probes = ckpt.get("probes", [])
            start = ckpt["epoch"]
            part = EpochPart(**ckpt["partial"]) if ckpt.get("partial") else None
            if env.main:
                at = f"at step {part.steps} of epoch {start + 1}" if part is not None else f"after epoch {start}"
                stderr.print(f"resuming from {ckpt_path} {at}")
        elif env.main:
            set_aside(ckpt_path, ".other", "was made with other params, data, code or process count")
    n_train = sum(i.numel() for i in train_idx.values())
    if env.main:
        stderr.print(f"training {cfg.layer} on {device} x {env.world}: {n_train} train / {sum(i.numel() for i in val_idx.values())} val graphs, "
                     f"{sum(p.numel() for p in model.parameters())} parameters")
    probe = Probe.on_robots(tp.probe_goals, params.data.robots, set(graphs)) if env.main else None
    probe_at = probe_steps(tp.epochs * steps_per_epoch, tp.probes)
    # the record up to the checkpoint (none when starting afresh)
    log = TrainLog(metrics_dir, history, probes, {"layer": cfg.layer, "device": device.type, "processes": env.world}) if env.main else None
    t0 = time.perf_counter()
    complete = start >= tp.epochs
    stopped: EpochPart | None = None

    def out_of_time() -> bool:
        """Whether ``train.max_minutes`` has passed (on any rank)."""
        late = tp.max_minutes > 0 and (time.perf_counter() - t0) / 60 > tp.max_minutes
        return env.sum([float(late)])[0] > 0 if env.world > 1 else late

    def save(epochs_done: int, stopped: EpochPart | None = None) -> None:
        """The checkpoint (mid-epoch when ``stopped``) and ``model.pt`` (rank 0)."""
        rng = {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}
        torch_save(ckpt_path, {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                               "epoch": epochs_done, "history": history, "probes": probes, "rng": rng, "config": cfg.to_dict(),
                               "fingerprint": fp, "world": env.world,
                               **({"ema": ema.state_dict()} if ema is not None else {}),
                               **({"partial": asdict(stopped)} if stopped is not None else {})})
        save_model(shipped, cfg, history, out_dir / "model.pt", dofs=graphs.keys())

    with progress() as bar:
        for epoch in range(start, tp.epochs):
            beta = beta_at(tp, epoch + 1)  # at the end of the epoch: validation and the log
            shuffle = torch.Generator().manual_seed(tp.seed * 7919 + epoch)
            task = bar.add_task(f"epoch {epoch + 1}/{tp.epochs}", total=n_train, info="") if env.main else None
            te = time.perf_counter()
            probe_s = [0.0]  # seconds spent probing in this epoch: not training time
            done_min = part.minutes if part is not None else history[-1].get("minutes", 0.0) if history else 0.0
            skipped = part.steps if part is not None else 0

            def after_step(step: int, beta_now: float, e: int = epoch) -> None:
                if ema is not None:
                    ema.update()
                g_step = e * steps_per_epoch + step
                if probe is None or g_step not in probe_at:
                    return
                tp0 = time.perf_counter()
                row = {"step": g_step, "graphs": g_step * tp.batch_size * env.world,
                       "minutes": done_min + (tp0 - te - probe_s[0]) / 60, "beta": beta_now, **probe(shipped)}
                probes.append(row)
                log.probes(probes)
                probe_s[0] += time.perf_counter() - tp0

            plan = env.shard(batches(train_idx, tp.batch_size, shuffle))
            tr, stopped = run_epoch(net, graphs, plan, tp, lambda done, e=epoch: beta_at(tp, e + done), env, opt,
                                    bar if env.main else None, task, sched if tp.lr_schedule == "cosine" else None, after_step,
                                    part, out_of_time)
            part = None
            train_s = time.perf_counter() - te - probe_s[0]
            if stopped is not None:  # train.max_minutes reached mid-epoch: keep the place and stop
                stopped.minutes = done_min + train_s / 60
                if env.main:
                    save(epoch, stopped)
                    log.paused(len(history))
                    stderr.print(f"stopping at step {stopped.steps} of epoch {epoch + 1}: train.max_minutes={tp.max_minutes} "
                                 "reached; run again to resume")
                env.barrier()
                break
            graphs_per_s = n_train * (1 - skipped / max(len(plan), 1)) / train_s
            with torch.no_grad():
                va, _ = run_epoch(model, graphs, env.shard(batches(val_idx, max(tp.batch_size, VAL_BATCH), None)), tp, beta, env)
            lr = opt.param_groups[0]["lr"]
            if tp.lr_schedule == "step":
                sched.step()
            elapsed = done_min + (time.perf_counter() - te - probe_s[0]) / 60
            history.append({"epoch": epoch + 1, "lr": lr, "beta": beta, **{f"train_{k}": v for k, v in tr.items()},
                            **{f"val_{k}": v for k, v in va.items()}, "minutes": elapsed})
            complete = epoch + 1 >= tp.epochs
            if env.main:
                bar.update(task, info=f"val rec {va['rec']:.4f} kl {va['kl']:.3f} | {graphs_per_s:,.0f} graphs/s")
                if not stderr.is_terminal:  # a log line per epoch where no bar is drawn (CI, dvc logs)
                    stderr.print(f"epoch {epoch + 1}/{tp.epochs}: train rec {tr['rec']:.4f} kl {tr['kl']:.3f} | "
                                 f"val rec {va['rec']:.4f} kl {va['kl']:.3f} | beta {beta:.2f} | {graphs_per_s:,.0f} graphs/s")
                save(epoch + 1)
                log.epoch(history[-1], len(history), complete)
            env.barrier()
            if not complete and out_of_time():
                if env.main:
                    stderr.print(f"stopping after epoch {epoch + 1}: train.max_minutes={tp.max_minutes} reached; run again to resume")
                break
    if not history and stopped is None:
        raise TrainingError("no epoch was trained (train.epochs is 0)")
    if start >= tp.epochs and env.main:
        save_model(shipped, cfg, history, out_dir / "model.pt", dofs=graphs.keys())
        log.finish(len(history), True)
    if log is not None:
        log.close()
    return {"epochs": len(history), "complete": complete, "model": model}
