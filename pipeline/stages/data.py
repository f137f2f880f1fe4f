"""Stages `generate` and `build_graphs`: random IK problems to Parquet, then graph shards."""

from __future__ import annotations

import os
import shutil
import tempfile
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import pyarrow as pa
import torch

from ggik_core.data.graph import build_problem_graphs
from ggik_core.data.problems import ProblemBatch, random_problems, read_problems, robot_problems, to_table, write_tables
from ggik_core.robots.random_robots import RandomRobotConfig
from ggik_core.robots.files import load_robot
from ggik_core.data.shards import save_shard, write_manifest
from pipeline.common.params import pick
from pipeline.stages.data_params import DataParams
from pipeline.common.progress import progress

CHUNK = 50_000


def even_split(total: int, keys: Sequence) -> dict:
    """``total`` split evenly over ``keys`` (the first ones take the remainder)."""
    base, extra = divmod(total, len(keys))
    return {key: base + (1 if i < extra else 0) for i, key in enumerate(keys)}


def per_dof_counts(p: DataParams) -> dict[int, int]:
    """Split ``n_problems`` evenly over the DOF list."""
    return even_split(p.n_problems, p.dofs)


def robot_config(p: DataParams) -> RandomRobotConfig:
    return pick(RandomRobotConfig, p)


def robot_counts(p: DataParams) -> dict[str, int]:
    """Split ``n_problems`` evenly over ``data.robots``."""
    return even_split(p.n_problems, p.robots)


#: one bucket of problems: (progress label, count, seed, make(count, generator) -> ProblemBatch)
Bucket = tuple[str, int, int, Callable[[int, torch.Generator], ProblemBatch]]


def bucket_tables(buckets: list[Bucket], geometry: str, total: int) -> list[pa.Table]:
    """Each bucket's problems as Arrow tables of at most :data:`CHUNK` rows, from its own seeded
    generator, with consecutive problem ids."""
    tables: list[pa.Table] = []
    next_id = 0
    with progress() as bar:
        task = bar.add_task("generate", total=total, info="")
        for label, count, seed, make in buckets:
            gen = torch.Generator().manual_seed(seed)
            done = 0
            while done < count:
                b = min(CHUNK, count - done)
                tables.append(to_table(make(b, gen), geometry, next_id))
                next_id += b
                done += b
                bar.update(task, advance=b, info=label)
    return tables


def listed_robot_tables(p: DataParams) -> list[pa.Table]:
    """Problems of the robots named in ``data.robots``, seeded per robot (by its position)."""
    robots = {spec: load_robot(spec) for spec in p.robots}  # every spec is checked before any work
    buckets = [(spec, count, p.seed * 1000 + 500 + k, partial(robot_problems, robots[spec]))
               for k, (spec, count) in enumerate(robot_counts(p).items())]
    return bucket_tables(buckets, "listed", p.n_problems)


def generate_tables(p: DataParams) -> list[pa.Table]:
    """Problems as Arrow tables, chunked: of the listed robots when ``data.robots`` is set, else of
    random robots, seeded per DOF bucket."""
    if p.robots:
        return listed_robot_tables(p)
    cfg = robot_config(p)
    buckets = [(f"dof {dof}", count, p.seed * 1000 + dof, partial(_random_bucket, dof=dof, cfg=cfg))
               for dof, count in per_dof_counts(p).items()]
    return bucket_tables(buckets, p.geometry, p.n_problems)


def _random_bucket(count: int, gen: torch.Generator, dof: int, cfg: RandomRobotConfig) -> ProblemBatch:
    return random_problems(count, dof, cfg, gen)


def generate(p: DataParams, out: Path) -> int:
    tables = generate_tables(p)
    write_tables(out, tables)
    return sum(t.num_rows for t in tables)


def build_graphs(problems: Path, out_dir: Path, shard_size: int) -> list[dict]:
    """Build graph shards per DOF bucket from the problem table.

    Shards and manifest are written into a temporary folder beside ``out_dir`` that replaces it
    only when everything is written: a failed build leaves the previous graphs intact.
    """
    batches = read_problems(problems)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        entries = []
        total = sum(b.q.shape[0] for b in batches.values())
        with progress() as bar:
            task = bar.add_task("build graphs", total=total, info="")
            for dof, batch in batches.items():
                for k, start in enumerate(range(0, batch.q.shape[0], shard_size)):
                    sl = slice(start, start + shard_size)
                    g = build_problem_graphs(batch.chain[sl], batch.q[sl], batch.goal[sl])
                    entries.append(save_shard(tmp_dir, f"dof{dof}_{k:03d}.pt", g))
                    bar.update(task, advance=g.q.shape[0], info=f"dof {dof}")
        write_manifest(tmp_dir, entries, {"shard_size": shard_size})
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out_dir, old)
            os.replace(tmp_dir, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp_dir, out_dir)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return entries
