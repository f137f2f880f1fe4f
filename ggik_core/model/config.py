"""The typed model config: the ``model`` section of ``params.yaml`` and of every checkpoint.

Its defaults are the project's defaults (``params.yaml`` is checked against them by a test);
:data:`REFERENCE_SIZES` are the GGIK reference code's sizes (spec §5), used by the GPU preset and
``ggik bench``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ggik_core.data.graph import NODE_FEATURES

#: the reference code's sizes: 5 layers of width 128, latent 16 per node, 16 mixture components
REFERENCE_SIZES = {"hidden": 128, "layers": 5, "latent": 16, "components": 16}


#: the values of the choice fields of :class:`ModelConfig`, checked by ``load_params`` (one-line
#: params errors) and by the model (``ValueError``)
CHOICES = {"layer": ("egnn", "egat"), "phi_x": ("mlp", "linear"), "phi_e": ("mlp", "single"),
           "latent_scope": ("node", "graph"), "prior_mixture": ("node", "graph")}

#: why ``prior_mixture="graph"`` cannot go with ``latent_scope="graph"``
SHARED_MIXTURE_NEEDS_NODES = "prior_mixture=graph needs latent_scope=node (a per-graph latent has one mixture already)"


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
    def directions(self) -> bool:
        return self.layer == "egat"

    @property
    def edge_dim(self) -> int:
        return 5 if self.directions else 2

    def to_dict(self) -> dict:
        return asdict(self)
