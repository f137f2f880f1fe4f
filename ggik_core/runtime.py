"""Thread counts that stay fast on a shared machine.

Two torch processes that each take every core run about ten times slower than one (OpenMP workers
spin while they wait for each other). So every entry point (training, evaluation, ``solve``, the
Python API) asks :func:`pick_threads` once, before its first torch op:

1. an explicit request (a param, a CLI option) wins;
2. then the ``GGIK_THREADS`` environment variable;
3. otherwise the cores this process may run on, minus the ones other processes are using right now
   (runnable tasks from ``/proc/loadavg``, sampled a few times), at least one.
"""

from __future__ import annotations

import os
import time

ENV = "GGIK_THREADS"


def available_cores() -> int:
    """Cores this process may run on (its affinity mask), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def busy_cores(samples: int = 5, interval_s: float = 0.01) -> int:
    """Other tasks that keep running: the fewest runnable ones seen over a few samples of
    ``/proc/loadavg`` (its fourth field counts the reader itself), so that a short-lived process
    does not count but a busy one does. 0 where the file does not exist."""
    least: int | None = None
    for i in range(samples):
        try:
            with open("/proc/loadavg") as f:
                running = int(f.read().split()[3].split("/")[0])
        except (OSError, ValueError, IndexError):
            return 0
        least = running - 1 if least is None else min(least, running - 1)
        if i + 1 < samples:
            time.sleep(interval_s)
    return max(0, least or 0)


def pick_threads(requested: int = 0) -> int:
    """The intra-op thread count to use (see the module docstring for the rule)."""
    if requested > 0:
        return requested
    env = os.environ.get(ENV, "").strip()
    if env:
        try:
            value = int(env)
        except ValueError:
            from ggik_core.errors import GGIKError

            raise GGIKError(f"{ENV}={env!r} is not a whole number of threads") from None
        if value > 0:
            return value
    return max(1, available_cores() - busy_cores())


def set_threads(requested: int = 0) -> int:
    """Pick the thread count and apply it to torch; returns it."""
    import torch

    n = pick_threads(requested)
    torch.set_num_threads(n)
    return n
