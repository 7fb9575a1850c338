"""SoftMatch (Chen et al., "SoftMatch: Addressing the Quantity-Quality Trade-off in Semi-supervised
Learning", ICLR 2023): FixMatch (``fixmatch``) with a soft weight of the confidence in place of
the threshold.

Uniform alignment, the weak view's q_b moved towards equal class shares:

    p̂_t   = m p̂_{t-1} + (1 - m) (1/(μB)) Σ_b q_b,                  p̂_0 = 1/C
    UA(q) = Normalize(q · (1/C) / p̂_t)

The truncated-Gaussian weight of the aligned confidence c_b = max UA(q_b):

    μ_t    = m μ_{t-1} + (1 - m) mean_b c_b,                          μ_0 = 1/C
    σ²_t   = m σ²_{t-1} + (1 - m) var_b c_b  (unbiased),               σ²_0 = 1
    λ(q_b) = exp(-(c_b - μ_t)² / (2σ²_t)) where c_b < μ_t, else 1     (λ_max = 1)
    ℓ_u    = (1/(μB)) Σ_b λ(q_b) · H(argmax q_b, p(y | A(u_b)))

Every example contributes, the less confident ones less: a soft threshold at μ_t that σ_t
widens. The pseudo label is the argmax of q_b itself; the alignment enters the weight only.
m = 0.999, capped at the ``ema_horizon`` length (``pseudo.horizon_decay``); the estimates include
the batch they weight. p̂_t, μ_t and σ²_t are checkpointed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from metassl.config import bounded, run_fraction, step_count
from metassl.engine.dist import all_reduce_mean
from metassl.meta import world_size
from metassl.methods.base import METHODS
from metassl.methods.fixmatch import FixMatch
from metassl.methods.meta_labels import MetaGradientConfig
from metassl.methods.pseudo import ClassShares, horizon_decay


@dataclass
class SoftMatchConfig(MetaGradientConfig):
    lambda_u: float = bounded(1.0, 0.0)              # λ_u, weight of the unlabeled loss
    ema_decay: float = bounded(0.999, 0.0, 1.0)     # m
    ema_horizon_fraction: float = run_fraction(0.05)  # cap on the time constant 1/(1 - m) of the confidence EMAs
    ema_horizon_steps: Optional[int] = step_count()


@METHODS.register("softmatch")
class SoftMatch(FixMatch):
    Config = SoftMatchConfig
    parent = "fixmatch"

    def __init__(self, model, optimizer, cfg, ctx):
        super().__init__(model, optimizer, cfg, ctx)
        c = ctx.num_classes
        self.decay = horizon_decay(cfg, ctx.total_steps)
        self.shares = ClassShares(c, self.decay, ctx.device)
        self.mu = torch.full((), 1.0 / c, device=ctx.device)
        self.var = torch.ones((), device=ctx.device)

    def pseudo_targets(self, q, unlabeled, step):
        keep = 1.0 - self.decay
        self.shares.update(q)
        conf = self.shares.align(q).max(1).values
        # Mean and mean square over every rank's batch, for the unbiased variance of their union.
        moments = torch.stack([conf.mean(), conf.square().mean()])
        all_reduce_mean([moments])
        n = conf.numel() * world_size()
        batch_var = (moments[1] - moments[0].square()).clamp_min(0.0) * (n / max(n - 1, 1))
        self.mu.lerp_(moments[0], keep)
        self.var.lerp_(batch_var, keep)
        weight = torch.exp(-(conf - self.mu).clamp_max(0.0).square() / (2.0 * self.var))
        return q.argmax(1), weight, {"mask": weight.mean(), "mu": self.mu.clone()}

    def state_dict(self) -> dict:
        return {"p_hat": self.shares.p_hat, "mu": self.mu, "var": self.var}

    def load_state_dict(self, state: dict) -> None:
        self.shares.p_hat.copy_(state["p_hat"])
        for name in ("mu", "var"):
            getattr(self, name).copy_(state[name])
