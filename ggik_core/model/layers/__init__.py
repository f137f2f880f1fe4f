"""Message-passing layers, one per file, each registered by name
(:mod:`~ggik_core.model.layers.registry`): :class:`EGNNLayer` (GGIK) and :class:`EGATLayer`
(GGIK+), on the shared base :class:`~ggik_core.model.layers.base.EquivariantConv`."""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["EGNNLayer", "EGATLayer"]

_CLASSES = {"EGNNLayer": "ggik_core.model.layers.egnn", "EGATLayer": "ggik_core.model.layers.egat"}


def __getattr__(name: str) -> Any:
    """The layer classes, imported on first use."""
    if name in _CLASSES:
        return getattr(import_module(_CLASSES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
