"""Learning-rate schedules as pure functions of the step (so resuming needs only the step)."""
from __future__ import annotations

import math

from metassl.config import ScheduleConfig


def lr_at(step: int, base_lr: float, total_steps: int, cfg: ScheduleConfig) -> float:
    """Linear warm-up over ``warmup_steps``, then constant, cosine to zero, or step decay
    (×gamma at each milestone step)."""
    if step < cfg.warmup_steps:
        return base_lr * (step + 1) / cfg.warmup_steps
    if cfg.name == "cosine":
        span = max(1, total_steps - cfg.warmup_steps)
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - cfg.warmup_steps) / span)))
    if cfg.name == "step":
        return base_lr * cfg.gamma ** sum(step >= m for m in cfg.milestones)
    return base_lr
