"""Model: the equivariant message-passing layers and the GGIK conditional VAE.

``equivariant`` holds what both layers share (helpers and the base :class:`EquivariantConv`),
``egnn`` the EGNN layer of GGIK, ``egat`` the attention layer of GGIK+, and ``cvae`` the
conditional VAE (partial and full encoders, mixture prior, decoder, loss) with its typed
:class:`~ggik_core.model.cvae.ModelConfig`.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["EGNNLayer", "EGATLayer"]

_LAYERS = {"EGNNLayer": "ggik_core.model.egnn", "EGATLayer": "ggik_core.model.egat"}


def __getattr__(name: str) -> Any:
    """The layers are imported on first use, so that reading a config (``model.config``, which
    ``pipeline.params`` needs) does not load torch_geometric."""
    if name in _LAYERS:
        return getattr(import_module(_LAYERS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
