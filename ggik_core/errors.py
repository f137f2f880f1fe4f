"""User-facing errors: the CLI prints their message on one line and exits non-zero."""


class GGIKError(Exception):
    """A problem with the user's input (file, robot, goal, parameters), not a bug."""


class RobotError(GGIKError):
    """A robot description that cannot be turned into a serial revolute chain."""


class DataError(GGIKError):
    """A data file (Parquet table, tensor shard, manifest) that is missing or corrupt."""


class TrainingError(GGIKError):
    """Training cannot go on (e.g. the loss diverged); the message says what to change."""


class CollisionError(GGIKError):
    """Collision geometry or an obstacle scene that cannot be built (missing mesh, bad entry)."""
