"""Graph tensor shards per DOF bucket, with a manifest of counts and checksums."""

from __future__ import annotations

from pathlib import Path

import torch

from ggik_core.errors import DataError
from ggik_core.data.graph import ProblemGraphs, num_nodes
from ggik_core.data.io import load_checked, read_json, torch_save, write_json

MANIFEST = "manifest.json"
FIELDS = ("pos", "home", "known", "goal", "q")


def shard_dict(g: ProblemGraphs) -> dict[str, torch.Tensor | int]:
    return {
        "dof": g.dof,
        "pos": g.pos.float().contiguous(),
        "home": g.home.float().contiguous(),
        "known": g.known.contiguous(),
        "goal": g.goal.float().contiguous(),
        "q": g.q.float().contiguous(),
    }


def save_shard(out_dir: Path, name: str, g: ProblemGraphs) -> dict:
    sha = torch_save(out_dir / name, shard_dict(g))
    return {"file": name, "dof": g.dof, "count": int(g.q.shape[0]), "sha256": sha}


def _check(d: dict, entry: dict, path: Path) -> None:
    dof, count = entry["dof"], entry["count"]
    N = num_nodes(dof)
    shapes = {"pos": (count, N, 3), "home": (count, N, 3), "known": (count, N, N), "goal": (count, 4, 4), "q": (count, dof)}
    for key, shape in shapes.items():
        if key not in d or tuple(d[key].shape) != shape:
            got = None if key not in d else tuple(d[key].shape)
            raise DataError(f"shard {path}: field {key!r} has shape {got}, the manifest implies {shape}")
    for key in ("pos", "home", "goal", "q"):
        if not torch.isfinite(d[key]).all():
            raise DataError(f"shard {path}: field {key!r} contains NaN or infinity")


def load_graphs(graph_dir: str | Path) -> dict[int, ProblemGraphs]:
    """Load and verify every shard listed in the manifest; concatenate per DOF."""
    graph_dir = Path(graph_dir)
    manifest = read_json(graph_dir / MANIFEST)
    try:
        entries = manifest["shards"]
    except (KeyError, TypeError):
        raise DataError(f"{graph_dir / MANIFEST} has no 'shards' list") from None
    parts: dict[int, list[dict]] = {}
    for entry in entries:
        path = graph_dir / entry["file"]
        d = load_checked(path, entry.get("sha256"))
        _check(d, entry, path)
        parts.setdefault(int(entry["dof"]), []).append(d)
    out = {}
    for dof, ds in sorted(parts.items()):
        out[dof] = ProblemGraphs(dof=dof, **{k: torch.cat([d[k] for d in ds]) for k in FIELDS})
    if not out:
        raise DataError(f"{graph_dir / MANIFEST} lists no shards")
    return out


def write_manifest(graph_dir: Path, entries: list[dict], params: dict) -> None:
    totals: dict[str, int] = {}
    for e in entries:
        totals[str(e["dof"])] = totals.get(str(e["dof"]), 0) + e["count"]
    write_json(graph_dir / MANIFEST, {"shards": entries, "counts": totals, "total": sum(totals.values()), "params": params})
