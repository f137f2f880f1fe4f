"""The process group of a ``torchrun`` launch (data-parallel training), or a no-op in one process."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from ggik_core.model.files import pick_device


class Dist:
    """The process group when launched by ``torchrun`` (``WORLD_SIZE > 1``); a no-op otherwise."""

    def __init__(self) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = pick_device()
        if self.world > 1:
            if self.device.type == "cuda":
                self.device = torch.device("cuda", self.local_rank)
                torch.cuda.set_device(self.device)
            if not dist.is_initialized():
                dist.init_process_group(backend="nccl" if self.device.type == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, plan: list) -> list:
        """This rank's batches: every rank gets the same number of steps."""
        if self.world == 1:
            return plan
        usable = len(plan) // self.world * self.world
        return plan[self.rank:usable:self.world]

    def sum(self, values: list[float]) -> list[float]:
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()
