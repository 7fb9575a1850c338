"""Mixup pieces shared by every method that interpolates examples."""
from __future__ import annotations

import torch


def sample_lam(alpha: float, n: int, device, per_sample: bool = True) -> torch.Tensor:
    """λ ~ Beta(α, α): one per sample, or one for the batch broadcast to ``n``."""
    conc = torch.tensor(float(alpha), device=device)
    beta = torch.distributions.Beta(conc, conc)
    return beta.sample((n,)) if per_sample else beta.sample().expand(n)


def mix(a: torch.Tensor, b: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """λ·a + (1-λ)·b with one λ per row, broadcast over the remaining dimensions."""
    lam = lam.view(-1, *([1] * (a.dim() - 1))).to(a.dtype)
    return b + lam * (a - b)
