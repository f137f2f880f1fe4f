"""Trained models that ship inside the package, so that ``ggik solve`` works without training.

* ``all_arms.pt``: trained on the five catalog arms themselves (GGIK's protocol); ``ggik solve``
  uses it for ``ur10``, ``kuka``, ``lwa4d``, ``lwa4p`` and ``panda``.
* ``generalist.pt``: trained on random robots (the default ``dvc repro``); used for every other
  robot (URDF or DH files).

Each ``NAME.pt`` has a ``NAME.json`` beside it, written by ``ggik ship``: the command that
reproduces it, its params, its training time and its evaluation metrics per arm. Nothing here
imports torch: finding a file costs nothing at start-up.
"""

from __future__ import annotations

import json
from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent
#: the shipped models, by name
SHIPPED = ("all_arms", "generalist")


def shipped_path(name: str) -> Path:
    """The weights file of a shipped model (``all_arms`` or ``generalist``)."""
    if name not in SHIPPED:
        raise ValueError(f"unknown shipped model {name!r} ({' or '.join(SHIPPED)})")
    return WEIGHTS_DIR / f"{name}.pt"


def shipped_card(name: str) -> dict:
    """The record written beside the weights: ``preset``, ``params``, ``training``, ``eval``."""
    return json.loads(shipped_path(name).with_suffix(".json").read_text())


def model_name_for(robot_spec: str) -> str:
    """``all_arms`` for a catalog arm (by name, any case), ``generalist`` for anything else."""
    from ggik_core.robots.catalog import ARM_NAMES

    return "all_arms" if str(robot_spec).lower() in ARM_NAMES else "generalist"
