"""Model: the equivariant message-passing layers and the GGIK conditional VAE.

``equivariant`` holds what both layers share (helpers and the base :class:`EquivariantConv`),
``egnn`` the EGNN layer of GGIK, ``egat`` the attention layer of GGIK+, and ``cvae`` the
conditional VAE (partial and full encoders, mixture prior, decoder, loss) with its typed
:class:`~ggik_core.model.cvae.ModelConfig`.
"""

from ggik_core.model.egat import EGATLayer
from ggik_core.model.egnn import EGNNLayer

__all__ = ["EGNNLayer", "EGATLayer"]
