"""Data-parallel plumbing for torchrun; a single process needs none of it."""
from __future__ import annotations

import os

import torch
import torch.distributed as td
from torch import nn


def init() -> tuple[int, int]:
    """(rank, world_size); starts the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not td.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        td.init_process_group(backend)
    return td.get_rank(), td.get_world_size()


def wrap(model: nn.Module, device: torch.device, world_size: int) -> nn.Module:
    if world_size <= 1:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def all_reduce_mean(tensors: list[torch.Tensor]) -> None:
    """Average tensors across ranks in place (gradients from torch.autograd.grad are not
    reduced by DistributedDataParallel)."""
    if td.is_initialized() and td.get_world_size() > 1:
        for t in tensors:
            td.all_reduce(t)
            t.div_(td.get_world_size())


def all_gather_cat(t: torch.Tensor) -> torch.Tensor:
    """Every rank's ``t`` (same shape on each) concatenated along dim 0, in rank order; ``t`` itself
    in a single process."""
    if not (td.is_initialized() and td.get_world_size() > 1):
        return t
    parts = [torch.empty_like(t) for _ in range(td.get_world_size())]
    td.all_gather(parts, t.contiguous())
    return torch.cat(parts)
