r"""The layer registry: the one place where a message-passing layer type becomes a ``model.layer``
choice.

A layer is a :class:`~ggik_core.model.layers.base.EquivariantConv` subclass in a file of its own,
decorated with :func:`register_layer`; that declares

* its **name**: the value of ``model.layer`` in ``params.yaml`` and in every checkpoint;
* its **edge features**: names from :data:`~ggik_core.data.edges.EDGE_FEATURES`, in the order of the
  columns of :math:`\mathbf{a}_{ij}` (:class:`~ggik_core.data.edges.EdgeSpec`);
* optionally, its **fused implementation**: an object with ``mismatch(layer) -> str | None`` (why
  it cannot run this layer, ``None`` when it can) and ``bind(layer)`` (a callable
  ``(h, x, e) -> (h', x')`` for the dense path on CPU), e.g.
  :data:`~ggik_core.model.fused.edges.ALPHA_WEIGHTED`.

The CVAE, :class:`~ggik_core.model.config.ModelConfig`'s checks, the params and the CLI read this
table. :func:`discover` imports every module of :mod:`ggik_core.model.layers`, so a layer file
placed there registers when :mod:`ggik_core.model.config` is imported; a layer defined elsewhere
registers when its module is imported.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Any, Callable, Protocol, TypeVar

from ggik_core.data.edges import EdgeSpec


class FusedImplementation(Protocol):
    """What a layer's fused implementation offers (:mod:`ggik_core.model.fused.edges`)."""

    def mismatch(self, layer: Any) -> str | None: ...

    def bind(self, layer: Any) -> Callable: ...


@dataclass(frozen=True)
class LayerEntry:
    """One registered layer type."""

    name: str
    cls: type
    edges: EdgeSpec
    fused: FusedImplementation | None = None


_REGISTRY: dict[str, LayerEntry] = {}

L = TypeVar("L", bound=type)


def register_layer(name: str, *, edge_features: tuple[str, ...],
                   fused: FusedImplementation | None = None) -> Callable[[L], L]:
    """Class decorator: registers the layer class under ``name`` with its edge features and
    optional fused implementation, and sets ``cls.layer_name``. A name is registered once."""
    edges = EdgeSpec(tuple(edge_features))  # checks the names

    def decorate(cls: L) -> L:
        if name in _REGISTRY and _REGISTRY[name].cls is not cls:
            raise ValueError(f"layer {name!r} is registered already (by {_REGISTRY[name].cls.__name__})")
        _REGISTRY[name] = LayerEntry(name, cls, edges, fused)
        cls.layer_name = name
        return cls

    return decorate


#: the built-in layers, listed first (in this order) whatever order their modules were imported in
BUILTIN_LAYERS = ("egnn", "egat")


def layer_names() -> tuple[str, ...]:
    """The registered layer names: the built-ins (:data:`BUILTIN_LAYERS`), then the others by name."""
    return tuple(sorted(_REGISTRY, key=lambda n: (BUILTIN_LAYERS.index(n) if n in BUILTIN_LAYERS else len(BUILTIN_LAYERS), n)))


def layer_entry(name: str) -> LayerEntry:
    """The entry of ``name``; ``ValueError`` naming the registered layers otherwise."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown layer {name!r} ({' or '.join(layer_names())})")
    return _REGISTRY[name]


def discover() -> None:
    """Import every module of the :mod:`ggik_core.model.layers` package (each layer file
    registers its layer on import)."""
    import ggik_core.model.layers as package

    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{info.name}")
