"""Exponential moving average of a model's weights: the engine evaluates it when enabled, Mean
Teacher uses one as its teacher."""
from __future__ import annotations

import copy
from typing import Optional

import torch
from torch import nn


class ModelEMA:
    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, decay: Optional[float] = None) -> None:
        """θ' <- d·θ' + (1-d)·θ with d = ``decay`` (a schedule's value) or the fixed one; buffers are copied."""
        d = self.decay if decay is None else decay
        ema_params = list(self.module.parameters())
        torch._foreach_lerp_(ema_params, [p.detach() for p in model.parameters()], 1.0 - d)
        for b_ema, b in zip(self.module.buffers(), model.buffers()):
            b_ema.copy_(b)

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state)
