"""Meta-gradient pseudo labels, first order (Zhang et al., AISTATS 2021, Sec. 3.1-3.2).

Algorithm 1 with the meta-gradient of Eq. 10-11: the labeled gradient g = ∇G(θ) (Eq. 9), the
derivative d of the pseudo-label score along g by central differences at θ ± εg, ε = 0.01/||g||
(or exactly by one jvp, ``pseudo_grad=jvp``), ŷ = ỹ - β d (Eq. 6); then KL on the labeled batch
+ w_t Φ(f(x_u), ŷ). No mixup: the "meta only" row of Table 4; ``meta_lr=0`` removes the meta step
too (the "neither" row: consistency with the model's own eval-mode predictions).
See ``meta_pl_base`` for the shared step and the scale of β.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from metassl.config import bounded
from metassl.methods.base import METHODS
from metassl.methods.meta_pl_base import FirstOrderConfig, PseudoLabelSSL


@dataclass
class MetaPLConfig(FirstOrderConfig):
    # Weight of the labeled loss in the model update; 0 is Algorithm 1 as boxed, where the labels
    # reach θ only through the pseudo labels.
    supervised_weight: float = bounded(1.0, 0.0)


@METHODS.register("meta_pl")
class MetaPL(PseudoLabelSSL):
    Config = MetaPLConfig
    meta_gradient = True

    def pseudo_labels(self, labeled, x_u):
        if self.cfg.meta_lr == 0:
            return self.predictions(x_u, self.cfg.meta_bn), {}
        return self.meta_step(*self.meta_grad(labeled, x_u))

    def classification_loss(self, labeled, x_u, y_hat):
        if self.cfg.supervised_weight == 0:
            return y_hat.new_zeros(())
        return self.cfg.supervised_weight * F.cross_entropy(self.model(labeled.x).float(), labeled.y)
