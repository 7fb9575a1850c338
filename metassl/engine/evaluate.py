"""Batched evaluation on tensors held on the device."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, normalize: Callable, batch_size: int,
                   autocast: Callable) -> torch.Tensor:
    was_training = model.training
    model.eval()
    outs = []
    with autocast():
        for start in range(0, len(x), batch_size):
            outs.append(model(normalize(x[start:start + batch_size])).float())
    model.train(was_training)
    return torch.cat(outs) if outs else torch.zeros(0)


def error_rate(model, x, y, normalize, batch_size, autocast) -> float | None:
    """Top-1 error in percent, or None for an empty set."""
    if x is None or len(x) == 0:
        return None
    pred = predict_logits(model, x, normalize, batch_size, autocast).argmax(1)
    return 100.0 * (pred != y).float().mean().item()
