"""`ggik bench train` across several processes: data-parallel training steps on the CPU cores.

Two processes of one thread each, their gradients averaged over a gloo process group after every
step, is how the gate presets train (``torchrun --nproc_per_node=2``); at the thin matrices of the
default sizes it gets more out of two cores than one process with two threads. This module times
that step: every process builds the same model, takes its own ``batch / procs`` of the batch's
graphs, and runs forward, backward (with the all-reduce) and the AdamW step; the rounds are timed
between barriers, so the time is that of the slowest process.

A path with ``malloc=default`` runs here too (one process unless ``procs=N``, no process group then):
a fresh process is the only way to time glibc's own allocator policy, since the benchmark's own
process keeps freed memory (:func:`ggik_core.runtime.keep_freed_memory`) and that cannot be undone.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from ggik_core.data.graph import ProblemGraphs
from ggik_core.errors import GGIKError

#: how long a process waits for the others to join the group (a peer that died before joining
#: would otherwise keep it waiting for gloo's default half hour)
JOIN_TIMEOUT = datetime.timedelta(minutes=2)


@dataclasses.dataclass(frozen=True)
class ProcsJob:
    """One variant to time in ``procs`` processes (all fields picklable for ``spawn``)."""

    layer: str
    path: str
    overrides: dict
    procs: int
    threads: int  # per process
    hidden: int
    depth: int
    steps: int
    rounds: int
    keep_freed_memory: bool = True  # the allocator policy of training (False: glibc's default)


def _worker(rank: int, job: ProcsJob, graphs: ProblemGraphs, store: str, result: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from ggik_core.data.batch import make_batch
    from ggik_core.model.config import ModelConfig
    from pipeline.bench import _train_step, bench_model
    from ggik_core.runtime import keep_freed_memory
    from pipeline.train import subset

    if job.keep_freed_memory:
        keep_freed_memory()
    torch.set_num_threads(job.threads)
    group = job.procs > 1
    if group:
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=job.procs,
                                timeout=JOIN_TIMEOUT)
    barrier = dist.barrier if group else (lambda: None)
    try:
        per = graphs.goal.shape[0] // job.procs  # the caller's graphs, this rank's share
        mine = subset(graphs, torch.arange(rank * per, (rank + 1) * per))
        cfg = dataclasses.replace(ModelConfig(layer=job.layer, hidden=job.hidden, layers=job.depth), **job.overrides)
        b = make_batch(mine, cfg.directions, home_init=cfg.home_init)
        model, opt = bench_model(cfg, job.path)
        step = _train_step(DistributedDataParallel(model) if group else model, opt, b, job.path)
        for _ in range(2):  # warm-up (and compilation)
            step()
        times = []
        for _ in range(job.rounds):
            barrier()
            t = time.perf_counter()
            for _ in range(job.steps):
                step()
            barrier()
            times.append((time.perf_counter() - t) / job.steps)
        if rank == 0:
            Path(result).write_text(json.dumps({"times": times, "params": sum(p.numel() for p in model.parameters())}))
    finally:
        if group:
            dist.destroy_process_group()


def time_in_processes(job: ProcsJob, graphs: ProblemGraphs) -> tuple[list[float], int]:
    """Seconds per step of each round, and the model's parameter count, for ``job`` on ``graphs``
    (the whole batch; each process takes its share)."""
    import torch.multiprocessing as mp
    from torch.multiprocessing.spawn import ProcessException

    with tempfile.TemporaryDirectory() as tmp:
        store, result = os.path.join(tmp, "store"), os.path.join(tmp, "result.json")
        try:
            mp.spawn(_worker, args=(job, graphs, store, result), nprocs=job.procs, join=True)
        except ProcessException as exc:  # one worker failed; spawn has stopped the others
            last = str(exc).strip().splitlines()[-1]
            malloc = "" if job.keep_freed_memory else " malloc=default"
            raise GGIKError(f"bench train: a worker of --path '{job.path} procs={job.procs}{malloc}' failed: {last} "
                            "(the workers are fresh Python processes: the package must import there)") from None
        out = json.loads(Path(result).read_text())
    return out["times"], out["params"]
