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
