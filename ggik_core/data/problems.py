"""IK problem tables: robots, configurations and goals, as Parquet rows.

One row per problem: ``problem_id, dof, robot, geometry, chain, lower, upper, q, goal, n_skew``.
Robots are stored as their ``n + 1`` home-configuration link transforms (``chain``: 16 values per
link, row-major), so any robot trains, URDF robots included, not only DH tables. ``lower``,
``upper`` and ``q`` hold ``dof`` values, ``goal`` the 16 entries of the EE pose in the robot's base
frame; ``robot`` names it (``random`` for generated robots), ``n_skew`` counts skew consecutive
axis pairs (-1 where unknown).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import Tensor

from ggik_core.errors import DataError
from ggik_core.data.io import atomic_path
from ggik_core.robots.kinematics import forward_kinematics
from ggik_core.robots.random_robots import SKEW, RandomRobotConfig, RandomRobots, generate_robots
from ggik_core.robots.robot import Robot, dh_chain

LIST_COLUMNS = ("chain", "lower", "upper", "q")
#: sampling range of a joint without limits (continuous): one full turn
CONTINUOUS = math.pi


@dataclass
class ProblemBatch:
    """Problems of one DOF as tensors (float64)."""

    dof: int
    chain: Tensor  # (B, n + 1, 4, 4) home-configuration link transforms
    lower: Tensor
    upper: Tensor
    q: Tensor
    goal: Tensor  # (B, 4, 4)
    n_skew: Tensor  # (B,), -1 where unknown
    robot: str = "random"


def random_problems(count: int, dof: int, cfg: RandomRobotConfig, gen: torch.Generator) -> ProblemBatch:
    rr: RandomRobots = generate_robots(count, dof, cfg, gen)
    chain = dh_chain(*rr.dh.unbind(-1))
    goal = forward_kinematics(chain, rr.q)
    return ProblemBatch(dof, chain, rr.lower, rr.upper, rr.q, goal, (rr.relation == SKEW).sum(-1))


def robot_problems(robot: Robot, count: int, gen: torch.Generator) -> ProblemBatch:
    """``count`` problems of one given robot: configurations uniform inside its joint limits
    (a joint without finite limits over one full turn), goals by forward kinematics."""
    lower = torch.where(torch.isfinite(robot.lower), robot.lower, -CONTINUOUS).to(torch.float64)
    upper = torch.where(torch.isfinite(robot.upper), robot.upper, CONTINUOUS).to(torch.float64)
    q = lower + (upper - lower) * torch.rand(count, robot.dof, generator=gen, dtype=torch.float64)
    chain = robot.chain.to(torch.float64).expand(count, *robot.chain.shape).contiguous()
    goal = forward_kinematics(chain, q)
    skew = sum(r == "skew" for r in robot.axis_relations())
    return ProblemBatch(robot.dof, chain, lower.expand(count, -1).contiguous(), upper.expand(count, -1).contiguous(),
                        q, goal, torch.full((count,), skew, dtype=torch.int64), robot=robot.name)


def _fixed_list(x: Tensor) -> pa.Array:
    """Rows of ``x (B, w)`` as a list column (variable-size type, so DOF buckets share a schema)."""
    B, w = x.shape
    flat = pa.array(x.reshape(-1).numpy())
    offsets = pa.array(np.arange(0, (B + 1) * w, w, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, flat)


def _label(value: str, B: int) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(B, dtype=np.int32)), pa.array([value]))


def to_table(batch: ProblemBatch, geometry: str, first_id: int) -> pa.Table:
    B = batch.q.shape[0]
    cols = {
        "problem_id": pa.array(np.arange(first_id, first_id + B, dtype=np.int64)),
        "dof": pa.array(np.full(B, batch.dof, dtype=np.int16)),
        "robot": _label(batch.robot, B),
        "geometry": _label(geometry, B),
        "n_skew": pa.array(batch.n_skew.numpy().astype(np.int16)),
    }
    cols["chain"] = _fixed_list(batch.chain.reshape(B, -1))
    cols["lower"] = _fixed_list(batch.lower)
    cols["upper"] = _fixed_list(batch.upper)
    cols["q"] = _fixed_list(batch.q)
    cols["goal"] = _fixed_list(batch.goal.reshape(B, 16))
    return pa.table(cols)


def write_tables(path: str | Path, tables: list[pa.Table]) -> None:
    with atomic_path(path) as tmp:
        writer = None
        try:
            for t in tables:
                if writer is None:
                    writer = pq.ParquetWriter(tmp, t.schema, compression="zstd")
                writer.write_table(t)
        finally:
            if writer is not None:
                writer.close()


def _tensor(col: pa.ChunkedArray, width: int) -> Tensor:
    values = np.concatenate([c.flatten().to_numpy(zero_copy_only=False) for c in col.chunks]) if col.num_chunks else np.zeros(0)
    return torch.from_numpy(values.astype(np.float64)).reshape(-1, width)


def read_problems(path: str | Path) -> dict[int, ProblemBatch]:
    """Read a problem table, grouped by DOF."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"missing problem table {path} (run `dvc repro generate`)")
    try:
        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"cannot read problem table {path}: {exc}") from None
    missing = {"dof", "goal", "n_skew", *LIST_COLUMNS} - set(table.column_names)
    if missing:
        raise DataError(f"problem table {path} lacks columns {sorted(missing)}")
    out: dict[int, ProblemBatch] = {}
    dofs = table.column("dof").to_numpy()
    for dof in sorted(set(int(x) for x in dofs)):
        sub = table.filter(pa.compute.equal(table.column("dof"), dof))
        batch = ProblemBatch(
            dof=dof,
            chain=_tensor(sub.column("chain"), 16 * (dof + 1)).reshape(-1, dof + 1, 4, 4),
            lower=_tensor(sub.column("lower"), dof),
            upper=_tensor(sub.column("upper"), dof),
            q=_tensor(sub.column("q"), dof),
            goal=_tensor(sub.column("goal"), 16).reshape(-1, 4, 4),
            n_skew=torch.from_numpy(sub.column("n_skew").to_numpy().astype(np.int64)),
        )
        if not all(torch.isfinite(t).all() for t in (batch.chain, batch.q, batch.goal, batch.lower, batch.upper)):
            raise DataError(f"problem table {path} has NaN or infinite values (dof {dof})")
        out[dof] = batch
    return out
