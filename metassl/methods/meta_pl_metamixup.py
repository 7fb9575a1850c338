"""The two papers joined: Zhang et al.'s meta-gradient pseudo labels with cross-domain mixup
("Semi-Supervised Learning with Meta-Gradient", Algorithm 2; ``meta_pl_mixup``), with the Beta-drawn
mixing weights replaced by weights learned as MetaMixUp learns them (Mai et al., Eq. 7-11).

Per iteration: the pseudo labels ŷ take their meta-gradient step exactly as in ``meta_pl_mixup``;
then each λ_i of the pair (i-th labeled, i-th unlabeled example) starts at λ_i ~ Beta(γ, γ) and
moves by one meta-gradient step, through a look-ahead on the cross-domain mixed loss
KL(λ y + (1-λ) ŷ || f(λ x_l + (1-λ) x_u)) (Eq. 12-13), against the loss on a batch of the
meta-validation set (``lam_meta``); the step is then ``meta_pl_mixup``'s with the learned λ. The
consistency term w_t Φ(f(x_u), ŷ) does not involve λ and stays out of the look-ahead, as in
MetaMixUp, whose look-ahead is on the mixed losses (Algorithm 2, line 9).

The meta step's settings are a section of their own, ``meta_pl_metamixup.lam.alpha=5``:
``meta_lr``, ``meta_bn`` and ``fd_radius`` already name the pseudo-label step's. ``lambdas.jsonl``
pairs the labeled example's class with the argmax of the unlabeled one's ŷ; its ``alpha`` is γ.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from metassl.methods.base import METHODS
from metassl.methods.lam_meta import LearnedLam, MetaStepConfig
from metassl.methods.meta_pl_mixup import MetaPLMixup, MetaPLMixupConfig


@dataclass
class MetaPLMetaMixupConfig(MetaPLMixupConfig):
    lam: MetaStepConfig = field(default_factory=MetaStepConfig)


@METHODS.register("meta_pl_metamixup")
class MetaPLMetaMixup(LearnedLam, MetaPLMixup):
    Config = MetaPLMetaMixupConfig
    parent = "meta_pl_mixup"

    def __init__(self, model, optimizer, cfg, ctx):
        super().__init__(model, optimizer, cfg, ctx)
        self.setup_learned_lam(cfg.lam, baseline_alpha=cfg.gamma)
        self.unlabeled_idx, self.lam_logs = None, {}

    def train_step(self, labeled, unlabeled, step):
        # The shared step hands the mixing only the unlabeled images; the record wants their indices.
        self.unlabeled_idx = unlabeled.idx
        return {**super().train_step(labeled, unlabeled, step), **self.lam_logs}

    def mixing_weights(self, loss_of, labeled, y_hat):
        lam, self.lam_logs = self.learned_lam(loss_of, super().mixing_weights(loss_of, labeled, y_hat))
        self.lam_log.add(lam, labeled.y, y_hat.argmax(1), labeled.idx, self.unlabeled_idx)
        return lam
