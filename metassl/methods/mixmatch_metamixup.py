"""MixMatch with its mixup weights learned by MetaMixUp: the "MixMatch + MetaMixUp" row of Mai et
al.'s Table III ("we replaced MixUp with our MetaMixUp on MixMatch").

MixMatch's step is unchanged (``mixmatch``: label guessing, sharpening, one shuffle of X̂ ∪ Û,
L_x + λ_u L_u) except where its λ' comes from: the random draw λ ~ Beta(α, α), λ' = max(λ, 1-λ)
is the start, and one meta-gradient step on the meta-validation set through a look-ahead on the
whole MixMatch loss moves it (``lam_meta``). λ' = max(λ, 1-λ) stays part of the mixing, so that
with a zero meta-gradient this is MixMatch itself and a learned λ below 1/2 still leaves each mixed
example closer to its own input. The meta step's settings are a section of their own,
``mixmatch_metamixup.lam.alpha=5``, since ``alpha`` here keeps MixMatch's meaning.

``lambdas.jsonl`` records the λ' used, per pair of the classes of the two rows' targets (the true
label, or the argmax of the sharpened guess) and their training-set indices; its ``alpha`` is
null, as λ' follows no Beta(α, α).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from metassl.methods.base import METHODS
from metassl.methods.lam_meta import LearnedLam, MetaStepConfig
from metassl.methods.mixmatch import MixMatch, MixMatchConfig


@dataclass
class MixMatchMetaMixupConfig(MixMatchConfig):
    lam: MetaStepConfig = field(default_factory=MetaStepConfig)


def fold(lam: torch.Tensor) -> torch.Tensor:
    """MixMatch's λ' = max(λ, 1-λ) (eq. 9)."""
    return torch.maximum(lam, 1.0 - lam)


@METHODS.register("mixmatch_metamixup")
class MixMatchMetaMixup(LearnedLam, MixMatch):
    Config = MixMatchMetaMixupConfig
    parent = "mixmatch"

    def __init__(self, model, optimizer, cfg, ctx):
        super().__init__(model, optimizer, cfg, ctx)
        self.setup_learned_lam(cfg.lam, baseline_alpha=None)

    def mixing_weights(self, loss_of, targets, perm, idx):
        lam, logs = self.learned_lam(lambda forward, lam: loss_of(forward, fold(lam)), self.draw_lam(len(perm)))
        lam = fold(lam)
        classes = targets.argmax(1)
        self.lam_log.add(lam, classes, classes[perm], idx, idx[perm] if idx is not None else None)
        return lam, logs
