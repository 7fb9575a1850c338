"""FixMatch (Sohn et al., "FixMatch: Simplifying Semi-Supervised Learning with Consistency and
Confidence", NeurIPS 2020, Algorithm 1).

    q_b = p(y | α(u_b))                                          weak view: flip + translate
    ℓ_u = (1/(μB)) Σ_b 1[max q_b ≥ τ] · H(argmax q_b, p(y | A(u_b)))   strong view
    L   = H(y, p(y | α(x))) + λ_u ℓ_u                            τ = 0.95, λ_u = 1

The weak view is the engine's ordinary augmentation (``unlabeled.x``); the strong one is
RandAugment with random magnitudes followed by Cutout (``ctx.strong_augment``,
metassl/data/randaugment.py). The pseudo-label is a fixed hard target: no gradient flows through
q_b.

μ, the ratio of unlabeled to labeled batch size (7 in the paper), is not a key of this section:
the engine draws the unlabeled batch, so μ is ``unlabeled_batch_size / batch_size`` (for μ = 7
with batch_size=64, set unlabeled_batch_size=448).

Labeled, weak and strong images go through one forward pass, as the paper's code concatenates
them so that BatchNorm sees all three.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from metassl.config import bounded
from metassl.methods.base import METHODS, Method
from metassl.methods.pseudo import confident_argmax, masked_cross_entropy


@dataclass
class FixMatchConfig:
    threshold: float = bounded(0.95, 0.0, 1.0)
    lambda_u: float = bounded(1.0, 0.0)


@METHODS.register("fixmatch")
class FixMatch(Method):
    Config = FixMatchConfig
    needs_unlabeled = True

    def __init__(self, model, optimizer, cfg, ctx):
        super().__init__(model, optimizer, cfg, ctx)
        if ctx.strong_augment is None:
            raise ValueError("fixmatch needs TrainContext.strong_augment (the RandAugment + Cutout view)")

    def train_step(self, labeled, unlabeled, step):
        b, bu = labeled.x.shape[0], unlabeled.x.shape[0]
        strong = self.ctx.strong_augment(unlabeled.raw)
        logits = self.model(torch.cat([labeled.x, unlabeled.x, strong])).float()
        logits_x, logits_weak, logits_strong = logits.split([b, bu, bu])
        loss_x = F.cross_entropy(logits_x, labeled.y)
        pseudo, mask = confident_argmax(logits_weak.detach().softmax(1), self.cfg.threshold)
        loss_u = masked_cross_entropy(logits_strong, pseudo, mask)
        loss = loss_x + self.cfg.lambda_u * loss_u
        self.optimize(loss)
        return {"loss": loss.detach(), "loss_x": loss_x.detach(), "loss_u": loss_u.detach(),
                "mask": mask.mean()}
