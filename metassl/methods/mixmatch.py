"""MixMatch (Berthelot et al., "MixMatch: A Holistic Approach to Semi-Supervised Learning",
NeurIPS 2019, Algorithm 1).

    q_b  = Sharpen((1/K) Σ_k p(y | û_{b,k}), T)                  (eqs. 6, 7: K = 2, T = 0.5)
    W    = Shuffle(Concat(X̂, Û)),  X' = MixUp(X̂_i, W_i),  U' = MixUp(Û_i, W_{i+|X̂|})
    MixUp: λ ~ Beta(α, α), λ' = max(λ, 1 - λ)                     (eqs. 8-11: α = 0.75)
    L    = (1/|X'|) Σ H(p, f(x')) + λ_u (1/(L|U'|)) Σ ||q - f(u')||²   (eqs. 2-5: λ_u = 75)

λ' ≥ 1/2 keeps each mixed example closer to its own input, so X' stays mostly labeled and U' mostly
unlabeled. λ is drawn per example, as in the authors' code.

λ_u ramps up linearly. The paper ramps over 16384 of its 2^20 steps, 1/64 of the run; in runs of a
few thousand steps that is a few dozen steps, full weight arrives before the guesses mean
anything, and the model collapses onto a few classes (digits with 5 labels per class and an MLP:
33% test error against supervised's 17%; 86% at lr 0.01). The default ramps over the first 40%,
the consistency ramp of Oliver et al.'s unified protocol (200k of 500k steps);
``mixmatch.rampup_fraction=0.015625`` restores the paper's fraction.

BatchNorm. The label guess runs without gradients under ``frozen_bn_stats``: batch statistics,
running statistics untouched (the authors' code keeps only the training pass's updates). X' and
U' then go through one forward pass together. The paper's code interleaves labeled and unlabeled
examples across its separate per-batch passes so that each pass's batch statistics represent the
whole mixed batch rather than the labeled part alone; a single concatenated pass computes exactly
those whole-batch statistics, so interleaving has nothing left to fix.

``distribution_alignment: true`` divides the mean prediction by the running class shares of the
model's unlabeled predictions before anything else uses it (ReMixMatch's distribution alignment
towards equal shares, ``pseudo.ClassShares``; the running mean's time constant is 128 steps,
ReMixMatch's window of 128 batches, capped at the ``ema_horizon`` length of the run). At its
defaults on Fashion-MNIST, 1000 labels, the guesses drift: by the end of a 12000-step run the
model calls 1913 of the 10000 test images coat and 491 pullover (see the README's
fashion-ssl-long).

``meta_gradient: true`` moves the mean prediction by the meta step (Φ = squared error) before it is
sharpened (``meta_labels``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from metassl.config import bounded, run_fraction, step_count
from metassl.methods.base import METHODS, Batch, Method
from metassl.methods.losses import mse_consistency, one_hot, soft_cross_entropy
from metassl.methods.meta_labels import MetaGradientConfig, MetaGradientTarget
from metassl.methods.mixing import mix, sample_lam
from metassl.engine.ema import horizon_steps
from metassl.methods.pseudo import ClassShares, frozen_bn_stats, sharpen
from metassl.methods.ramps import run_rampup


@dataclass
class MixMatchConfig(MetaGradientConfig):
    k: int = bounded(2, 1)  # K augmentations of each unlabeled example for its label guess
    temperature: float = bounded(0.5, 0.0, lo_open=True)  # T of the sharpening
    alpha: float = bounded(0.75, 0.0, lo_open=True)  # λ ~ Beta(α, α), λ' = max(λ, 1 - λ)
    lambda_u: float = bounded(75.0, 0.0)  # λ_u, weight of the unlabeled squared error after the ramp
    rampup_fraction: float = run_fraction(0.4)  # linear ramp-up of λ_u, a share of the run
    rampup_steps: Optional[int] = step_count()
    distribution_alignment: bool = False  # divide the guesses by the running class shares of the predictions
    ema_horizon_fraction: float = run_fraction(0.05)  # cap on the class shares' time constant of 128 steps
    ema_horizon_steps: Optional[int] = step_count()


ALIGNMENT_WINDOW = 128  # ReMixMatch's running mean over the last 128 batches, as a time constant


@METHODS.register("mixmatch")
class MixMatch(MetaGradientTarget, Method):
    Config = MixMatchConfig
    needs_unlabeled = True
    meta_score = "mse"

    def __init__(self, model, optimizer, cfg, ctx):
        super().__init__(model, optimizer, cfg, ctx)
        self.shares = None
        if cfg.distribution_alignment:
            horizon = horizon_steps(cfg, ctx.total_steps)
            window = ALIGNMENT_WINDOW if horizon is None else min(ALIGNMENT_WINDOW, horizon)
            self.shares = ClassShares(ctx.num_classes, 1.0 - 1.0 / window, ctx.device)

    def draw_lam(self, n: int) -> torch.Tensor:
        lam = sample_lam(self.cfg.alpha, n, self.ctx.device, per_sample=True)
        return torch.maximum(lam, 1.0 - lam)

    def mixing_weights(self, loss_of, targets: torch.Tensor, perm: torch.Tensor,
                       idx: Optional[torch.Tensor]) -> tuple[torch.Tensor, dict]:
        """λ' for mixing row i of X̂ ∪ Û with row perm_i, and scalars to log. ``loss_of(forward, λ')``
        is the step's loss as a function of them, ``targets`` and ``idx`` the rows' label
        distributions and training-set indices: ``mixmatch_metamixup`` learns λ' from the loss and
        records the pairs."""
        return self.draw_lam(len(perm)), {}

    @torch.no_grad()
    def mean_prediction(self, u_hat: torch.Tensor, k: int) -> torch.Tensor:
        with frozen_bn_stats(self.model):
            p = self.model(u_hat).float().softmax(1)
        p = p.view(k, -1, p.shape[1]).mean(0)
        if self.shares is None:
            return p
        self.shares.update(p)
        return self.shares.align(p)

    def guess_labels(self, u_hat: torch.Tensor, k: int, labeled: Batch) -> tuple[torch.Tensor, dict]:
        """q_b (eqs. 6-7): the mean prediction over the K views (the meta step's ŷ where
        ``meta_gradient`` is on, its look-ahead on the first view), sharpened; and scalars to log."""
        p, logs = self.meta_target(labeled, u_hat[: len(u_hat) // k], self.mean_prediction(u_hat, k))
        return sharpen(p, self.cfg.temperature), logs

    def train_step(self, labeled, unlabeled, step):
        k, b = self.cfg.k, labeled.x.shape[0]
        u_hat = torch.cat([unlabeled.x] + [self.ctx.augment(unlabeled.raw) for _ in range(k - 1)])
        q, meta_logs = self.guess_labels(u_hat, k, labeled)
        x_all = torch.cat([labeled.x, u_hat])
        y_all = torch.cat([one_hot(labeled.y, self.ctx.num_classes), q.repeat(k, 1)])
        w = torch.randperm(x_all.shape[0], device=x_all.device)
        ramp = run_rampup("linear", step, self.cfg, self.ctx.total_steps)
        lambda_u = self.cfg.lambda_u * ramp

        def losses(forward, lam):
            x_mixed, y_mixed = mix(x_all, x_all[w], lam), mix(y_all, y_all[w], lam)
            logits = forward(x_mixed).float()
            loss_x = soft_cross_entropy(logits[:b], y_mixed[:b])
            loss_u = mse_consistency(logits[b:].softmax(1), y_mixed[b:], class_mean=True)
            return loss_x + lambda_u * loss_u, loss_x, loss_u

        idx = (torch.cat([labeled.idx] + [unlabeled.idx] * k)
               if labeled.idx is not None and unlabeled.idx is not None else None)
        lam, logs = self.mixing_weights(lambda forward, lam: losses(forward, lam)[0], y_all, w, idx)
        loss, loss_x, loss_u = losses(self.model, lam)
        self.optimize(loss)
        return {"loss": loss.detach(), "loss_x": loss_x.detach(), "loss_u": loss_u.detach(), **logs, **meta_logs}

    def state_dict(self) -> dict:
        return {} if self.shares is None else {"p_hat": self.shares.p_hat}

    def load_state_dict(self, state: dict) -> None:
        if self.shares is not None:
            self.shares.p_hat.copy_(state["p_hat"])
