"""Equivariant graph neural network layers used by GGIK."""

from ggik_core.nn.egat import EGATLayer
from ggik_core.nn.egnn import EGNNLayer

__all__ = ["EGNNLayer", "EGATLayer"]
