"""Pseudo-Label (Lee, "Pseudo-Label: The Simple and Efficient Semi-Supervised Learning Method for
Deep Neural Networks", ICML 2013 workshop).

Unlabeled examples are trained on the class the model itself predicts (eq. 1: y'_i = 1 for the
argmax of f(x)), weighted by α(t) (eq. 15/16): 0 until T1, linear to α_f at T2, then α_f:

    L = CE(f(x_l), y) + α(t) · (1/B_u) Σ_i 1[max f(x_u,i) ≥ τ] · CE(f(x_u,i), argmax f(x_u,i))

Lee labels every unlabeled example; the confidence threshold τ is the refinement that Oliver et
al. ("Realistic Evaluation of Deep Semi-Supervised Learning Algorithms", NeurIPS 2018) found
necessary, with their τ = 0.95 (τ = 0 recovers Lee's rule). Lee's T1 = 100 and T2 = 600 epochs are
given here as fractions of the run, in the same 1:6 proportion (``t1_fraction``, ``t2_fraction``;
``t1_steps`` / ``t2_steps`` give them as step counts). ``meta_gradient: true`` takes the argmax and
the confidence of the meta step's ŷ instead of f(x_u) (``meta_labels``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from metassl.config import bounded, run_fraction, run_length, step_count
from metassl.errors import ConfigError
from metassl.methods.base import METHODS, Method
from metassl.methods.meta_labels import MetaGradientConfig, MetaGradientTarget
from metassl.methods.pseudo import confident_argmax, masked_cross_entropy
from metassl.methods.ramps import linear_rampup


@dataclass
class PseudoLabelConfig(MetaGradientConfig):
    threshold: float = bounded(0.95, 0.0, 1.0)  # τ: confidence a pseudo label needs (0: Lee's rule)
    alpha_f: float = bounded(3.0, 0.0)  # α_f, weight of the unlabeled loss from t2 on
    t1_fraction: float = run_fraction(0.1)    # ramp start
    t1_steps: Optional[int] = step_count()
    t2_fraction: float = run_fraction(0.6)    # full weight from here on
    t2_steps: Optional[int] = step_count()

    def check(self, total_steps: int) -> None:
        """A new run's ramp must not end before it starts (however each end is given)."""
        t1, t2 = (run_length(self, name, total_steps) for name in ("t1", "t2"))
        if t2 < t1:
            given = {name: (f"{name}_steps={getattr(self, f'{name}_steps')}" if getattr(self, f"{name}_steps")
                            is not None else f"{name}_fraction={getattr(self, f'{name}_fraction')}")
                     for name in ("t1", "t2")}
            exc = ConfigError(f"config: pseudo_label.{given['t2']} (step {t2}) comes before pseudo_label."
                              f"{given['t1']} (step {t1}) in a run of {total_steps} steps; the unlabeled "
                              "weight's ramp starts at t1 and is full at t2")
            exc.key = f"pseudo_label.{given['t1'].split('=')[0]}"
            raise exc


@METHODS.register("pseudo_label")
class PseudoLabel(MetaGradientTarget, Method):
    Config = PseudoLabelConfig
    needs_unlabeled = True

    def alpha(self, step: int) -> float:
        t1 = run_length(self.cfg, "t1", self.ctx.total_steps)
        t2 = run_length(self.cfg, "t2", self.ctx.total_steps)
        if step < t1:
            return 0.0
        return self.cfg.alpha_f * linear_rampup(step - t1, t2 - t1)

    def train_step(self, labeled, unlabeled, step):
        b = labeled.x.shape[0]
        logits = self.model(torch.cat([labeled.x, unlabeled.x])).float()
        logits_l, logits_u = logits[:b], logits[b:]
        loss_l = F.cross_entropy(logits_l, labeled.y)
        q, meta_logs = self.meta_target(labeled, unlabeled.x, logits_u.detach().softmax(1))
        pseudo, mask = confident_argmax(q, self.cfg.threshold)
        loss_u = masked_cross_entropy(logits_u, pseudo, mask)
        loss = loss_l + self.alpha(step) * loss_u
        self.optimize(loss)
        return {"loss": loss.detach(), "loss_l": loss_l.detach(), "loss_u": loss_u.detach(),
                "mask": mask.mean(), **meta_logs}
