"""Losses shared by methods. Every loss is a batch mean; class dimension is 1."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def one_hot(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    return F.one_hot(y, num_classes).float()


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against soft targets (equals KL(target || softmax) up to the target's entropy,
    so its gradient is the KL's)."""
    return -(target * F.log_softmax(logits.float(), dim=1)).sum(1).mean()


def kl_to_target(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """KL(target || softmax(logits)), the value itself (0 log 0 = 0)."""
    log_q = F.log_softmax(logits.float(), dim=1)
    return (torch.xlogy(target, target) - target * log_q).sum(1).mean()


def mse_consistency(probs: torch.Tensor, target: torch.Tensor, class_mean: bool = False) -> torch.Tensor:
    """mean_i ||p_i - t_i||^2 over the batch (sum over classes), or with ``class_mean`` the mean
    over classes too, the unit in which the Π-model, Mean Teacher and MixMatch state their weights."""
    sq = (probs.float() - target.float()).pow(2)
    return sq.mean() if class_mean else sq.sum(1).mean()


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean prediction entropy (entropy minimisation)."""
    log_p = F.log_softmax(logits.float(), dim=1)
    return -(log_p.exp() * log_p).sum(1).mean()
