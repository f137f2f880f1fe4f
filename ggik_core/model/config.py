"""The typed model config: the ``model`` section of ``params.yaml`` and of every checkpoint.

It owns the model's defaults (``params.yaml`` is checked against them by a test), its choices
(:func:`choices`: the registered layers and :data:`CHOICES`) and its cross-field rules
(:meth:`ModelConfig.check`); :data:`REFERENCE_SIZES` are the GGIK reference code's sizes, used by
the GPU preset and ``ggik bench``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ggik_core.data.edges import EdgeSpec
from ggik_core.data.graph import NODE_FEATURES
from ggik_core.model.layers import egnn, egat  # noqa: F401 - the built-in layers register on import
from ggik_core.model.layers.registry import discover, layer_entry, layer_names

#: how the layers run on a CPU: "fused" (their registered fused kernels where the structure matches)
#: or "eager" (torch operations); training (``train.kernels``), sampling (``eval.kernels``) and
#: :meth:`~ggik_core.model.cvae.GGIK.use_kernels` take these
KERNELS = ("fused", "eager")

discover()  # and so does any other layer file in ggik_core/model/layers

#: the reference code's sizes: 5 layers of width 128, latent 16 per node, 16 mixture components
REFERENCE_SIZES = {"hidden": 128, "layers": 5, "latent": 16, "components": 16}


#: the values of the choice fields of :class:`ModelConfig` other than ``layer`` (whose values are
#: the registered layers, :func:`choices`)
CHOICES = {"phi_x": ("mlp", "linear"), "phi_e": ("mlp", "single"),
           "latent_scope": ("node", "graph"), "prior_mixture": ("node", "graph")}


def choices() -> dict[str, tuple[str, ...]]:
    """Every choice field of :class:`ModelConfig` with its allowed values."""
    return {"layer": layer_names(), **CHOICES}


@dataclass(frozen=True)
class ModelConfig:
    layer: str = "egnn"  # egnn | egat
    hidden: int = 64
    layers: int = 3
    latent: int = 8
    components: int = 8
    message: int = 64  # EGAT feature-message width
    node_features: int = NODE_FEATURES
    coords_agg_norm: float = 16.0
    home_init: bool = False  # unknown nodes of the partial graph start at their home positions
    phi_x: str = "mlp"  # mlp (two layers, the reference) | linear (one bias-free linear map: lighter)
    phi_e: str = "mlp"  # mlp (two layers, the reference) | single (one linear map and its SiLU: no per-edge product)
    symmetric: bool = False  # egnn only: phi_e shares weights for h_i and h_j, each pair computed once
    pin_anchors: bool = False  # put the known anchors back at their positions after every layer
    full_layers: int = 0  # layers of the full-graph encoder (it feeds only the posterior); 0: same as layers
    decoder_layers: int = 0  # layers of the decoder (it places the nodes); 0: same as layers
    partial_layers: int = 0  # layers of the partial-graph encoder (prior and decoder input); 0: same as layers
    latent_scope: str = "node"  # node: one latent per node (the reference) | graph: one per graph, given to every node
    prior_mixture: str = "node"  # node: each node draws its own prior component (the reference) | graph: one component per graph, shared by its nodes

    @property
    def edges(self) -> EdgeSpec:
        """The named edge features of the layer type (its registry entry)."""
        return layer_entry(self.layer).edges

    @property
    def edge_dim(self) -> int:
        return self.edges.width

    def check(self) -> None:
        """``ValueError`` with one line naming the field for a value the model cannot run: a
        choice out of :func:`choices`, a negative depth, or options that do not go together."""
        for key, allowed in choices().items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"model.{key} must be {' or '.join(allowed)}, got {getattr(self, key)!r}")
        if self.prior_mixture == "graph" and self.latent_scope == "graph":
            raise ValueError("model.prior_mixture=graph needs model.latent_scope=node (a per-graph latent has one mixture already)")
        try:
            layer_entry(self.layer).cls.config_options(self)
        except ValueError as exc:
            raise ValueError(f"model.layer {self.layer}: {exc}") from None
        for key in ("full_layers", "decoder_layers", "partial_layers"):
            if getattr(self, key) < 0:
                raise ValueError(f"model.{key} must be 0 (same as model.layers) or more, got {getattr(self, key)}")

    def to_dict(self) -> dict:
        return asdict(self)
