"""FreeMatch (Wang et al., "FreeMatch: Self-adaptive Thresholding for Semi-supervised Learning",
ICLR 2023): FixMatch (``fixmatch``) with self-adaptive thresholds and a fairness term.

Self-adaptive thresholding, from the weak view's q_b over the unlabeled batch:

    τ_t    = m τ_{t-1} + (1 - m) (1/(μB)) Σ_b max q_b,        τ_0 = 1/C      global
    p̃_t(c) = m p̃_{t-1}(c) + (1 - m) (1/(μB)) Σ_b q_b(c),      p̃_0(c) = 1/C   local
    τ_t(c) = (p̃_t(c) / max_c p̃_t(c)) · τ_t
    ℓ_u    = (1/(μB)) Σ_b 1[max q_b ≥ τ_t(argmax q_b)] · H(argmax q_b, Q_b),  Q_b = p(y | A(u_b))

Self-adaptive fairness, on the strong view's Q_b of the examples that pass:

    p̄ = their mean Q_b,  h̄ = the histogram of their argmax Q_b,  L_f = -H(SumNorm(p̄ / h̄))
    L = ℓ_s + w_u ℓ_u + w_f L_f,   w_u = ``lambda_u`` = 1,  w_f = 0.001

L_f is the negative entropy of the mean probability relative to the histogram, so minimising it
spreads the predictions over the classes. The paper's Eq. 11 writes it as a cross-entropy whose
first argument is the EMA ratio SumNorm(p̃_t / h̃_t), a stand-in for the batch ratio "for
stability" (its authors, USB issue 182); but for a fixed target a, -H(a, b) is largest at b = a, so
minimising it would drive the batch ratio b away from the target, and the entropy is taken as
stated. w_f is
the CIFAR-10 (40 labels) value of USB's configs; m = 0.999, capped at the ``ema_horizon`` length
(``pseudo.horizon_decay``). The thresholds use the batch they are applied to. τ_t and p̃_t are
checkpointed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from metassl.config import bounded, run_fraction, step_count
from metassl.engine.dist import all_reduce_mean
from metassl.methods.base import METHODS
from metassl.methods.fixmatch import FixMatch, FixMatchConfig
from metassl.methods.pseudo import horizon_decay


@dataclass
class FreeMatchConfig(FixMatchConfig):
    fairness_weight: float = bounded(0.001, 0.0)    # w_f
    ema_decay: float = bounded(0.999, 0.0, 1.0)     # m
    ema_horizon_fraction: float = run_fraction(0.05)  # cap on the time constant 1/(1 - m) of the confidence EMAs
    ema_horizon_steps: Optional[int] = step_count()


def fairness(logits_strong: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L_f = -H(SumNorm(p̄ / h̄)) over the rows where ``mask`` is 1; 0 where none is (a class that
    no row predicts has ratio 0)."""
    probs = logits_strong.float().softmax(1)
    count = mask.sum().clamp_min(1.0)
    p_bar = (probs * mask[:, None]).sum(0) / count
    h_bar = (F.one_hot(probs.detach().argmax(1), probs.shape[1]).float() * mask[:, None]).sum(0) / count
    ratio = torch.where(h_bar > 0, p_bar / h_bar.clamp_min(1e-12), torch.zeros_like(p_bar))
    ratio = ratio / ratio.sum().clamp_min(1e-12)
    return (ratio * torch.log(ratio + 1e-12)).sum()


@METHODS.register("freematch")
class FreeMatch(FixMatch):
    Config = FreeMatchConfig
    parent = "fixmatch"

    def __init__(self, model, optimizer, cfg, ctx):
        super().__init__(model, optimizer, cfg, ctx)
        c = ctx.num_classes
        self.decay = horizon_decay(cfg, ctx.total_steps)
        self.tau = torch.full((), 1.0 / c, device=ctx.device)
        self.p_local = torch.full((c,), 1.0 / c, device=ctx.device)

    def pseudo_targets(self, q, unlabeled, step):
        conf, pseudo = q.max(1)
        batch = torch.cat([conf.mean()[None], q.mean(0)])
        all_reduce_mean([batch])
        self.tau.lerp_(batch[0], 1.0 - self.decay)
        self.p_local.lerp_(batch[1:], 1.0 - self.decay)
        thresholds = self.p_local / self.p_local.max() * self.tau
        mask = (conf >= thresholds[pseudo]).float()
        return pseudo, mask, {"mask": mask.mean(), "tau": self.tau.clone()}

    def unlabeled_loss(self, logits_strong, targets, weight):
        loss, logs = super().unlabeled_loss(logits_strong, targets, weight)
        loss_f = fairness(logits_strong, weight)
        return loss + self.cfg.fairness_weight * loss_f, {**logs, "loss_fair": loss_f.detach()}

    def state_dict(self) -> dict:
        return {"tau": self.tau, "p_local": self.p_local}

    def load_state_dict(self, state: dict) -> None:
        self.tau.copy_(state["tau"])
        self.p_local.copy_(state["p_local"])
