"""MixUp (Zhang et al. 2018): train on convex combinations of example pairs and their labels.

x̃ = λ·x_i + (1-λ)·x_j,  ỹ = λ·y_i + (1-λ)·y_j, with j a permutation of the batch and
λ ~ Beta(α, α) drawn once per batch or once per sample, or a fixed λ (MetaMixUp Table II).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from metassl.config import bounded
from metassl.methods.base import METHODS, Method
from metassl.methods.losses import one_hot, soft_cross_entropy
from metassl.methods.mixing import mix, sample_lam


@dataclass
class MixupConfig:
    alpha: float = bounded(1.0, 0.0, lo_open=True)  # λ ~ Beta(α, α)
    lam_mode: Literal["batch", "sample", "fixed"] = "batch"  # λ drawn per batch, per sample, or fixed_lam
    fixed_lam: float = bounded(0.5, 0.0, 1.0)  # λ of lam_mode=fixed


@METHODS.register("mixup")
class Mixup(Method):
    Config = MixupConfig

    def draw_lam(self, n: int) -> torch.Tensor:
        if self.cfg.lam_mode == "fixed":
            return torch.full((n,), self.cfg.fixed_lam, device=self.ctx.device)
        return sample_lam(self.cfg.alpha, n, self.ctx.device, per_sample=self.cfg.lam_mode == "sample")

    def train_step(self, labeled, unlabeled, step):
        x, y = labeled.x, one_hot(labeled.y, self.ctx.num_classes)
        perm = torch.randperm(x.shape[0], device=x.device)
        lam = self.draw_lam(x.shape[0])
        loss = soft_cross_entropy(self.model(mix(x, x[perm], lam)), mix(y, y[perm], lam))
        self.optimize(loss)
        return {"loss": loss.detach()}
