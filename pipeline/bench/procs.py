"""`ggik bench train` across several processes: data-parallel training steps on the CPU cores.

Two processes of one thread each, their gradients averaged over a gloo process group after every
step, is how the gate presets train (``torchrun --nproc_per_node=2``); at the thin matrices of the
default sizes it gets more out of two cores than one process with two threads. This module times
that step: every process builds the same model, takes its own ``batch / procs`` of the batch's
graphs, and runs forward, backward (with the all-reduce) and the AdamW step; the rounds are timed
between barriers, so the time is that of the slowest process. The processes stay up for the whole
benchmark and run one round at a time when asked (:class:`ProcsPath`), between the other paths'
rounds.

A path with ``malloc=default`` runs here too (one process unless ``procs=N``, no process group then):
a fresh process is the only way to time glibc's own allocator policy, since the benchmark's own
process keeps freed memory (:func:`ggik_core.runtime.keep_freed_memory`) and that cannot be undone.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import tempfile
import time

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
    steps: int  # per round
    keep_freed_memory: bool = True  # the allocator policy of training (False: glibc's default)


def _serve(rank: int, job: ProcsJob, graphs: ProblemGraphs, store: str, conn) -> None:
    """One process of ``job``: builds the model and its step, warms up, says ``("ready", params)``,
    then times ``job.steps`` steps for every ``"round"`` it is sent (``("time", seconds per step)``)
    until ``"stop"``. A failure is sent back as ``("error", its last line)``."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from ggik_core.data.batch import make_batch
    from ggik_core.model.config import ModelConfig
    from ggik_core.runtime import keep_freed_memory
    from pipeline.bench.train_paths import bench_model, train_step
    from pipeline.stages.train.batching import subset

    group = job.procs > 1
    try:
        if job.keep_freed_memory:
            keep_freed_memory()
        torch.set_num_threads(job.threads)
        if group:
            dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=job.procs,
                                    timeout=JOIN_TIMEOUT)
        barrier = dist.barrier if group else (lambda: None)
        per = graphs.goal.shape[0] // job.procs  # the caller's graphs, this rank's share
        mine = subset(graphs, torch.arange(rank * per, (rank + 1) * per))
        cfg = dataclasses.replace(ModelConfig(layer=job.layer, hidden=job.hidden, layers=job.depth), **job.overrides)
        b = make_batch(mine, cfg)
        model, opt = bench_model(cfg, job.path)
        step = train_step(DistributedDataParallel(model) if group else model, opt, b, job.path)
        for _ in range(2):  # warm-up (and compilation)
            step()
        conn.send(("ready", sum(p.numel() for p in model.parameters())))
        while _next(conn) == "round":
            barrier()
            t = time.perf_counter()
            for _ in range(job.steps):
                step()
            barrier()  # the slowest process's time
            conn.send(("time", (time.perf_counter() - t) / job.steps))
    except Exception as exc:  # noqa: BLE001 - reported to the parent as one line
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        try:
            conn.send(("error", lines[-1]))
        except OSError:  # the parent is gone
            pass
    finally:
        if group and dist.is_initialized():
            dist.destroy_process_group()


def _next(conn) -> str:
    """The parent's next command; "stop" when it has closed the pipe."""
    try:
        return conn.recv()
    except EOFError:
        return "stop"


class ProcsPath:
    """A ``--path`` timed in processes of its own (:class:`ProcsJob`), started once and asked for one
    round at a time, so that its rounds interleave with the in-process paths' like theirs do. Idle
    workers wait on a pipe and take no CPU. Use as a context manager."""

    def __init__(self, job: ProcsJob, graphs: ProblemGraphs) -> None:
        import torch.multiprocessing as mp

        self.job = job
        self._tmp = tempfile.TemporaryDirectory()
        ctx = mp.get_context("spawn")
        self._conns, self._procs = [], []
        try:
            for rank in range(job.procs):
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_serve, args=(rank, job, graphs, os.path.join(self._tmp.name, "store"), child),
                                   daemon=True)
                proc.start()
                child.close()
                self._conns.append(parent)
                self._procs.append(proc)
            #: the model's parameter count
            self.params = self._replies()[0]
        except BaseException:
            self.close()
            raise

    def round(self) -> float:
        """Seconds per step over ``job.steps`` steps (the slowest process's)."""
        for conn in self._conns:
            conn.send("round")
        return self._replies()[0]

    def _replies(self) -> list:
        out = []
        for conn in self._conns:
            try:
                kind, value = conn.recv()
            except EOFError:
                kind, value = "error", "the process ended without a reply"
            if kind == "error":
                self.close()
                malloc = "" if self.job.keep_freed_memory else " malloc=default"
                raise GGIKError(f"bench train: a worker of --path '{self.job.path} procs={self.job.procs}{malloc}' "
                                f"failed: {value} (the workers are fresh Python processes: the package must import "
                                "there)")
            out.append(value)
        return out

    def close(self) -> None:
        """Stops the workers (those that do not stop within seconds are terminated)."""
        for conn in self._conns:
            try:
                conn.send("stop")
            except (BrokenPipeError, OSError):
                pass
        for proc in self._procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
                proc.join()
        for conn in self._conns:
            conn.close()
        self._conns, self._procs = [], []
        self._tmp.cleanup()

    def __enter__(self) -> "ProcsPath":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
