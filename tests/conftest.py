"""Shared test setup."""

from __future__ import annotations

import os

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tests use tiny tensors: one intra-op thread is faster and immune to a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pytest_collection_modifyitems(config, items):
    """Tests marked ``run_first`` (the long memorisation runs) go first, so that under
    pytest-xdist's work stealing one worker runs them while the other takes the rest of the suite."""
    items.sort(key=lambda item: 0 if item.get_closest_marker("run_first") else 1)


#: what the skip reasons of the tests that need ``<shared>/reference/urdf`` say
SHARED_SKIP = "reference URDF"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def fail_missing_shared(report) -> None:
    """Under ``CI=true`` a test (or module) skipped for want of the reference URDFs fails instead:
    CI must have them."""
    if in_ci() and report.skipped and SHARED_SKIP in str(report.longrepr):
        report.outcome = "failed"
        report.longrepr = f"CI=true but the reference URDFs are missing: {report.longrepr}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    fail_missing_shared(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    fail_missing_shared(outcome.get_result())
