"""Shared by the stage tests."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
import torch

from pipeline.stages.data import build_graphs, generate
from pipeline.stages.data_params import DataParams


@pytest.fixture(autouse=True)
def _undo_determinism():
    """train() switches deterministic algorithms on for the process; switch them off afterwards."""
    yield
    torch.use_deterministic_algorithms(False)


@pytest.fixture(scope="module")
def make_graphs(tmp_path_factory) -> Callable[[DataParams], Path]:
    """Problems and graph shards of ``data`` params in a fresh folder; returns the graphs folder."""
    def make(data: DataParams) -> Path:
        root = tmp_path_factory.mktemp("graphs")
        generate(data, root / "problems.parquet")
        build_graphs(root / "problems.parquet", root / "graphs", 1000)
        return root / "graphs"
    return make
