"""Shared test setup."""

from __future__ import annotations

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
