"""MetaMixUp for semi-supervised learning (Mai et al., Algorithm 2): pseudo labels with
asynchronous pseudo labeling (APL), mixup within the labeled and within the unlabeled batch, and
all B_l + B_u mixing weights learned by MetaMixUp's meta step on the meta-validation set, through
one look-ahead step on MetaLoss = L_s + L_us (lines 9-11). The "MetaMixUp + APL" row of Table III;
``metamixup_pl``, the same with σ_d = 0 (a fixed threshold), is "MetaMixUp + Pseudo-Label". See
``pl_mix`` for the step and ``lam_meta`` for the meta-gradient; the learned λ go to
``lambdas.jsonl`` (pairs by the classes the mixing used: true for labeled, pseudo for unlabeled
examples).
"""
from __future__ import annotations

from dataclasses import dataclass

from metassl.config import bounded
from metassl.methods.base import METHODS
from metassl.methods.lam_meta import LearnedLam, MetaLamConfig
from metassl.methods.mixing import sample_lam
from metassl.methods.pl_mix import APLConfig, PseudoLabelMix


@dataclass
class MetaMixupSSLConfig(MetaLamConfig, APLConfig):
    pass


@dataclass
class MetaMixupPLConfig(MetaMixupSSLConfig):
    sigma_d: float = bounded(0.0, 0.0, 1.0)


@METHODS.register("metamixup_ssl")
class MetaMixupSSL(LearnedLam, PseudoLabelMix):
    Config = MetaMixupSSLConfig
    parent = "mixup_apl"

    def __init__(self, model, optimizer, cfg, ctx):
        super().__init__(model, optimizer, cfg, ctx)
        self.setup_learned_lam(cfg, baseline_alpha=cfg.init_alpha)

    def mixing_weights(self, loss_of, n):
        return self.learned_lam(loss_of, sample_lam(self.cfg.init_alpha, n, self.ctx.device))

    def record(self, lam, y, perm, idx, keep):
        self.lam_log.add(lam, y, y[perm], idx, idx[perm] if idx is not None else None, keep)

    def on_evaluate(self, step, run_dir):
        return {**PseudoLabelMix.on_evaluate(self, step, run_dir), **LearnedLam.on_evaluate(self, step, run_dir)}


@METHODS.register("metamixup_pl")
class MetaMixupPL(MetaMixupSSL):
    Config = MetaMixupPLConfig
    parent = "mixup_pl"
