"""ggik_core: robots, kinematics, distance graphs and the GGIK model."""

__version__ = "0.1.0"
