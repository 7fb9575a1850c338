"""Π-model (Laine & Aila, "Temporal Ensembling for Semi-Supervised Learning", ICLR 2017, Alg. 1).

Every example of the minibatch, labeled or not, is evaluated twice under independent stochastic
augmentation, giving z_i and z̃_i; the loss is

    L = CE(z_l, y) + w(t) · (1/(C·|B|)) Σ_{i∈B} ||softmax(z_i) - softmax(z̃_i)||²

with w(t) = w_max · exp(-5 (1 - t/T)²) over the first ``rampup_fraction`` of the run (80 of their
300 epochs) and w_max = 100 on this class-averaged squared error. Gradients flow through both
evaluations, as in the paper.

Laine & Aila scale w_max by M/N because their cross-entropy is summed over the labeled part of a
mixed batch and divided by the whole batch size; with a separate labeled batch whose loss is its
own mean, as here, that factor is already absent, so w_max applies unscaled.

The 2·(B_l + B_u) images go through one forward pass: BatchNorm normalises both evaluations with
the same statistics, so only the augmentation differs between them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from metassl.config import bounded, run_fraction, step_count
from metassl.methods.base import METHODS, Method
from metassl.methods.losses import mse_consistency
from metassl.methods.ramps import run_rampup


@dataclass
class PiModelConfig:
    w_max: float = bounded(100.0, 0.0)  # consistency weight after the sigmoid ramp-up
    rampup_fraction: float = run_fraction(0.27)  # sigmoid ramp-up of w, a share of the run
    rampup_steps: Optional[int] = step_count()


@METHODS.register("pi_model")
class PiModel(Method):
    Config = PiModelConfig
    needs_unlabeled = True

    def train_step(self, labeled, unlabeled, step):
        b = labeled.x.shape[0]
        first = torch.cat([labeled.x, unlabeled.x])
        second = self.ctx.augment(torch.cat([labeled.raw, unlabeled.raw]))
        z, z_tilde = self.model(torch.cat([first, second])).float().chunk(2)
        loss_l = F.cross_entropy(z[:b], labeled.y)
        loss_cons = mse_consistency(z.softmax(1), z_tilde.softmax(1), class_mean=True)
        ramp = run_rampup("sigmoid", step, self.cfg, self.ctx.total_steps)
        w = self.cfg.w_max * ramp
        loss = loss_l + w * loss_cons
        self.optimize(loss)
        return {"loss": loss.detach(), "loss_l": loss_l.detach(), "loss_cons": loss_cons.detach()}
