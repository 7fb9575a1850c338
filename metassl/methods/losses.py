"""Losses shared by methods."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def one_hot(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    return F.one_hot(y, num_classes).float()


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against soft targets, batch mean (equals KL up to the target's entropy)."""
    return -(target * F.log_softmax(logits.float(), dim=1)).sum(1).mean()
