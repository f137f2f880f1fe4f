"""The trained-model file: weights, the :class:`ModelConfig` and what the model was trained on.

A model file is a ``torch.save`` dict (loaded with ``weights_only=True``) with keys

* ``model``: the state dict (CPU tensors);
* ``config``: :meth:`ModelConfig.to_dict`;
* ``epochs``: epochs trained;
* ``dofs``: the sorted DOFs of the training robots (files written before this key existed lack
  it; :func:`load_model` then sets ``trained_dofs`` to ``None``, meaning "unknown").
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import torch

from ggik_core.data.io import load_checked, torch_save
from ggik_core.errors import DataError
from ggik_core.model.cvae import GGIK, ModelConfig


def pick_device() -> torch.device:
    """CUDA when present, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def save_model(model: GGIK, cfg: ModelConfig, history: list[dict], path: Path, dofs: Iterable[int] | None = None) -> None:
    """Write ``model`` atomically; ``dofs`` are the training robots' DOFs (stored sorted)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    record: dict = {"model": state, "config": cfg.to_dict(), "epochs": len(history)}
    if dofs is not None:
        record["dofs"] = sorted(int(d) for d in dofs)
    torch_save(path, record)


def load_model(path: Path, device: torch.device | None = None) -> GGIK:
    """The model in eval mode on ``device`` (default :func:`pick_device`), with an attribute
    ``trained_dofs``: a tuple of the training DOFs, or ``None`` for files that do not record them."""
    d = load_checked(path)
    try:
        model = GGIK(ModelConfig(**d["config"]))
        model.load_state_dict(d["model"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise DataError(f"{path} is not a ggik model: {exc}") from None
    dofs = d.get("dofs")
    model.trained_dofs = tuple(int(x) for x in dofs) if isinstance(dofs, (list, tuple)) and dofs else None
    model.eval()
    return model.to(device or pick_device())
