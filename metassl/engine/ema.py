"""Exponential moving average of a model's weights: the engine evaluates it when enabled, Mean
Teacher uses one as its teacher.

The decay in effect at step t is never older than the run:

    d_t = min(d, 1 - 1/(t + 1), 1 - 1/H)

The second term is Mean Teacher's warm-up (the average of the t + 1 weights that exist, not of
the initialisation); the third caps the average's time constant 1/(1 - d) at the horizon H, a
length of the run (``ema_horizon_fraction`` / ``ema_horizon_steps``; a length of 0: no cap), so
a short run never evaluates an average dominated by its first steps. Long runs reach the decay as given: with the
default horizon of 5% of the run, d = 0.999 applies unchanged from 20000 steps on.
"""
from __future__ import annotations

import copy
from typing import Optional

import torch
from torch import nn

from metassl.config import run_length


def horizon_steps(cfg, total_steps: int) -> Optional[int]:
    """The horizon H of ``cfg``'s ``ema_horizon`` length in a run of ``total_steps``: None (no
    cap) where the length is given as 0, else at least one step (a share that rounds to 0 steps
    in a very short run caps at one)."""
    count, share = cfg.ema_horizon_steps, cfg.ema_horizon_fraction
    if count == 0 or (count is None and share == 0):
        return None
    return max(1, run_length(cfg, "ema_horizon", total_steps))


def effective_decay(decay: float, step: int, horizon: Optional[int] = None) -> float:
    """d_t above; ``horizon`` None or 0 leaves the time constant uncapped."""
    d = min(decay, 1.0 - 1.0 / (step + 1))
    if horizon:
        d = min(d, 1.0 - 1.0 / horizon)
    return max(0.0, d)


class ModelEMA:
    def __init__(self, model: nn.Module, decay: float, horizon: Optional[int] = None):
        self.decay, self.horizon = decay, horizon
        self.last_decay: Optional[float] = None
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int, decay: Optional[float] = None) -> None:
        """θ' <- d_t·θ' + (1-d_t)·θ, d_t the effective decay at ``step`` of ``decay`` (a schedule's
        value) or the fixed one; buffers are copied."""
        d = effective_decay(self.decay if decay is None else decay, step, self.horizon)
        self.last_decay = d
        ema_params = list(self.module.parameters())
        torch._foreach_lerp_(ema_params, [p.detach() for p in model.parameters()], 1.0 - d)
        for b_ema, b in zip(self.module.buffers(), model.buffers()):
            b_ema.copy_(b)

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state)
