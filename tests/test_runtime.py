"""Thread picking: explicit > environment > free cores."""

from __future__ import annotations

import io
import time
from pathlib import Path

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


def fake_loadavg(monkeypatch, runnable: list[int]) -> list[str]:
    """``/proc/loadavg`` as read by :func:`runtime.busy_cores`, one ``runnable`` count per read."""
    reads = iter(runnable)
    opened: list[str] = []

    def fake_open(path, *args, **kwargs):
        opened.append(path)
        return io.StringIO(f"0.52 0.58 0.59 {next(reads)}/467 12345\n")

    monkeypatch.setattr(runtime, "open", fake_open, raising=False)
    return opened


def test_busy_cores_counts_the_fewest_runnable_tasks_less_the_reader(monkeypatch):
    opened = fake_loadavg(monkeypatch, [5, 3, 4])
    assert runtime.busy_cores(samples=3, interval_s=0) == 2  # a short-lived task does not count
    assert opened == ["/proc/loadavg"] * 3
    fake_loadavg(monkeypatch, [1])
    assert runtime.busy_cores(samples=1) == 0  # the reader alone
    fake_loadavg(monkeypatch, [9, 9])
    assert runtime.busy_cores(samples=2, interval_s=0) == 8


def test_busy_cores_is_zero_without_a_readable_loadavg(monkeypatch):
    def missing(path, *args, **kwargs):
        raise FileNotFoundError(path)

    monkeypatch.setattr(runtime, "open", missing, raising=False)
    assert runtime.busy_cores(samples=2, interval_s=0) == 0
    monkeypatch.setattr(runtime, "open", lambda *a, **k: io.StringIO("garbage\n"), raising=False)
    assert runtime.busy_cores(samples=2, interval_s=0) == 0


@pytest.mark.skipif(not Path("/proc/loadavg").is_file(), reason="no /proc/loadavg here")
def test_busy_cores_sees_a_spinning_process():
    """The real file: a process that spins all along is counted (others can only add to it)."""
    import subprocess
    import sys

    spinner = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 20: pass"])
    try:
        time.sleep(0.3)
        assert runtime.busy_cores(samples=5, interval_s=0.02) >= 1
    finally:
        spinner.kill()
        spinner.wait()


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
