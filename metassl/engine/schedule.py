"""Learning-rate schedules as pure functions of the step (so resuming needs only the step)."""
from __future__ import annotations

import math

from metassl.config import ScheduleConfig, run_length


def milestones(total_steps: int, cfg: ScheduleConfig) -> list[int]:
    """The ``step`` schedule's decay points in steps (given as steps or as shares of the run)."""
    return list(cfg.milestones) or [round(f * total_steps) for f in cfg.milestones_fraction]


# FixMatch's decay, lr cos(7πk / 16K) (Sohn et al. 2020; TorchSSL's and USB's default): a quarter
# period cut short, so the run ends at cos(7π/16) = 0.195 of the lr rather than at 0.
TRUNCATED_COSINE = 7 / 16


def lr_at(step: int, base_lr: float, total_steps: int, cfg: ScheduleConfig) -> float:
    """Linear warm-up over the ``warmup`` length, then constant, cosine to zero, FixMatch's
    truncated cosine, or step decay (×gamma at each milestone)."""
    warmup = run_length(cfg, "warmup", total_steps)
    if step < warmup:
        return base_lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    if cfg.name == "cosine":
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    if cfg.name == "truncated_cosine":
        return base_lr * math.cos(math.pi * TRUNCATED_COSINE * progress)
    if cfg.name == "step":
        return base_lr * cfg.gamma ** sum(step >= m for m in milestones(total_steps, cfg))
    return base_lr
