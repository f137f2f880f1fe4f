"""Benchmarks: their output is the figure we quote; nothing here is asserted in tests."""

from __future__ import annotations

import time
from pathlib import Path

import torch
import typer

from ggik_core.graph import build_problem_graphs
from ggik_core.problems import random_problems, to_table, write_tables
from ggik_core.random_robots import RandomRobotConfig
from ggik_core.shards import save_shard, write_manifest


def bench_data(n: int, dof: int, chunk: int, write: Path | None) -> None:
    cfg = RandomRobotConfig()
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    t_gen = t_build = t_write = 0.0
    tables, entries = [], []
    done = 0
    while done < n:
        b = min(chunk, n - done)
        t = time.perf_counter()
        batch = random_problems(b, dof, cfg, gen)
        table = to_table(batch, "coplanar", done)
        t_gen += time.perf_counter() - t
        t = time.perf_counter()
        g = build_problem_graphs(batch.chain, batch.q, batch.goal)
        t_build += time.perf_counter() - t
        if write is not None:
            t = time.perf_counter()
            tables.append(table)
            entries.append(save_shard(write / "graphs", f"dof{dof}_{len(entries):03d}.pt", g))
            t_write += time.perf_counter() - t
        done += b
    if write is not None:
        t = time.perf_counter()
        write_tables(write / "problems.parquet", tables)
        write_manifest(write / "graphs", entries, {"shard_size": chunk})
        t_write += time.perf_counter() - t
    total = time.perf_counter() - t0
    typer.echo(f"bench data: {n} problems, dof {dof}, threads {torch.get_num_threads()}")
    typer.echo(f"  generate (robots + FK + Arrow table): {t_gen:8.2f} s  {n / t_gen:12,.0f} problems/s")
    typer.echo(f"  build graphs (canonical frames, positions, masks): {t_build:8.2f} s  {n / t_build:12,.0f} problems/s")
    if write is not None:
        typer.echo(f"  write Parquet + shards: {t_write:8.2f} s")
    typer.echo(f"  total: {total:8.2f} s  {n / total:12,.0f} problems/s")
