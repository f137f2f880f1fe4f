"""Thread picking: explicit > environment > free cores."""

from __future__ import annotations

import pytest

from ggik_core import runtime
from ggik_core.errors import GGIKError


def test_explicit_request_wins(monkeypatch):
    monkeypatch.setenv(runtime.ENV, "3")
    assert runtime.pick_threads(5) == 5


def test_environment_variable(monkeypatch):
    monkeypatch.setenv(runtime.ENV, "3")
    assert runtime.pick_threads() == 3
    monkeypatch.setenv(runtime.ENV, "three")
    with pytest.raises(GGIKError, match="GGIK_THREADS"):
        runtime.pick_threads()


def test_free_cores_leave_room_for_others(monkeypatch):
    monkeypatch.delenv(runtime.ENV, raising=False)
    monkeypatch.setattr(runtime, "available_cores", lambda: 2)
    monkeypatch.setattr(runtime, "busy_cores", lambda: 1)
    assert runtime.pick_threads() == 1
    monkeypatch.setattr(runtime, "busy_cores", lambda: 0)
    assert runtime.pick_threads() == 2
    monkeypatch.setattr(runtime, "busy_cores", lambda: 7)
    assert runtime.pick_threads() == 1


def test_busy_cores_reads_loadavg():
    assert runtime.busy_cores(samples=1) >= 0


def test_keep_freed_memory_stops_page_faults_on_reallocation():
    """After keep_freed_memory, a step's worth of large tensors allocated, freed and allocated again
    is served from memory the process already has: page faults stay near zero (glibc's default
    gives the freed heap top back and faults it in again, page by page). A fresh process, since the
    policy cannot be undone."""
    import subprocess
    import sys

    code = """
import resource, torch
from ggik_core.runtime import keep_freed_memory
assert keep_freed_memory()
def step():
    ts = [torch.empty(5 << 20, dtype=torch.uint8).fill_(1) for _ in range(40)]  # 200 MiB, freed at once
    del ts
for _ in range(3):  # the heap settles
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout.split()[-1]) < 500  # without it: about 100,000 (3 x 200 MiB in pages of 4 KiB)
