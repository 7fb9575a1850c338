"""The pseudo-label + mixup family of MetaMixUp's SSL extension (Mai et al., Sec. III-C, Algorithm 2),
the rows MixUp+PL, MixUp+APL, MetaMixUp+PL and MetaMixUp+APL of Table III. They differ only in where
the mixing weights come from (λ ~ Beta(α, α), or learned by the meta step of ``lam_meta``) and in
whether the confidence threshold decays (APL).

Each iteration (Algorithm 2):

1. hard pseudo labels ȳ_j = argmax f(x_j; θ) for the unlabeled batch, kept where max f(x_j; θ) ≥ σ
   (line 3; a no-gradient pass that leaves BatchNorm's running statistics alone);
2. mixup within the labeled batch (random pairs) and within the unlabeled batch, with one λ per
   mixed example, B_l + B_u of them (lines 2, 8, 12);
3. Loss = L_s + w L_us (lines 9, 13): cross-entropy against the mixed targets; L_us sums over the
   pseudo-labeled examples and divides by B_u, so it grows as more examples pass σ (FixMatch's
   convention, shared with ``pseudo_label``); w = 1 in the paper;
4. one optimizer step (line 14).

Unlabeled examples under σ contribute nothing: each pseudo-labeled example is mixed with another
pseudo-labeled one (a random cycle through them, ``confident_pairing``), never with an example that
has no label, and the others are left out of the loss. A random pairing of the whole batch followed
by masking every pair that touches an unlabeled-below-σ example would waste a pair for each of them.

Asynchronous pseudo labeling (APL): σ starts at σ_0 = 0.95 and drops by σ_d every K epochs
(σ_d = 0.05, K = 30 of 200 epochs, Sec. IV-B). K is a fraction of the run
(``apl_period_fraction``, 0.15 = 30/200) or a number of steps (``apl_period_steps``; not both). σ_d = 0 keeps
σ fixed: plain pseudo labeling with a confidence threshold (the "+PL" rows).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from metassl.config import bounded, run_fraction, run_length, step_count
from metassl.methods.base import Batch, Method
from metassl.methods.lam_meta import LossOf, mixed_cross_entropy
from metassl.methods.mixing import mix
from metassl.methods.pseudo import confident_argmax, frozen_bn_stats


@dataclass
class APLConfig:
    sigma0: float = bounded(0.95, 0.0, 1.0)                 # initial confidence threshold σ_0
    sigma_d: float = bounded(0.05, 0.0, 1.0)                # drop per period; 0: fixed threshold
    apl_period_fraction: float = run_fraction(0.15)        # K, a fraction of the run
    apl_period_steps: Optional[int] = step_count()          # K in steps
    unlabeled_weight: float = bounded(1.0, 0.0)             # w of L_us


def apl_threshold(step: int, total_steps: int, cfg: APLConfig) -> float:
    """σ_t = max(0, σ_0 - σ_d ⌊t / K⌋)."""
    period = max(1, run_length(cfg, "apl_period", total_steps))
    return max(0.0, cfg.sigma0 - cfg.sigma_d * (step // period))


def confident_pairing(mask: torch.Tensor) -> torch.Tensor:
    """A permutation that pairs every row with mask 1 with another such row (a random cycle through
    them; a lone one is paired with itself) and every other row with itself. Built on the device
    without learning how many rows pass, so no step waits for it."""
    n = mask.numel()
    order = (torch.rand(n, device=mask.device) - mask).argsort()  # rows with mask 1 first
    k = mask.sum().long().clamp_min(1)
    pos = torch.arange(n, device=mask.device)
    partner_pos = torch.where(pos < k, (pos + 1) % k, pos)
    perm = torch.empty_like(order)
    perm[order] = order[partner_pos]
    return perm


class PseudoLabelMix(Method):
    """Steps 1-4 above; a subclass supplies the mixing weights (``mixing_weights``)."""

    needs_unlabeled = True

    def mixing_weights(self, loss_of: LossOf, n: int) -> tuple[torch.Tensor, dict]:
        """λ for the n examples about to be mixed, given the loss as a function of them."""
        raise NotImplementedError

    def threshold(self, step: int) -> float:
        return apl_threshold(step, self.ctx.total_steps, self.cfg)

    @torch.no_grad()
    def pseudo_labels(self, x_u: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
        with frozen_bn_stats(self.model):
            probs = F.softmax(self.model(x_u).float(), dim=1)
        return confident_argmax(probs, sigma)

    def on_evaluate(self, step, run_dir):
        return {"sigma": self.threshold(step)}

    def record(self, lam: torch.Tensor, y: torch.Tensor, perm: torch.Tensor, idx: Optional[torch.Tensor],
               keep: torch.Tensor) -> None:
        """Log the λ just used (methods that learn them)."""

    def train_step(self, labeled: Batch, unlabeled: Batch, step: int):
        b = labeled.x.shape[0]
        y_u, mask = self.pseudo_labels(unlabeled.x, self.threshold(step))
        x = torch.cat([labeled.x, unlabeled.x])
        y = torch.cat([labeled.y, y_u])
        perm = torch.cat([torch.randperm(b, device=x.device), b + confident_pairing(mask)])
        w = self.cfg.unlabeled_weight

        def loss_of(forward, lam):
            per_example = mixed_cross_entropy(forward(mix(x, x[perm], lam)), y, y[perm], lam)
            return per_example[:b].mean() + w * (per_example[b:] * mask).mean()

        lam, logs = self.mixing_weights(loss_of, x.shape[0])
        loss = loss_of(self.model, lam)
        self.optimize(loss)
        idx = torch.cat([labeled.idx, unlabeled.idx]) if labeled.idx is not None and unlabeled.idx is not None else None
        self.record(lam, y, perm, idx, torch.cat([mask.new_ones(b), mask]))
        return {"loss": loss.detach(), "mask": mask.mean(), "lam_mean": lam.mean(), **logs}
