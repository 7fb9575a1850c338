"""MetaMixUp for supervised learning (Mai et al., "MetaMixUp: Learning Adaptive Interpolation Policy
of MixUp with Meta-Learning", Algorithm 1).

Each iteration pairs the batch with a permutation of itself, x̃_i = λ_i x_i + (1-λ_i) x_j,
ỹ_i = λ_i y_i + (1-λ_i) y_j (Eq. 4), with one λ_i per pair: random at first, then moved by one
meta-gradient step so that one SGD step on the mixed batch would lower the loss on a batch of the
meta-validation set (Eq. 7-11, ``lam_meta``). The batch is re-mixed with the learned λ* for the
real update. ``metamixup.grad=exact|first_order`` picks how the meta-gradient is taken; the
learned λ go to ``lambdas.jsonl`` at every evaluation (``lam_record``).
"""
from __future__ import annotations

import torch

from metassl.methods.base import METHODS, Method
from metassl.methods.lam_meta import LearnedLam, MetaLamConfig, mixed_cross_entropy
from metassl.methods.mixing import mix, sample_lam


@METHODS.register("metamixup")
class MetaMixup(LearnedLam, Method):
    Config = MetaLamConfig
    parent = "mixup"

    def __init__(self, model, optimizer, cfg, ctx):
        super().__init__(model, optimizer, cfg, ctx)
        self.setup_learned_lam(cfg, baseline_alpha=cfg.init_alpha)

    def train_step(self, labeled, unlabeled, step):
        x, y = labeled.x, labeled.y
        perm = torch.randperm(x.shape[0], device=x.device)

        def loss_of(forward, lam):
            return mixed_cross_entropy(forward(mix(x, x[perm], lam)), y, y[perm], lam).mean()

        lam, logs = self.learned_lam(loss_of, sample_lam(self.cfg.init_alpha, x.shape[0], x.device))
        loss = loss_of(self.model, lam)
        self.optimize(loss)
        idx = labeled.idx
        self.lam_log.add(lam, y, y[perm], idx, idx[perm] if idx is not None else None)
        return {"loss": loss.detach(), "lam_mean": lam.mean(), **logs}
