"""Fused CPU kernels of the layers' dense path: one α-weighted edge-block family for EGNN and EGAT
(:mod:`~ggik_core.model.fused.edges`), the node update (:mod:`~ggik_core.model.fused.node`) and the
numba primitives they share (:mod:`~ggik_core.model.fused.kernels`). numba is imported on first use."""
