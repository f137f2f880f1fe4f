"""Stage `train`: fit the GGIK CVAE on the graph shards.

One loop, nanoGPT style: batches of one DOF each (bucketed, shuffled by a seeded generator),
AdamW with a step-decay schedule, β warm-up, a validation split, a checkpoint after every epoch
(model, optimiser, scheduler, RNG states, history, typed config) and resumption from it.
Per-epoch losses go to ``metrics/train_loss.csv`` (DVC plots); the minima to
``metrics/train.json`` (DVC metrics); ``train.probes`` accuracy probes (raw samples on the
training robots, or on the five arms for random ones, in mm, against training minutes) to
``metrics/accuracy_time.csv`` (:mod:`pipeline.probe`).
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import time
from typing import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from ggik_core.data.batch import make_batch
from ggik_core.errors import TrainingError
from ggik_core.data.graph import ProblemGraphs
from ggik_core.data.io import sha256_file, torch_save, write_csv_rows, write_json
from ggik_core.model.cvae import GGIK
from ggik_core.model.config import ModelConfig
from ggik_core.model.files import load_model, pick_device, save_model  # noqa: F401 - re-exported
from ggik_core.runtime import set_threads
from ggik_core.data.shards import MANIFEST, load_graphs
from pipeline.params import Params, TrainParams
from pipeline.probe import Probe, probe_steps, write_probes
from pipeline.progress import progress, stderr

#: graphs per validation step (no gradients: large batches are cheaper, and the losses are per graph)
VAL_BATCH = 256

LOSS_COLUMNS = ["epoch", "lr", "beta", "train_rec", "train_kl", "train_total", "val_rec", "val_kl", "val_total", "minutes"]


class Dist:
    """The process group when launched by ``torchrun`` (``WORLD_SIZE > 1``); a no-op otherwise."""

    def __init__(self) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = pick_device()
        if self.world > 1:
            if self.device.type == "cuda":
                self.device = torch.device("cuda", self.local_rank)
                torch.cuda.set_device(self.device)
            if not dist.is_initialized():
                dist.init_process_group(backend="nccl" if self.device.type == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, plan: list) -> list:
        """This rank's batches: every rank gets the same number of steps."""
        if self.world == 1:
            return plan
        usable = len(plan) // self.world * self.world
        return plan[self.rank:usable:self.world]

    def sum(self, values: list[float]) -> list[float]:
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def deterministic_for(tp: TrainParams, device: torch.device) -> bool:
    """``train.deterministic``: ``auto`` is on for the CPU (free there) and off on CUDA (where
    deterministic kernels slow training; the dense layer path has no scatter either way)."""
    mode = tp.deterministic.lower()
    return device.type != "cuda" if mode == "auto" else mode == "true"


def set_determinism(tp: TrainParams, device: torch.device = torch.device("cpu")) -> None:
    torch.manual_seed(tp.seed)
    random.seed(tp.seed)
    np.random.seed(tp.seed)
    set_threads(tp.num_threads)
    if deterministic_for(tp, device):
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def split(graphs: dict[int, ProblemGraphs], val_fraction: float, seed: int) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]:
    """Seeded train/validation indices per DOF bucket."""
    gen = torch.Generator().manual_seed(seed)
    train, val = {}, {}
    for dof, g in graphs.items():
        n = g.q.shape[0]
        perm = torch.randperm(n, generator=gen)
        n_val = max(1, int(round(n * val_fraction))) if n > 1 else 0
        val[dof], train[dof] = perm[:n_val], perm[n_val:]
    return train, val


def batches(index: dict[int, torch.Tensor], batch_size: int, gen: torch.Generator | None) -> list[tuple[int, torch.Tensor]]:
    """Batches of one DOF each; shuffled within and across buckets when ``gen`` is given."""
    out = []
    for dof, idx in index.items():
        if gen is not None:
            idx = idx[torch.randperm(idx.numel(), generator=gen)]
        out.extend((dof, chunk) for chunk in idx.split(batch_size) if chunk.numel() > 0)
    if gen is not None:
        order = torch.randperm(len(out), generator=gen).tolist()
        out = [out[i] for i in order]
    return out


def _to(g: ProblemGraphs, device: torch.device) -> ProblemGraphs:
    return ProblemGraphs(dof=g.dof, pos=g.pos.to(device), home=g.home.to(device), known=g.known.to(device),
                         goal=g.goal.to(device), q=g.q.to(device))


def subset(g: ProblemGraphs, idx: torch.Tensor) -> ProblemGraphs:
    return ProblemGraphs(dof=g.dof, pos=g.pos[idx], home=g.home[idx], known=g.known[idx], goal=g.goal[idx], q=g.q[idx])


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over ``model``'s parameters, fused: one kernel updates every parameter (the same update
    up to rounding), on the CPU as on CUDA. The unfused update runs about ten small operations per
    parameter tensor: 1,260 per step for the default model, a third of all the operations of a
    step at the training batch (about 2.6 of 3.7 ms per step on one core)."""
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, fused=True)


def make_scheduler(opt: torch.optim.Optimizer, tp: TrainParams, steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    """``train.lr_schedule``: ``step`` multiplies the lr by ``lr_gamma`` every ``lr_step_epochs``
    (stepped per epoch); ``cosine`` warms up linearly over the first ``warmup_fraction`` of all
    steps, then follows a cosine down to zero at the last step (stepped per batch)."""
    if tp.lr_schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=tp.lr_step_epochs, gamma=tp.lr_gamma)
    total = max(1, tp.epochs * steps_per_epoch)
    warm = max(1, int(tp.warmup_fraction * total))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def beta_at(tp: TrainParams, epoch: float) -> float:
    """β at a (fractional) epoch: it rises from its start (epoch 0) to ``beta`` at
    ``beta_warmup_epochs``, linearly from 0, or geometrically from ``beta_start`` when that is
    positive (the latent is used from the first steps, and the KL is tightened as the decoder
    learns). Training updates it every step."""
    if tp.beta_warmup_epochs <= 0:
        return tp.beta
    return beta_ramp(tp.beta, tp.beta_start, min(1.0, epoch / tp.beta_warmup_epochs))


def beta_ramp(beta: float, beta_start: float, t: float) -> float:
    """β at progress ``t`` in [0, 1] of its warm-up: geometric from ``beta_start`` when that is
    positive, else linear from 0."""
    return beta_start * (beta / beta_start) ** t if beta_start > 0 else beta * t


def fingerprint(params: Params, manifest: Path) -> dict:
    """What a checkpoint must match to be resumed: time limits and threads may change, and so may
    the number of epochs under the step schedule (the cosine schedule spans all epochs, so a run
    with more epochs is another run). The code that computes a training step counts too
    (:func:`training_code_hash`): ``dvc repro`` reruns this stage when that code changes, and
    resuming a checkpoint that older code finished would hand back the older model."""
    return {"model": asdict(params.model), "train": fingerprint_train(params.train), "data": sha256_file(manifest),
            "code": training_code_hash()}


#: the modules whose source defines a training step: the model, the batches, this loop
TRAINING_CODE = ("ggik_core.model", "ggik_core.data", "pipeline.train")


def training_code_hash() -> str:
    """SHA-256 of the source files of :data:`TRAINING_CODE` (a package's every ``.py`` file), in a
    fixed order: equal on every machine that runs the same code."""
    import hashlib
    import importlib

    h = hashlib.sha256()
    for name in TRAINING_CODE:
        mod = importlib.import_module(name)
        files = sorted(Path(mod.__file__).parent.glob("*.py")) if hasattr(mod, "__path__") else [Path(mod.__file__)]
        for f in files:
            h.update(f"{name}/{f.name}\0".encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def fingerprint_train(train: TrainParams) -> dict:
    """The train settings a resumed run must share (:func:`fingerprint`)."""
    tp = asdict(train)
    for key in ("max_minutes", "num_threads", "log_every", "probes", "probe_goals") + (("epochs",) if train.lr_schedule == "step" else ()):
        tp.pop(key)
    return tp


def same_run(saved: dict | None, fp: dict) -> bool:
    """Whether a checkpoint's fingerprint matches this run's (:func:`fingerprint`). A model or
    train setting added after the checkpoint was written counts as its default, so checkpoints
    stay resumable by runs that leave the new setting alone; a checkpoint written before the code
    hash was recorded is taken as made by this code."""
    if not saved:
        return False
    model = {**asdict(ModelConfig()), **saved.get("model", {})}
    train = {**fingerprint_train(TrainParams()), **saved.get("train", {})}
    merged = {**saved, "model": model, "train": train}
    if "code" in fp:
        merged["code"] = saved.get("code", fp["code"])
    return merged == fp


def run_epoch(net: torch.nn.Module, graphs, plan, tp: TrainParams, beta: float | Callable[[float], float], env: Dist, opt=None,
              bar=None, task=None, step_sched=None, after_step: Callable[[int, float], None] | None = None) -> dict[str, float]:
    """One pass over ``plan`` (this rank's batches); returns the mean losses over all ranks.

    ``net`` is the model or its DistributedDataParallel wrapper; calling it gives the losses.
    ``beta`` is a number, or a function of the fraction of the epoch done (β per step).
    ``graphs`` live on the training device, so batches are built there. Losses are summed on the
    device and read back every ``tp.log_every`` steps (and at the end): no host sync per step.
    ``after_step(step, beta)`` is called after each training step (the accuracy probes).
    """
    training = opt is not None
    net.train(training)
    cfg = (net.module if isinstance(net, DistributedDataParallel) else net).cfg
    sums = torch.zeros(2, dtype=torch.float64, device=env.device)  # rec * n, kl * n
    seen = 0  # graphs so far (known on the host)
    autocast = precision_context(tp.precision, env.device)
    pending = 0
    # every batch's indices go to the device in one copy per epoch, not one (synchronising) copy per step
    on_device = torch.cat([i for _, i in plan]).to(env.device).split([i.numel() for _, i in plan]) if plan else ()
    for step, ((dof, _), idx) in enumerate(zip(plan, on_device), 1):
        b = make_batch(subset(graphs[dof], idx), cfg)
        beta_now = beta(step / len(plan)) if callable(beta) else beta
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
        if step % tp.log_every == 0 or step == len(plan):
            rec, kl = sums.tolist()  # the one host sync of the interval
            if training and not math.isfinite(rec + kl):
                raise TrainingError(f"training loss became NaN or infinite (dof {dof}, step {step}); lower train.lr (now {tp.lr})")
            if bar is not None:
                bar.update(task, advance=pending * env.world, info=f"rec {rec / max(seen, 1):.4f} kl {kl / max(seen, 1):.3f}")
            pending = 0
    rec_sum, kl_sum, n = env.sum([*sums.tolist(), float(seen)])
    n = max(n, 1)
    rec, kl = rec_sum / n, kl_sum / n
    return {"rec": rec, "kl": kl, "total": rec + tp.beta * kl}


def precision_context(precision: str, device: torch.device):
    """``train.precision``: bf16 autocast of the feature path (coordinates and losses stay fp32);
    ``tf32``: fp32 tensors with TF32 matrix products on CUDA (10-bit mantissa, fp32 range; the
    same as fp32 on the CPU); or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "tf32" and device.type == "cuda":
        return TF32Matmuls()
    return contextlib.nullcontext()


class TF32Matmuls:
    """A reusable context (entered every step) under which fp32 matrix products may use TF32."""

    def __enter__(self) -> None:
        self.before = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("high")

    def __exit__(self, *exc: object) -> None:
        torch.set_float32_matmul_precision(self.before)


def write_metrics(history: list[dict], metrics_dir: Path, complete: bool, extra: dict) -> None:
    # histories from before the timing column lack "minutes": written as 0
    write_csv_rows(metrics_dir / "train_loss.csv", history, LOSS_COLUMNS, missing=0.0)
    best = {}
    for split_name in ("train", "val"):
        best[split_name] = {f"{k}_min": min(r[f"{split_name}_{k}"] for r in history) for k in ("rec", "kl", "total")} if history else {}
    write_json(metrics_dir / "train.json", {**best, "epochs_done": len(history), "complete": complete, **extra})


def train(params: Params, graph_dir: Path, out_dir: Path, metrics_dir: Path) -> dict:
    """Train (or resume); under ``torchrun`` every process trains a share of each epoch's
    batches with DistributedDataParallel and rank 0 writes checkpoints and metrics."""
    env = Dist()
    try:
        return _train(params, graph_dir, out_dir, metrics_dir, env)
    finally:
        env.close()


def _train(params: Params, graph_dir: Path, out_dir: Path, metrics_dir: Path, env: Dist) -> dict:
    tp = params.train
    device = env.device
    set_determinism(tp, device)
    graphs = load_graphs(graph_dir)
    train_idx, val_idx = split(graphs, tp.val_fraction, tp.seed)
    graphs = {dof: _to(g, device) for dof, g in graphs.items()}  # device-resident: batches are built there
    cfg = params.model
    model = GGIK(cfg).to(device)
    model.use_kernels(tp.kernels)  # CPU only: the layers run torch ops on a GPU
    net: torch.nn.Module = model
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
    ckpt = _read_checkpoint(ckpt_path, env) if ckpt_path.exists() else None
    if ckpt is not None:
        if same_run(ckpt.get("fingerprint"), fp) and ckpt.get("world", 1) == env.world:
            model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            sched.load_state_dict(ckpt["scheduler"])
            torch.set_rng_state(ckpt["rng"]["torch"])
            if device.type == "cuda" and ckpt["rng"].get("cuda") is not None:
                torch.cuda.set_rng_state(ckpt["rng"]["cuda"])
            history = ckpt["history"]
            probes = ckpt.get("probes", [])
            start = ckpt["epoch"]
            if env.main:
                stderr.print(f"resuming from {ckpt_path} after epoch {start}")
        elif env.main:
            _set_aside(ckpt_path, ".other", "was made with other params, data, code or process count")
    n_train = sum(i.numel() for i in train_idx.values())
    if env.main:
        stderr.print(f"training {cfg.layer} on {device} x {env.world}: {n_train} train / {sum(i.numel() for i in val_idx.values())} val graphs, "
                     f"{sum(p.numel() for p in model.parameters())} parameters")
    probe = Probe.on_robots(tp.probe_goals, params.data.robots, set(graphs)) if env.main else None
    probe_at = probe_steps(tp.epochs * steps_per_epoch, tp.probes)
    probe_path = metrics_dir / "accuracy_time.csv"
    if probe is not None:  # the rows up to the checkpoint (none when starting afresh)
        write_probes(probes, probe.columns, probe_path)
    t0 = time.perf_counter()
    complete = start >= tp.epochs
    with progress() as bar:
        for epoch in range(start, tp.epochs):
            beta = beta_at(tp, epoch + 1)  # at the end of the epoch: validation and the log
            shuffle = torch.Generator().manual_seed(tp.seed * 7919 + epoch)
            task = bar.add_task(f"epoch {epoch + 1}/{tp.epochs}", total=n_train, info="") if env.main else None
            te = time.perf_counter()
            probe_s = [0.0]  # seconds spent probing in this epoch: not training time
            done_min = history[-1].get("minutes", 0.0) if history else 0.0

            def after_step(step: int, beta_now: float, e: int = epoch) -> None:
                g_step = e * steps_per_epoch + step
                if probe is None or g_step not in probe_at:
                    return
                tp0 = time.perf_counter()
                row = {"step": g_step, "graphs": g_step * tp.batch_size * env.world,
                       "minutes": done_min + (tp0 - te - probe_s[0]) / 60, "beta": beta_now, **probe(model)}
                probes.append(row)
                write_probes(probes, probe.columns, probe_path)
                probe_s[0] += time.perf_counter() - tp0

            tr = run_epoch(net, graphs, env.shard(batches(train_idx, tp.batch_size, shuffle)), tp,
                           lambda done, e=epoch: beta_at(tp, e + done), env, opt, bar if env.main else None, task,
                           sched if tp.lr_schedule == "cosine" else None, after_step)
            train_s = time.perf_counter() - te - probe_s[0]
            graphs_per_s = n_train / train_s
            with torch.no_grad():
                va = run_epoch(model, graphs, env.shard(batches(val_idx, max(tp.batch_size, VAL_BATCH), None)), tp, beta, env)
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
                rng = {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}
                torch_save(ckpt_path, {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                                       "epoch": epoch + 1, "history": history, "probes": probes, "rng": rng, "config": cfg.to_dict(),
                                       "fingerprint": fp, "world": env.world})
                save_model(model, cfg, history, out_dir / "model.pt", dofs=graphs.keys())
                write_metrics(history, metrics_dir, complete, {"layer": cfg.layer, "device": device.type, "processes": env.world})
            env.barrier()
            out_of_time = tp.max_minutes > 0 and (time.perf_counter() - t0) / 60 > tp.max_minutes
            if env.world > 1:
                out_of_time = env.sum([float(out_of_time)])[0] > 0
            if out_of_time and not complete:
                if env.main:
                    stderr.print(f"stopping after epoch {epoch + 1}: train.max_minutes={tp.max_minutes} reached; run again to resume")
                break
    if not history:
        raise TrainingError("no epoch was trained (train.epochs is 0)")
    if start >= tp.epochs and env.main:
        save_model(model, cfg, history, out_dir / "model.pt", dofs=graphs.keys())
        write_metrics(history, metrics_dir, True, {"layer": cfg.layer, "device": device.type, "processes": env.world})
    return {"epochs": len(history), "complete": complete, "model": model}


def _read_checkpoint(path: Path, env: Dist) -> dict | None:
    """The checkpoint, or None when it cannot be read (it is kept aside as ``*.corrupt``)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(ckpt, dict):
            raise TypeError(f"expected a dict, got {type(ckpt).__name__}")
        return ckpt
    except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is handled the same way
        if env.main:
            _set_aside(path, ".corrupt", f"is unreadable ({type(exc).__name__})")
        return None


def _set_aside(path: Path, suffix: str, why: str) -> None:
    """Moves the checkpoint ``path`` to ``path`` + ``suffix``, where the fresh run's first epoch
    cannot overwrite it, and says ``why`` on stderr."""
    aside = path.with_suffix(path.suffix + suffix)
    os.replace(path, aside)
    stderr.print(f"{path} {why}: moved it to {aside} and starting afresh")
