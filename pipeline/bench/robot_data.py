"""Where the real URDFs of the optional extra ``robots`` (the ``example-robot-data`` wheel) are."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path


def example_robot_data_dir() -> Path | None:
    """The robots folder of the ``example-robot-data`` wheel (real URDFs with meshes, used by the
    tests and the benchmarks), or None without it."""
    try:
        root = Path(distribution("example-robot-data").locate_file("cmeel.prefix/share/example-robot-data/robots"))
    except PackageNotFoundError:
        return None
    return root if root.is_dir() else None
