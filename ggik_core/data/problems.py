"""IK problem tables: random robots, configurations and goals, as Parquet rows.

One row per problem: ``problem_id, dof, geometry, a, alpha, d, theta, lower, upper, q, goal,
n_skew`` where the list columns hold ``dof`` values (``goal``: the 16 entries of the EE pose in
the robot's base frame, row-major) and ``n_skew`` counts skew consecutive axis pairs.
"""

from __future__ import annotations

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
from ggik_core.robots.robot import dh_chain

LIST_COLUMNS = ("a", "alpha", "d", "theta", "lower", "upper", "q")


@dataclass
class ProblemBatch:
    """Problems of one DOF as tensors (float64)."""

    dof: int
    dh: Tensor  # (B, n, 4)
    lower: Tensor
    upper: Tensor
    q: Tensor
    goal: Tensor  # (B, 4, 4)
    n_skew: Tensor  # (B,)

    @property
    def chain(self) -> Tensor:
        return dh_chain(*self.dh.unbind(-1))


def random_problems(count: int, dof: int, cfg: RandomRobotConfig, gen: torch.Generator) -> ProblemBatch:
    rr: RandomRobots = generate_robots(count, dof, cfg, gen)
    chain = dh_chain(*rr.dh.unbind(-1))
    goal = forward_kinematics(chain, rr.q)
    return ProblemBatch(dof, rr.dh, rr.lower, rr.upper, rr.q, goal, (rr.relation == SKEW).sum(-1))


def _fixed_list(x: Tensor) -> pa.Array:
    """Rows of ``x (B, w)`` as a list column (variable-size type, so DOF buckets share a schema)."""
    B, w = x.shape
    flat = pa.array(x.reshape(-1).numpy())
    offsets = pa.array(np.arange(0, (B + 1) * w, w, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, flat)


def to_table(batch: ProblemBatch, geometry: str, first_id: int) -> pa.Table:
    B = batch.q.shape[0]
    cols = {
        "problem_id": pa.array(np.arange(first_id, first_id + B, dtype=np.int64)),
        "dof": pa.array(np.full(B, batch.dof, dtype=np.int16)),
        "geometry": pa.DictionaryArray.from_arrays(pa.array(np.zeros(B, dtype=np.int32)), pa.array([geometry])),
        "n_skew": pa.array(batch.n_skew.numpy().astype(np.int16)),
    }
    for i, key in enumerate(("a", "alpha", "d", "theta")):
        cols[key] = _fixed_list(batch.dh[..., i])
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
        dh = torch.stack([_tensor(sub.column(k), dof) for k in ("a", "alpha", "d", "theta")], -1)
        batch = ProblemBatch(
            dof=dof,
            dh=dh,
            lower=_tensor(sub.column("lower"), dof),
            upper=_tensor(sub.column("upper"), dof),
            q=_tensor(sub.column("q"), dof),
            goal=_tensor(sub.column("goal"), 16).reshape(-1, 4, 4),
            n_skew=torch.from_numpy(sub.column("n_skew").to_numpy().astype(np.int64)),
        )
        if not all(torch.isfinite(t).all() for t in (batch.dh, batch.q, batch.goal, batch.lower, batch.upper)):
            raise DataError(f"problem table {path} has NaN or infinite values (dof {dof})")
        out[dof] = batch
    return out
