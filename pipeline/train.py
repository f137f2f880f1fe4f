"""Stage `train`: fit the GGIK CVAE on the graph shards.

One loop, nanoGPT style: batches of one DOF each (bucketed, shuffled by a seeded generator),
AdamW with a step-decay schedule, β warm-up, a validation split, a checkpoint after every epoch
(model, optimiser, scheduler, RNG states, history, typed config) and resumption from it.
Per-epoch losses go to ``metrics/train_loss.csv`` (DVC plots); the minima to
``metrics/train.json`` (DVC metrics).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import random
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ggik_core.batch import make_batch
from ggik_core.graph import ProblemGraphs
from ggik_core.io import sha256_file, torch_save, write_json, write_text
from ggik_core.model import GGIK, ModelConfig
from ggik_core.shards import MANIFEST, load_graphs
from pipeline.params import ModelParams, Params, TrainParams
from pipeline.progress import progress, stderr

LOSS_COLUMNS = ["epoch", "lr", "beta", "train_rec", "train_kl", "train_total", "val_rec", "val_kl", "val_total"]


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def model_config(m: ModelParams) -> ModelConfig:
    return ModelConfig(layer=m.layer, hidden=m.hidden, layers=m.layers, latent=m.latent, components=m.components, message=m.message)


def set_determinism(tp: TrainParams) -> None:
    torch.manual_seed(tp.seed)
    random.seed(tp.seed)
    np.random.seed(tp.seed)
    if tp.num_threads > 0:
        torch.set_num_threads(tp.num_threads)
    if tp.deterministic:
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


def subset(g: ProblemGraphs, idx: torch.Tensor) -> ProblemGraphs:
    return ProblemGraphs(dof=g.dof, pos=g.pos[idx], home=g.home[idx], known=g.known[idx], goal=g.goal[idx], q=g.q[idx])


def beta_at(tp: TrainParams, epoch: int) -> float:
    """β rises linearly from 0 (epoch 0) to ``beta`` at ``beta_warmup_epochs``."""
    if tp.beta_warmup_epochs <= 0:
        return tp.beta
    return tp.beta * min(1.0, epoch / tp.beta_warmup_epochs)


def fingerprint(params: Params, manifest: Path) -> dict:
    """What a checkpoint must match to be resumed (epochs and time limits may change)."""
    tp = asdict(params.train)
    for key in ("epochs", "max_minutes", "num_threads"):
        tp.pop(key)
    return {"model": asdict(params.model), "train": tp, "data": sha256_file(manifest)}


def run_epoch(model: GGIK, graphs, plan, tp: TrainParams, beta: float, device, opt=None, bar=None, task=None) -> dict[str, float]:
    training = opt is not None
    model.train(training)
    sums = {"rec": 0.0, "kl": 0.0, "n": 0}
    for dof, idx in plan:
        b = make_batch(subset(graphs[dof], idx), model.cfg.directions).to(device)
        with torch.set_grad_enabled(training):
            losses = model.loss(b, beta, tp.anchor_weight, tp.node_weight)
        if training:
            if not torch.isfinite(losses.total):
                raise FloatingPointError("training loss became NaN or infinite; lower train.lr")
            opt.zero_grad(set_to_none=True)
            losses.total.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            opt.step()
        n = idx.numel()
        sums["rec"] += float(losses.rec.detach()) * n
        sums["kl"] += float(losses.kl.detach()) * n
        sums["n"] += n
        if bar is not None:
            bar.update(task, advance=n, info=f"rec {float(losses.rec):.4f} kl {float(losses.kl):.3f}")
    n = max(sums["n"], 1)
    rec, kl = sums["rec"] / n, sums["kl"] / n
    return {"rec": rec, "kl": kl, "total": rec + tp.beta * kl}


def write_metrics(history: list[dict], metrics_dir: Path, complete: bool, extra: dict) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=LOSS_COLUMNS, lineterminator="\n")
    w.writeheader()
    for row in history:
        w.writerow({k: (f"{row[k]:.6g}" if isinstance(row[k], float) else row[k]) for k in LOSS_COLUMNS})
    write_text(metrics_dir / "train_loss.csv", buf.getvalue())
    best = {}
    for split_name in ("train", "val"):
        best[split_name] = {f"{k}_min": min(r[f"{split_name}_{k}"] for r in history) for k in ("rec", "kl", "total")} if history else {}
    write_json(metrics_dir / "train.json", {**best, "epochs_done": len(history), "complete": complete, **extra})


def train(params: Params, graph_dir: Path, out_dir: Path, metrics_dir: Path) -> dict:
    tp = params.train
    set_determinism(tp)
    device = pick_device()
    graphs = load_graphs(graph_dir)
    train_idx, val_idx = split(graphs, tp.val_fraction, tp.seed)
    cfg = model_config(params.model)
    model = GGIK(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=tp.lr, weight_decay=tp.weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=tp.lr_step_epochs, gamma=tp.lr_gamma)
    ckpt_path = out_dir / "checkpoint.pt"
    fp = fingerprint(params, graph_dir / MANIFEST)
    history: list[dict] = []
    start = 0
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if ckpt.get("fingerprint") == fp:
            model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            sched.load_state_dict(ckpt["scheduler"])
            torch.set_rng_state(ckpt["rng"]["torch"])
            if device.type == "cuda" and ckpt["rng"].get("cuda") is not None:
                torch.cuda.set_rng_state(ckpt["rng"]["cuda"])
            history = ckpt["history"]
            start = ckpt["epoch"]
            stderr.print(f"resuming from {ckpt_path} after epoch {start}")
        else:
            stderr.print(f"{ckpt_path} was made with other params or data: starting afresh")
    n_train = sum(i.numel() for i in train_idx.values())
    stderr.print(f"training {cfg.layer} on {device}: {n_train} train / {sum(i.numel() for i in val_idx.values())} val graphs, "
                 f"{sum(p.numel() for p in model.parameters())} parameters")
    t0 = time.perf_counter()
    complete = start >= tp.epochs
    with progress() as bar:
        for epoch in range(start, tp.epochs):
            beta = beta_at(tp, epoch)
            shuffle = torch.Generator().manual_seed(tp.seed * 7919 + epoch)
            task = bar.add_task(f"epoch {epoch + 1}/{tp.epochs}", total=n_train, info="")
            te = time.perf_counter()
            tr = run_epoch(model, graphs, batches(train_idx, tp.batch_size, shuffle), tp, beta, device, opt, bar, task)
            graphs_per_s = n_train / (time.perf_counter() - te)
            with torch.no_grad():
                va = run_epoch(model, graphs, batches(val_idx, tp.batch_size, None), tp, beta, device)
            lr = opt.param_groups[0]["lr"]
            sched.step()
            history.append({"epoch": epoch + 1, "lr": lr, "beta": beta, **{f"train_{k}": v for k, v in tr.items()}, **{f"val_{k}": v for k, v in va.items()}})
            bar.update(task, info=f"val rec {va['rec']:.4f} kl {va['kl']:.3f} | {graphs_per_s:,.0f} graphs/s")
            rng = {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state() if device.type == "cuda" else None}
            torch_save(ckpt_path, {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                                   "epoch": epoch + 1, "history": history, "rng": rng, "config": cfg.to_dict(), "fingerprint": fp})
            complete = epoch + 1 >= tp.epochs
            save_model(model, cfg, history, out_dir / "model.pt")
            write_metrics(history, metrics_dir, complete, {"layer": cfg.layer, "device": device.type})
            if tp.max_minutes > 0 and (time.perf_counter() - t0) / 60 > tp.max_minutes and not complete:
                stderr.print(f"stopping after epoch {epoch + 1}: train.max_minutes={tp.max_minutes} reached; run again to resume")
                break
    if not history:
        raise FloatingPointError("no epoch was trained (train.epochs is 0)")
    if start >= tp.epochs:
        save_model(model, cfg, history, out_dir / "model.pt")
        write_metrics(history, metrics_dir, True, {"layer": cfg.layer, "device": device.type})
    return {"epochs": len(history), "complete": complete}


def save_model(model: GGIK, cfg: ModelConfig, history: list[dict], path: Path) -> None:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch_save(path, {"model": state, "config": cfg.to_dict(), "epochs": len(history)})


def load_model(path: Path, device: torch.device | None = None) -> GGIK:
    from ggik_core.errors import DataError
    from ggik_core.io import load_checked

    d = load_checked(path)
    try:
        model = GGIK(ModelConfig(**d["config"]))
        model.load_state_dict(d["model"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise DataError(f"{path} is not a ggik model: {exc}") from None
    model.eval()
    return model.to(device or pick_device())
