"""MixUp + pseudo labels with λ ~ Beta(α, α): the "MixUp + Pseudo-Label" (``mixup_pl``, fixed
threshold σ = 0.95) and "MixUp + APL" (``mixup_apl``, σ lowered by 0.05 every 15% of the run) rows
of MetaMixUp's Table III (Mai et al., Sec. III-C). One λ per mixed example; see ``pl_mix`` for the
step, and ``metamixup_ssl`` for the same with learned λ.
"""
from __future__ import annotations

from dataclasses import dataclass

from metassl.config import bounded
from metassl.methods.base import METHODS
from metassl.methods.mixing import sample_lam
from metassl.methods.pl_mix import APLConfig, PseudoLabelMix


@dataclass
class MixupPLConfig(APLConfig):
    sigma_d: float = bounded(0.0, 0.0, 1.0)
    alpha: float = bounded(1.0, 0.0, lo_open=True)  # λ ~ Beta(α, α)


@dataclass
class MixupAPLConfig(MixupPLConfig):
    sigma_d: float = bounded(0.05, 0.0, 1.0)


@METHODS.register("mixup_pl")
class MixupPL(PseudoLabelMix):
    Config = MixupPLConfig

    def mixing_weights(self, loss_of, n):
        return sample_lam(self.cfg.alpha, n, self.ctx.device), {}


@METHODS.register("mixup_apl")
class MixupAPL(MixupPL):
    Config = MixupAPLConfig
