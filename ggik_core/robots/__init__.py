"""Robots: serial revolute chains and their kinematics.

A :class:`~ggik_core.robots.robot.Robot` is a chain of home-configuration link transforms plus
joint limits. ``transforms`` holds the SE(3) algebra, ``kinematics`` the batched product-of-
exponentials forward kinematics, ``urdf`` and ``files`` load robots from URDF, DH tables and YAML,
``catalog`` states the five evaluation arms as facts, and ``random_robots`` draws the random
training robots in vectorised batches. ``collision`` checks
self-collision from a URDF's ``<collision>`` geometry and obstacles of a ``scene`` file (coal). Nothing here knows about graphs or learning.
"""
