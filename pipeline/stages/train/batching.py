"""The validation split and the batches: seeded, one DOF per batch."""

from __future__ import annotations

import torch

from ggik_core.data.graph import ProblemGraphs


def split(graphs: dict[int, ProblemGraphs], val_fraction: float, seed: int) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]:
    """Seeded train/validation indices per DOF bucket."""
    gen = torch.Generator().manual_seed(seed)
    train, val = {}, {}
    for dof, g in graphs.items():
        n = g.q.shape[0]
        perm = torch.randperm(n, generator=gen)
        n_val = max(1, int(round(n * val_fraction))) if n > 1 else 0
        val[dof], train[dof] = perm[:n_val], perm[n_val:]
    return train, val


def batches(index: dict[int, torch.Tensor], batch_size: int, gen: torch.Generator | None) -> list[tuple[int, torch.Tensor]]:
    """Batches of one DOF each; shuffled within and across buckets when ``gen`` is given."""
    out = []
    for dof, idx in index.items():
        if gen is not None:
            idx = idx[torch.randperm(idx.numel(), generator=gen)]
        out.extend((dof, chunk) for chunk in idx.split(batch_size) if chunk.numel() > 0)
    if gen is not None:
        order = torch.randperm(len(out), generator=gen).tolist()
        out = [out[i] for i in order]
    return out


def to_device(g: ProblemGraphs, device: torch.device) -> ProblemGraphs:
    return ProblemGraphs(dof=g.dof, pos=g.pos.to(device), home=g.home.to(device), known=g.known.to(device),
                         goal=g.goal.to(device), q=g.q.to(device))


def subset(g: ProblemGraphs, idx: torch.Tensor) -> ProblemGraphs:
    return ProblemGraphs(dof=g.dof, pos=g.pos[idx], home=g.home[idx], known=g.known[idx], goal=g.goal[idx], q=g.q[idx])
