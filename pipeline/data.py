"""Stages `generate` and `build_graphs`: random IK problems to Parquet, then graph shards."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pyarrow as pa
import torch

from ggik_core.data.graph import build_problem_graphs
from ggik_core.data.problems import random_problems, read_problems, robot_problems, to_table, write_tables
from ggik_core.robots.random_robots import RandomRobotConfig
from ggik_core.robots.files import load_robot
from ggik_core.data.shards import save_shard, write_manifest
from pipeline.params import DataParams, pick
from pipeline.progress import progress

CHUNK = 50_000


def per_dof_counts(p: DataParams) -> dict[int, int]:
    """Split ``n_problems`` evenly over the DOF list (the first buckets take the remainder)."""
    base, extra = divmod(p.n_problems, len(p.dofs))
    return {dof: base + (1 if i < extra else 0) for i, dof in enumerate(p.dofs)}


def robot_config(p: DataParams) -> RandomRobotConfig:
    return pick(RandomRobotConfig, p)


def robot_counts(p: DataParams) -> dict[str, int]:
    """Split ``n_problems`` evenly over ``data.robots`` (the first ones take the remainder)."""
    base, extra = divmod(p.n_problems, len(p.robots))
    return {spec: base + (1 if i < extra else 0) for i, spec in enumerate(p.robots)}


def listed_robot_tables(p: DataParams) -> list[pa.Table]:
    """Problems of the robots named in ``data.robots``, seeded per robot (by its position)."""
    tables: list[pa.Table] = []
    next_id = 0
    counts = robot_counts(p)
    robots = {spec: load_robot(spec) for spec in counts}  # every spec is checked before any work
    with progress() as bar:
        task = bar.add_task("generate", total=p.n_problems, info="")
        for k, (spec, count) in enumerate(counts.items()):
            gen = torch.Generator().manual_seed(p.seed * 1000 + 500 + k)
            done = 0
            while done < count:
                b = min(CHUNK, count - done)
                tables.append(to_table(robot_problems(robots[spec], b, gen), "listed", next_id))
                next_id += b
                done += b
                bar.update(task, advance=b, info=spec)
    return tables


def generate_tables(p: DataParams) -> list[pa.Table]:
    """Problems as Arrow tables, chunked: of the listed robots when ``data.robots`` is set, else of
    random robots, seeded per DOF bucket."""
    if p.robots:
        return listed_robot_tables(p)
    cfg = robot_config(p)
    tables: list[pa.Table] = []
    next_id = 0
    counts = per_dof_counts(p)
    with progress() as bar:
        task = bar.add_task("generate", total=p.n_problems, info="")
        for dof, count in counts.items():
            gen = torch.Generator().manual_seed(p.seed * 1000 + dof)
            done = 0
            while done < count:
                b = min(CHUNK, count - done)
                tables.append(to_table(random_problems(b, dof, cfg, gen), p.geometry, next_id))
                next_id += b
                done += b
                bar.update(task, advance=b, info=f"dof {dof}")
    return tables


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
