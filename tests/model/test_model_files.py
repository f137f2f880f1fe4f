"""The model file: round trip, the recorded training DOFs, and files written before they were."""

from __future__ import annotations

import pytest
import torch

from ggik_core.data.io import torch_save
from ggik_core.errors import DataError
from ggik_core.model.cvae import GGIK, ModelConfig
from ggik_core.model.files import load_model, save_model

CFG = ModelConfig(hidden=16, layers=2, latent=4, components=3, message=16)


def test_round_trip_keeps_weights_config_and_dofs(tmp_path):
    torch.manual_seed(0)
    m = GGIK(CFG)
    save_model(m, CFG, [{}, {}], tmp_path / "m.pt", dofs={7, 6})
    back = load_model(tmp_path / "m.pt", torch.device("cpu"))
    assert back.trained_dofs == (6, 7) and back.cfg == CFG and not back.training
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), back.state_dict().values()))
    assert torch.load(tmp_path / "m.pt", weights_only=True)["epochs"] == 2


def test_an_older_file_without_dofs_loads_with_unknown_dofs(tmp_path):
    m = GGIK(CFG)
    torch_save(tmp_path / "old.pt", {"model": m.state_dict(), "config": CFG.to_dict(), "epochs": 1})
    assert load_model(tmp_path / "old.pt", torch.device("cpu")).trained_dofs is None


def test_not_a_model(tmp_path):
    torch_save(tmp_path / "x.pt", {"weights": {}})
    with pytest.raises(DataError, match="is not a ggik model"):
        load_model(tmp_path / "x.pt")
