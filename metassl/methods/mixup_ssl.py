"""Cross-domain mixup SSL: Zhang et al. (AISTATS 2021) Algorithm 2 without the meta step, the
"Mix-Up only" row of Table 4.

Pseudo labels are the current eval-mode predictions ỹ = f(x_u; θ). The i-th labeled example is
mixed with the i-th unlabeled one, λ_i ~ Beta(γ, γ) per sample (Eq. 12):
x_i^in = λ_i x_i^l + (1 - λ_i) x_i^u, y_i^in = λ_i y_i + (1 - λ_i) ŷ_i; the loss is
KL(y^in || f(x^in)) + w_t Φ(f(x_u), ŷ) (Eq. 13). ``meta_pl_mixup`` adds the meta step to ŷ.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from metassl.config import bounded
from metassl.errors import ConfigError
from metassl.methods.base import METHODS
from metassl.methods.losses import kl_to_target, one_hot
from metassl.methods.meta_pl_base import ConsistencyConfig, PseudoLabelSSL
from metassl.methods.mixing import mix, sample_lam


@dataclass
class MixupSSLConfig(ConsistencyConfig):
    gamma: float = bounded(1.0, 0.0, lo_open=True)  # λ ~ Beta(γ, γ)


@METHODS.register("mixup_ssl")
class MixupSSL(PseudoLabelSSL):
    Config = MixupSSLConfig

    def pseudo_labels(self, labeled, x_u):
        return self.predictions(x_u), {}

    def mixing_weights(self, loss_of, labeled, y_hat) -> torch.Tensor:
        """λ for mixing the i-th labeled with the i-th unlabeled example. ``loss_of(forward, λ)`` is
        the classification loss as a function of them: ``meta_pl_metamixup`` learns λ from it."""
        return sample_lam(self.cfg.gamma, len(y_hat), y_hat.device, per_sample=True)

    def classification_loss(self, labeled, x_u, y_hat):
        x_l = labeled.x
        if x_l.shape[0] != x_u.shape[0]:
            raise ConfigError(f"config: {type(self).__name__} mixes the i-th labeled with the i-th unlabeled "
                              f"example, so unlabeled_batch_size must equal batch_size "
                              f"(got {x_u.shape[0]} and {x_l.shape[0]})")
        y_l = one_hot(labeled.y, self.ctx.num_classes)

        def loss_of(forward, lam):
            return kl_to_target(forward(mix(x_l, x_u, lam)), mix(y_l, y_hat, lam))

        return loss_of(self.model, self.mixing_weights(loss_of, labeled, y_hat))
