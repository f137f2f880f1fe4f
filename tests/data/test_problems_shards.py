"""Problem tables and graph shards: round trips, corruption detection, atomic writes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from ggik_core.errors import DataError
from ggik_core.data.graph import build_problem_graphs, num_nodes
from ggik_core.data.io import atomic_path, read_json, torch_save, write_bytes
from ggik_core.robots.kinematics import forward_kinematics
from ggik_core.data.problems import random_problems, read_problems, to_table, write_tables
from ggik_core.robots.random_robots import RandomRobotConfig
from ggik_core.data.shards import MANIFEST, load_graphs
from pipeline.stages.data import build_graphs, generate, per_dof_counts, robot_config
from pipeline.stages.data_params import DataParams

PARAMS = DataParams(seed=3, n_problems=200, dofs=(5, 7), geometry="noncoplanar", shard_size=30)


def expected_batches(p: DataParams) -> dict:
    """The problems `generate` writes: one generator per DOF bucket, seeded ``seed * 1000 + dof``."""
    out = {}
    for dof, count in per_dof_counts(p).items():
        gen = torch.Generator().manual_seed(p.seed * 1000 + dof)
        out[dof] = random_problems(count, dof, robot_config(p), gen)
    return out


@pytest.fixture(scope="module")
def problem_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("problems") / "problems.parquet"
    assert generate(PARAMS, path) == 200
    return path


@pytest.fixture()
def graph_dir(problem_file, tmp_path) -> Path:
    out = tmp_path / "graphs"
    build_graphs(problem_file, out, PARAMS.shard_size)
    return out


# ----------------------------------------------------------------------------- problem tables


def test_generate_writes_a_table_with_the_documented_columns(problem_file):
    table = pq.read_table(problem_file)
    assert table.num_rows == 200
    for col in ("problem_id", "dof", "robot", "geometry", "chain", "lower", "upper", "q", "goal", "n_skew"):
        assert col in table.column_names, col
    assert sorted(table.column("problem_id").to_pylist()) == list(range(200))
    dofs = table.column("dof").to_pylist()
    assert dofs.count(5) == 100 and dofs.count(7) == 100
    assert set(table.column("geometry").to_pylist()) == {"noncoplanar"}
    # list columns hold dof values each, the goal 16
    for row in table.slice(0, 5).to_pylist() + table.slice(195, 5).to_pylist():
        for col in ("lower", "upper", "q"):
            assert len(row[col]) == row["dof"]
        assert len(row["goal"]) == 16 and len(row["chain"]) == 16 * (row["dof"] + 1)
        assert row["robot"] == "random"


def test_read_problems_round_trip_equals_generated_tensors(problem_file):
    got = read_problems(problem_file)
    want = expected_batches(PARAMS)
    assert sorted(got) == [5, 7]
    for dof, w in want.items():
        g = got[dof]
        assert g.dof == dof
        for field in ("chain", "lower", "upper", "q", "goal", "n_skew"):
            a, b = getattr(g, field), getattr(w, field)
            assert a.shape == b.shape, field
            assert torch.equal(a.to(b.dtype), b), f"dof {dof}: {field} differs after the round trip"
        assert g.chain.dtype == torch.float64 and g.goal.dtype == torch.float64
        # the table is self-consistent: the goal is FK(q) of the stored robot, n_skew > 0 happens
        assert torch.allclose(forward_kinematics(g.chain, g.q), g.goal, atol=1e-12, rtol=0)
        assert (g.n_skew > 0).any()


def test_table_round_trip_of_own_batches(tmp_path):
    cfg = RandomRobotConfig(geometry="coplanar")
    b6 = random_problems(17, 6, cfg, torch.Generator().manual_seed(1))
    b8 = random_problems(9, 8, cfg, torch.Generator().manual_seed(2))
    path = tmp_path / "t.parquet"
    write_tables(path, [to_table(b6, "coplanar", 0), to_table(b8, "coplanar", 17)])
    got = read_problems(path)
    for b in (b6, b8):
        g = got[b.dof]
        for field in ("chain", "lower", "upper", "q", "goal"):
            assert torch.equal(getattr(g, field), getattr(b, field)), field
        assert (g.n_skew == 0).all()
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


def test_missing_or_unreadable_problem_table(tmp_path):
    with pytest.raises(DataError, match="missing.p"):
        read_problems(tmp_path / "missing.parquet")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"this is not parquet")
    with pytest.raises(DataError, match="bad.parquet"):
        read_problems(bad)
    t = pa.table({"dof": pa.array([6], type=pa.int16())})
    lacking = tmp_path / "lacking.parquet"
    pq.write_table(t, lacking)
    with pytest.raises(DataError, match="lacking.parquet"):
        read_problems(lacking)


@pytest.mark.parametrize(
    "column",
    ["chain", "q", "goal", "lower", "upper"],
)
def test_nan_in_problem_table_raises(tmp_path, column):
    b = random_problems(5, 6, RandomRobotConfig(), torch.Generator().manual_seed(4))
    if column == "q":
        b.q[2, 3] = math.nan
    elif column in ("lower", "upper"):
        getattr(b, column)[0, 0] = math.nan
    elif column == "goal":
        b.goal[1, 0, 3] = math.nan
    else:
        b.chain[3, 1, 0, 3] = math.nan
    path = tmp_path / f"nan_{column}.parquet"
    write_tables(path, [to_table(b, "coplanar", 0)])
    with pytest.raises(DataError, match=f"nan_{column}.parquet"):
        read_problems(path)


def test_infinity_in_problem_table_raises(tmp_path):
    b = random_problems(5, 7, RandomRobotConfig(), torch.Generator().manual_seed(5))
    b.goal[0, 1, 3] = math.inf
    path = tmp_path / "inf.parquet"
    write_tables(path, [to_table(b, "coplanar", 0)])
    with pytest.raises(DataError, match="inf.parquet"):
        read_problems(path)


# ----------------------------------------------------------------------------- graph shards


def test_build_graphs_writes_shards_and_manifest(problem_file, graph_dir):
    manifest = json.loads((graph_dir / MANIFEST).read_text())
    # 100 problems per DOF in shards of 30: 30, 30, 30, 10
    by_dof: dict[int, list[int]] = {}
    for e in manifest["shards"]:
        assert (graph_dir / e["file"]).is_file()
        assert len(e["sha256"]) == 64
        by_dof.setdefault(e["dof"], []).append(e["count"])
    assert by_dof == {5: [30, 30, 30, 10], 7: [30, 30, 30, 10]}
    assert manifest["counts"] == {"5": 100, "7": 100}
    assert manifest["total"] == 200
    assert sorted(p.name for p in graph_dir.glob("*.pt")) == sorted(e["file"] for e in manifest["shards"])
    assert not [p for p in graph_dir.iterdir() if p.name.endswith(".tmp")]


def test_load_graphs_round_trip(problem_file, graph_dir):
    graphs = load_graphs(graph_dir)
    problems = read_problems(problem_file)
    assert sorted(graphs) == [5, 7]
    for dof, batch in problems.items():
        g = graphs[dof]
        N = num_nodes(dof)
        assert g.dof == dof
        assert g.pos.shape == (100, N, 3) and g.known.shape == (100, N, N) and g.q.shape == (100, dof)
        # shard by shard, the stored tensors are the graphs built from the table (stored as float32)
        for start in range(0, 100, PARAMS.shard_size):
            sl = slice(start, start + PARAMS.shard_size)
            want = build_problem_graphs(batch.chain[sl], batch.q[sl], batch.goal[sl])
            for field in ("pos", "home", "goal", "q"):
                assert torch.equal(getattr(g, field)[sl], getattr(want, field).float()), field
            assert torch.equal(g.known[sl], want.known)
        assert g.pos.dtype == torch.float32 and g.known.dtype == torch.bool


def test_build_graphs_replaces_old_shards(problem_file, graph_dir):
    stale = graph_dir / "dof9_000.pt"
    stale.write_bytes(b"stale")
    build_graphs(problem_file, graph_dir, 100)
    assert not stale.exists()
    manifest = json.loads((graph_dir / MANIFEST).read_text())
    assert [e["count"] for e in manifest["shards"]] == [100, 100]
    assert sorted(p.name for p in graph_dir.glob("*.pt")) == ["dof5_000.pt", "dof7_000.pt"]
    assert sum(g.q.shape[0] for g in load_graphs(graph_dir).values()) == 200


def first_shard(graph_dir: Path) -> Path:
    return graph_dir / json.loads((graph_dir / MANIFEST).read_text())["shards"][0]["file"]


def test_truncated_shard(graph_dir):
    shard = first_shard(graph_dir)
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=shard.name):
        load_graphs(graph_dir)


def test_flipped_byte_in_shard(graph_dir):
    shard = first_shard(graph_dir)
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    with pytest.raises(DataError, match=shard.name):
        load_graphs(graph_dir)


def test_missing_shard(graph_dir):
    shard = first_shard(graph_dir)
    shard.unlink()
    with pytest.raises(DataError, match=shard.name):
        load_graphs(graph_dir)


def test_manifest_not_json(graph_dir):
    (graph_dir / MANIFEST).write_text('{"shards": [ this is not json')
    with pytest.raises(DataError, match=MANIFEST):
        load_graphs(graph_dir)


def test_missing_manifest(graph_dir):
    (graph_dir / MANIFEST).unlink()
    with pytest.raises(DataError, match=MANIFEST):
        load_graphs(graph_dir)


def test_manifest_without_shards(graph_dir):
    (graph_dir / MANIFEST).write_text("[1, 2, 3]\n")
    with pytest.raises(DataError, match=MANIFEST):
        load_graphs(graph_dir)


def test_manifest_count_disagrees_with_shard(graph_dir):
    path = graph_dir / MANIFEST
    manifest = json.loads(path.read_text())
    manifest["shards"][0]["count"] += 1
    path.write_text(json.dumps(manifest))
    with pytest.raises(DataError, match=manifest["shards"][0]["file"]):
        load_graphs(graph_dir)


def test_unreadable_shard_without_checksum(graph_dir):
    # with no checksum to compare, the loader itself must still turn garbage into a DataError
    path = graph_dir / MANIFEST
    manifest = json.loads(path.read_text())
    entry = manifest["shards"][0]
    del entry["sha256"]
    path.write_text(json.dumps(manifest))
    (graph_dir / entry["file"]).write_bytes(b"\x00garbage" * 10)
    with pytest.raises(DataError, match=entry["file"]):
        load_graphs(graph_dir)


def test_nan_in_shard_without_checksum(graph_dir):
    path = graph_dir / MANIFEST
    manifest = json.loads(path.read_text())
    entry = manifest["shards"][0]
    d = torch.load(graph_dir / entry["file"], weights_only=True)
    d["pos"][0, 0, 0] = float("nan")
    entry["sha256"] = torch_save(graph_dir / entry["file"], d)  # a valid checksum of bad data
    path.write_text(json.dumps(manifest))
    with pytest.raises(DataError, match=entry["file"]):
        load_graphs(graph_dir)


# ----------------------------------------------------------------------------- atomic writes


def test_atomic_path_success(tmp_path):
    target = tmp_path / "sub" / "out.bin"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp != target
        tmp.write_bytes(b"done")
        assert not target.exists()  # nothing under the final name until the block ends
    assert target.read_bytes() == b"done"
    assert [p.name for p in target.parent.iterdir()] == ["out.bin"]


def test_atomic_path_failure_leaves_nothing(tmp_path):
    target = tmp_path / "out.bin"
    seen = []
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(target) as tmp:
            seen.append(tmp)
            tmp.write_bytes(b"half written")
            raise RuntimeError("boom")
    assert not target.exists()
    assert not seen[0].exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_failure_keeps_the_old_file(tmp_path):
    target = tmp_path / "out.json"
    target.write_text('{"old": true}')
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_text('{"new": ')
            raise KeyboardInterrupt
    assert read_json(target) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_write_bytes_and_torch_save_are_atomic_on_error(tmp_path, monkeypatch):
    target = tmp_path / "shard.pt"
    target.write_bytes(b"previous")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("ggik_core.data.io.os.replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        torch_save(target, {"x": torch.zeros(3)})
    with pytest.raises(OSError):
        write_bytes(tmp_path / "new.bin", b"abc")
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard.pt"]


def test_failed_table_write_leaves_no_file(tmp_path):
    b = random_problems(4, 6, RandomRobotConfig(), torch.Generator().manual_seed(6))
    good = to_table(b, "coplanar", 0)
    other = pa.table({"something": pa.array(np.arange(3))})  # schema mismatch: the writer raises
    path = tmp_path / "p.parquet"
    with pytest.raises(Exception):
        write_tables(path, [good, other])
    assert list(tmp_path.iterdir()) == []


def test_listed_robots_give_problems_inside_their_limits(tmp_path):
    """data.robots: catalog names and files; stored as link transforms; q inside each robot's limits."""
    import yaml

    from ggik_core.robots.catalog import load_arm
    from ggik_core.robots.kinematics import forward_kinematics
    from pipeline.stages.data import generate
    from pipeline.stages.data_params import DataParams

    dh = {"name": "planar3", "convention": "standard", "joints": [{"a": 0.3, "alpha": 1.5707963267948966, "d": 0.2},
                                        {"a": 0.25, "alpha": 0.0, "d": 0.0, "lower": -1.0, "upper": 1.0},
                                        {"a": 0.0, "alpha": 0.0, "d": 0.1}]}
    (tmp_path / "arm.yaml").write_text(yaml.safe_dump(dh))
    p = DataParams(n_problems=301, robots=("kuka", "panda", str(tmp_path / "arm.yaml")), seed=3)
    assert generate(p, tmp_path / "problems.parquet") == 301
    got = read_problems(tmp_path / "problems.parquet")
    assert sorted(got) == [3, 7]
    assert got[3].q.shape[0] == 100 and got[7].q.shape[0] == 201
    for dof, batch in got.items():
        assert (batch.q >= batch.lower).all() and (batch.q <= batch.upper).all()
        assert torch.allclose(forward_kinematics(batch.chain, batch.q), batch.goal, atol=1e-12)
    panda = load_arm("panda")
    table = pq.read_table(tmp_path / "problems.parquet")
    names = table.column("robot").to_pylist()
    assert names.count("kuka") == 101 and names.count("panda") == 100 and names.count("planar3") == 100
    rows = got[7].chain[101:]  # the 100 panda rows follow the 101 kuka rows
    assert torch.equal(rows, panda.chain.expand_as(rows))
    assert (got[3].q[:, 1].abs() <= 1.0).all() and got[3].q[:, 1].abs().max() > 0.9
