"""Supervised baseline: cross-entropy on the labeled batch only."""
from __future__ import annotations

import torch.nn.functional as F

from metassl.methods.base import METHODS, Method


@METHODS.register("supervised")
class Supervised(Method):
    def train_step(self, labeled, unlabeled, step):
        loss = F.cross_entropy(self.model(labeled.x).float(), labeled.y)
        self.optimize(loss)
        return {"loss": loss.detach()}
