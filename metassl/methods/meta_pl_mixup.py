"""Meta-gradient pseudo labels with cross-domain mixup (Zhang et al., AISTATS 2021, Algorithm 2),
the paper's main method, as the authors' code runs it.

Eval mode: g = ∇ KL(y || f(x_l; θ)) (plain gradient, rank-averaged), ε = 0.01/||g||,
d = (f(x_u; θ + εg) - f(x_u; θ - εg)) / ε, ŷ = ỹ - β d with β = the current learning rate, then
relu and renormalise. Train mode: ``mixup_ssl``'s loss with ŷ, i.e. per-sample λ ~ Beta(γ, γ),
the i-th labeled example mixed with the i-th unlabeled one, KL on the mixed batch + w_t MSE
consistency, w_t linear over 4000 steps. One optimizer step.

The starting labels ỹ are the mean of the perturbed pair, f(x_u; θ) to O(ε²||g||²), instead of a
third forward at θ (``pseudo_grad=jvp``: exact ỹ and d from one forward-mode pass, slower).
"""
from __future__ import annotations

from dataclasses import dataclass

from metassl.config import bounded
from metassl.methods.base import METHODS
from metassl.methods.meta_pl_base import FirstOrderConfig
from metassl.methods.mixup_ssl import MixupSSL


@dataclass
class MetaPLMixupConfig(FirstOrderConfig):
    gamma: float = bounded(1.0, 0.0, lo_open=True)  # λ ~ Beta(γ, γ)


@METHODS.register("meta_pl_mixup")
class MetaPLMixup(MixupSSL):
    Config = MetaPLMixupConfig
    parent = "mixup_ssl"
    meta_gradient = True

    def pseudo_labels(self, labeled, x_u):
        return self.meta_step(*self.meta_grad(labeled, x_u))
