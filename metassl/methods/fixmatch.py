"""FixMatch (Sohn et al., "FixMatch: Simplifying Semi-Supervised Learning with Consistency and
Confidence", NeurIPS 2020, Algorithm 1).

    q_b = p(y | α(u_b))                                          weak view: flip + translate
    ℓ_u = (1/(μB)) Σ_b 1[max q_b ≥ τ] · H(argmax q_b, p(y | A(u_b)))   strong view
    L   = H(y, p(y | α(x))) + λ_u ℓ_u                            τ = 0.95, λ_u = 1

The weak view is the engine's ordinary augmentation (``unlabeled.x``); the strong one is
RandAugment with random magnitudes followed by Cutout (``ctx.strong_augment``,
metassl/data/randaugment.py). The pseudo-label is a fixed hard target: no gradient flows through
q_b.

μ, the ratio of unlabeled to labeled batch size, is the paper's 7 unless ``unlabeled_batch_size``
is set (the engine draws the unlabeled batch: μ = ``unlabeled_batch_size / batch_size``).

Labeled, weak and strong images go through one forward pass, as the paper's code concatenates
them so that BatchNorm sees all three.

The step is the frame of the whole family (UDA, FlexMatch, FreeMatch, SoftMatch): each replaces
``pseudo_targets`` (which targets the strong view gets, with which weights), and UDA the labeled
loss, FreeMatch the unlabeled one. ``meta_gradient: true`` replaces q_b by the meta step's ŷ_b
before any of them (``meta_labels``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from metassl.config import bounded
from metassl.methods.base import METHODS, Batch, Method
from metassl.methods.meta_labels import MetaGradientConfig, MetaGradientTarget
from metassl.methods.pseudo import confident_argmax, masked_cross_entropy


@dataclass
class FixMatchConfig(MetaGradientConfig):
    threshold: float = bounded(0.95, 0.0, 1.0)  # τ: confidence a weak view's argmax needs to be a target
    lambda_u: float = bounded(1.0, 0.0)  # λ_u, weight of the unlabeled loss


@METHODS.register("fixmatch")
class FixMatch(MetaGradientTarget, Method):
    Config = FixMatchConfig
    needs_unlabeled = True
    unlabeled_ratio = 7

    def __init__(self, model, optimizer, cfg, ctx):
        super().__init__(model, optimizer, cfg, ctx)
        if ctx.strong_augment is None:
            raise ValueError(f"{type(self).__name__.lower()} needs TrainContext.strong_augment "
                             "(the RandAugment + Cutout view)")

    def train_step(self, labeled, unlabeled, step):
        b, bu = labeled.x.shape[0], unlabeled.x.shape[0]
        strong = self.ctx.strong_augment(unlabeled.raw)
        logits = self.model(torch.cat([labeled.x, unlabeled.x, strong])).float()
        logits_x, logits_weak, logits_strong = logits.split([b, bu, bu])
        loss_x, logs = self.supervised_loss(logits_x, labeled.y, step)
        q, meta_logs = self.meta_target(labeled, unlabeled.x, logits_weak.detach().softmax(1))
        targets, weight, target_logs = self.pseudo_targets(q, unlabeled, step)
        loss_u, u_logs = self.unlabeled_loss(logits_strong, targets, weight)
        loss = loss_x + loss_u
        self.optimize(loss)
        return {"loss": loss.detach(), "loss_x": loss_x.detach(), **u_logs, **target_logs, **logs, **meta_logs}

    def supervised_loss(self, logits_x: torch.Tensor, y: torch.Tensor, step: int) -> tuple[torch.Tensor, dict]:
        """H(y, p(y | α(x))) and scalars to log."""
        return F.cross_entropy(logits_x, y), {}

    def pseudo_targets(self, q: torch.Tensor, unlabeled: Batch, step: int) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """From the weak view's distributions q: the strong view's targets (class indices or
        distributions), their per-example weights, and scalars to log."""
        pseudo, mask = confident_argmax(q, self.cfg.threshold)
        return pseudo, mask, {"mask": mask.mean()}

    def unlabeled_loss(self, logits_strong: torch.Tensor, targets: torch.Tensor,
                       weight: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """λ_u ℓ_u, the unlabeled part of L, and scalars to log."""
        loss_u = masked_cross_entropy(logits_strong, targets, weight)
        return self.cfg.lambda_u * loss_u, {"loss_u": loss_u.detach()}
