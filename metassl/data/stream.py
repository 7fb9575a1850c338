"""Infinite, resumable streams of index batches over a fixed index set."""
from __future__ import annotations

import torch


class IndexStream:
    """Yields batches of indices from seeded permutations of ``indices``, epoch after epoch.

    Permutations are drawn on the CPU by a private generator and moved to the device once per
    epoch, so a step costs one slice and no host transfer. Under data parallelism every rank
    draws the same permutation and takes its own slice of each global batch.
    """

    def __init__(self, indices: torch.Tensor, batch_size: int, seed: int, device,
                 rank: int = 0, world_size: int = 1):
        if len(indices) == 0:
            raise ValueError("IndexStream needs at least one index")
        self.indices = indices.to(device)
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.global_batch = batch_size * world_size
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.zeros(0, dtype=torch.long, device=device)
        self.pos = 0

    def _refill(self) -> None:
        n = len(self.indices)
        repeats = -(-self.global_batch // n)  # a set smaller than a batch is repeated
        perm = torch.cat([torch.randperm(n, generator=self.generator) for _ in range(repeats)])
        self.order = self.indices[perm.to(self.indices.device)]
        self.pos = 0

    def next(self) -> torch.Tensor:
        if self.pos + self.global_batch > len(self.order):
            self._refill()
        start = self.pos + self.rank * self.batch_size
        self.pos += self.global_batch
        return self.order[start:start + self.batch_size]

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "order": self.order.cpu(), "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.order = state["order"].to(self.indices.device)
        self.pos = int(state["pos"])
