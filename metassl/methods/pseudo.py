"""Pieces the SSL baselines share: targets built from the model's own predictions, and forward
passes that must leave BatchNorm's running statistics alone."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from metassl.engine.dist import all_reduce_mean
from metassl.engine.ema import horizon_steps


def sharpen(p: torch.Tensor, temperature: float) -> torch.Tensor:
    """p_i^(1/T) / Σ_j p_j^(1/T) (MixMatch eq. 7): T < 1 lowers the entropy, T -> 0 gives one-hot.

    Computed as a softmax of log p / T so that small T does not underflow."""
    return F.softmax(p.float().clamp_min(1e-12).log() / temperature, dim=1)


def confident_argmax(probs: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Hard pseudo-labels argmax p and a float mask of the rows whose max p reaches ``threshold``."""
    conf, labels = probs.max(dim=1)
    return labels, (conf >= threshold).float()


def masked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(1/B) Σ_i mask_i · CE(logits_i, labels_i), labels as class indices or as distributions (rows):
    dropped rows still count in the mean (FixMatch's ℓ_u), so the loss grows as more pseudo-labels
    pass the threshold. ``mask`` may be any per-row weight (SoftMatch's)."""
    return (F.cross_entropy(logits.float(), labels, reduction="none") * mask).mean()


def horizon_decay(cfg, total_steps: int) -> float:
    """``cfg.ema_decay``, the decay of a running statistic of the predictions (FreeMatch's and
    SoftMatch's m), capped so that its time constant 1/(1 - m) is at most the ``ema_horizon``
    length (``ema_horizon_fraction`` of the run, or ``ema_horizon_steps``), the cap the engine puts
    on its weight EMA: a short run's thresholds follow its recent steps instead of still holding
    their initial values at the end. At the default 5%, m = 0.999 applies unchanged from 20000
    steps on; on digits (5 labels per class, mlp_dropout, 600 steps, seeds 0-2) the cap took FreeMatch from
    9.94% to 9.01% test error and SoftMatch from 9.94% to 9.47%, within a seed's spread (about
    1.5). Unlike the weight EMA there is no
    warm-up: the statistics start from the papers' initial values, which are part of the methods."""
    horizon = horizon_steps(cfg, total_steps)
    return cfg.ema_decay if horizon is None else min(cfg.ema_decay, 1.0 - 1.0 / horizon)


class ClassShares:
    """A running estimate of the classes' shares in the model's predictions on unlabeled data,
    and the alignment that divides them out:

        p̂_t   = m p̂_{t-1} + (1 - m) (1/B) Σ_b q_b,      p̂_0 = 1/C
        DA(q) = Normalize(q · (1/C) / p̂_t)

    (SoftMatch's uniform alignment; ReMixMatch's distribution alignment towards equal shares).
    A model that drifts towards a few classes sees those classes' predictions scaled down and the
    others' up, so its guessed labels stop feeding the drift. ``update`` includes the batch it
    aligns; p̂ averages over every rank's batch and belongs in the method's checkpointed state."""

    def __init__(self, num_classes: int, decay: float, device: torch.device):
        self.decay = decay
        self.p_hat = torch.full((num_classes,), 1.0 / num_classes, device=device)

    def update(self, q: torch.Tensor) -> None:
        p_mean = q.mean(0)
        all_reduce_mean([p_mean])
        self.p_hat.lerp_(p_mean, 1.0 - self.decay)

    def align(self, q: torch.Tensor) -> torch.Tensor:
        aligned = q / self.p_hat
        return aligned / aligned.sum(1, keepdim=True)


@contextmanager
def frozen_bn_stats(model: nn.Module) -> Iterator[None]:
    """Forward passes inside still normalise with batch statistics (train mode) but do not move
    the running statistics: auxiliary passes (VAT's perturbed inputs, MixMatch's label guess)
    must not drag the evaluation statistics towards inputs the model is never tested on.

    Momentum 0 rather than a functional call on buffer copies: it needs no parameter dict, works
    unchanged under DistributedDataParallel, and costs nothing. The batch counter is restored too,
    for layers that average cumulatively (momentum None)."""
    norms = [m for m in model.modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats and m.training]
    saved = [(m.momentum, m.num_batches_tracked.clone()) for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, tracked) in zip(norms, saved):
            m.momentum = momentum
            m.num_batches_tracked.copy_(tracked)
