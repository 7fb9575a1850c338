"""FlexMatch (Zhang et al., "FlexMatch: Boosting Semi-Supervised Learning with Curriculum Pseudo
Labeling", NeurIPS 2021, Algorithm 1): FixMatch (``fixmatch``) with curriculum pseudo labelling,
one threshold per class that follows how far the model has learned that class.

    ŷ_n    = the class u_n was last predicted with confidence ≥ τ (none before)
    σ_t(c) = |{n : ŷ_n = c}|                              learning effect of class c
    β_t(c) = σ_t(c) / max(max_c σ_t, N - Σ_c σ_t)         N - Σσ: examples never confident yet
    T_t(c) = M(β_t(c)) · τ,   M(x) = x / (2 - x)          the convex mapping
    ℓ_u    = (1/(μB)) Σ_b 1[max q_b ≥ T_t(argmax q_b)] · H(argmax q_b, p(y | A(u_b)))   τ = 0.95

N is the size of the unlabeled set. The N - Σσ term is the threshold warm-up: while most examples
have never been confident, β and with it every threshold stay low, and they rise as the classes are
learned; ``threshold_warmup: false`` normalises by max_c σ_t alone. A step's thresholds come from
ŷ as the earlier steps left it; the batch's confident predictions then update ŷ.

ŷ is kept per position in the training set (``Batch.idx``), -1 for none, and checkpointed.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from metassl.engine.dist import all_gather_cat
from metassl.methods.base import METHODS
from metassl.methods.fixmatch import FixMatch, FixMatchConfig


@dataclass
class FlexMatchConfig(FixMatchConfig):
    threshold_warmup: bool = True  # β normalised by max(max_c σ_t, N - Σ_c σ_t); false: by max_c σ_t


@METHODS.register("flexmatch")
class FlexMatch(FixMatch):
    Config = FlexMatchConfig
    parent = "fixmatch"

    def __init__(self, model, optimizer, cfg, ctx):
        super().__init__(model, optimizer, cfg, ctx)
        if ctx.num_train <= 0 or ctx.num_unlabeled <= 0:
            raise ValueError("flexmatch needs TrainContext.num_train and num_unlabeled (its memory of "
                             "each unlabeled example's confident prediction)")
        self.selected = torch.full((ctx.num_train,), -1, dtype=torch.long, device=ctx.device)

    def class_thresholds(self) -> torch.Tensor:
        """T_t(c) for every class c."""
        sigma = torch.bincount(self.selected + 1, minlength=self.ctx.num_classes + 1)[1:].float()
        norm = sigma.max()
        if self.cfg.threshold_warmup:
            norm = torch.maximum(norm, self.ctx.num_unlabeled - sigma.sum())
        beta = sigma / norm.clamp_min(1.0)
        return beta / (2.0 - beta) * self.cfg.threshold

    def pseudo_targets(self, q, unlabeled, step):
        if unlabeled.idx is None:
            raise ValueError("flexmatch needs the unlabeled batch's positions in the training set (Batch.idx)")
        thresholds = self.class_thresholds()
        conf, pseudo = q.max(1)
        mask = (conf >= thresholds[pseudo]).float()
        seen = all_gather_cat(torch.where(conf >= self.cfg.threshold, pseudo, -1))
        idx = all_gather_cat(unlabeled.idx)
        self.selected[idx] = torch.where(seen >= 0, seen, self.selected[idx])
        return pseudo, mask, {"mask": mask.mean(), "class_threshold": thresholds.mean()}

    def state_dict(self) -> dict:
        return {"selected": self.selected}

    def load_state_dict(self, state: dict) -> None:
        self.selected.copy_(state["selected"])
