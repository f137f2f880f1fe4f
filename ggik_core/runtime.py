"""Thread counts that stay fast on a shared machine, and freed memory kept for reuse.

Two torch processes that each take every core run about ten times slower than one (OpenMP workers
spin while they wait for each other). So every entry point (training, evaluation, ``solve``, the
Python API) asks :func:`pick_threads` once, before its first torch op:

1. an explicit request (a param, a CLI option) wins;
2. then the ``GGIK_THREADS`` environment variable;
3. otherwise the cores this process may run on, minus the ones other processes are using right now
   (runnable tasks from ``/proc/loadavg``, sampled a few times), at least one.

The same entry points keep freed memory in the process (:func:`keep_freed_memory`): a training
step frees and reallocates tens of megabytes of edge tensors per layer, and glibc's default of
handing large blocks back to the kernel made every step fault them in again, page by page.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
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


#: glibc's ``mallopt`` parameters, and the values :func:`keep_freed_memory` gives them: blocks up to
#: 32 MiB (glibc's largest) come from the heap instead of their own mappings, and the heap gives
#: back free memory at its top only beyond 1 GiB
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD, TRIM_THRESHOLD = 32 << 20, 1 << 30


@functools.lru_cache(maxsize=None)
def keep_freed_memory() -> bool:
    """Keep freed memory in the process for the next allocation, on glibc (Linux): large blocks come
    from the heap, and the heap is not trimmed below 1 GiB of free space. glibc's default maps
    blocks over a moving threshold on their own and trims the heap's free top, so each training
    step faulted its edge tensors in again: about 10,000–25,000 page faults per step of 128
    graphs (``ggik bench train`` with a ``malloc=default`` path beside the same path measured the
    fused step 1.06x faster for EGNN and 1.20x for EGAT with freed memory kept). The process keeps
    its peak memory instead.
    Returns whether it applied (not on other C libraries or systems)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def set_threads(requested: int = 0) -> int:
    """Pick the thread count and apply it to torch, and keep freed memory (:func:`keep_freed_memory`);
    returns the thread count."""
    import torch

    keep_freed_memory()
    n = pick_threads(requested)
    torch.set_num_threads(n)
    return n
