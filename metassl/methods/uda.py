"""UDA (Xie et al., "Unsupervised Data Augmentation for Consistency Training", NeurIPS 2020), on
FixMatch's weak and strong views (``fixmatch``).

    q_b  = Sharpen(p(y | α(u_b)), T)                                 T = 0.4   (sharpening)
    ℓ_u  = (1/(μB)) Σ_b 1[max p(y | α(u_b)) ≥ β] · H(q_b, p(y | A(u_b)))   β = 0.8   (confidence mask)
    ℓ_s  = (1/Z) Σ_i 1[p(y_i | x_i) ≤ η_t] · H(y_i, p(y | x_i)),  Z = max(Σ_i 1[...], 1)   (TSA)
    L    = ℓ_s + λ ℓ_u                                               λ = 1

H(q, ·) is the KL divergence to q up to q's entropy, so it has the KL's gradient. Training-signal
annealing drops a labeled example from ℓ_s once its correct-class probability exceeds
η_t = α_t (1 - 1/K) + 1/K, which rises from 1/K to 1 over the ``tsa`` length (the whole run by
default, ``tsa_fraction`` / ``tsa_steps``) with τ = t / length:

    linear  α_t = τ,    log  α_t = 1 - exp(-5τ),    exp  α_t = exp(5(τ - 1)).

TSA is off by default (``tsa=none``), as in USB's UDA configs, the runs behind its tables. The
paper advises the exp schedule where the labeled set is small enough to overfit quickly; on
digits with 5 labels per class (mlp_dropout, 600 steps, seeds 0-2) every schedule cost accuracy, test
error 18.3% (exp), 15.3% (log), 17.6% (linear) against 9.8% without, and supervised's 18.3%:
holding the labeled predictions under η_t keeps the weak view's confidence under β, so the
unlabeled loss stays masked (seed 0 at step 200: 9% of the labeled batch kept by exp TSA, and 17%
of the unlabeled batch past β, against 66% without TSA; ``results/newer-baselines-mlp-dropout/uda-tsa``, with Dropout(0.2) in the MLP, now ``mlp_dropout``). The weak view's prediction carries no gradient (the paper's fixed
copy θ̃ of the parameters).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Optional

import torch
import torch.nn.functional as F

from metassl.config import bounded, run_fraction, run_length, step_count
from metassl.methods.base import METHODS
from metassl.methods.fixmatch import FixMatch, FixMatchConfig
from metassl.methods.pseudo import sharpen

SCHEDULES = {
    "linear": lambda t: t,
    "log": lambda t: 1.0 - math.exp(-5.0 * t),
    "exp": lambda t: math.exp(5.0 * (t - 1.0)),
}


@dataclass
class UDAConfig(FixMatchConfig):
    threshold: float = bounded(0.8, 0.0, 1.0)                     # β of the confidence mask
    temperature: float = bounded(0.4, 0.0, lo_open=True)          # T of the sharpening
    tsa: Literal["none", "exp", "log", "linear"] = "none"  # training-signal annealing schedule of η_t
    tsa_fraction: float = run_fraction(1.0)                       # η_t reaches 1 at this share of the run
    tsa_steps: Optional[int] = step_count()


@METHODS.register("uda")
class UDA(FixMatch):
    Config = UDAConfig

    def tsa_threshold(self, step: int) -> float:
        """η_t."""
        k = self.ctx.num_classes
        if self.cfg.tsa == "none":
            return 1.0
        length = run_length(self.cfg, "tsa", self.ctx.total_steps)
        progress = 1.0 if length <= 0 else min(1.0, step / length)
        return SCHEDULES[self.cfg.tsa](progress) * (1.0 - 1.0 / k) + 1.0 / k

    def supervised_loss(self, logits_x, y, step):
        eta = self.tsa_threshold(step)
        ce = F.cross_entropy(logits_x, y, reduction="none")
        # exp(-CE) is the correct-class probability.
        kept = (torch.exp(-ce.detach()) <= eta).float()
        return (ce * kept).sum() / kept.sum().clamp_min(1.0), {"tsa_kept": kept.mean()}

    def pseudo_targets(self, q, unlabeled, step):
        mask = (q.max(1).values >= self.cfg.threshold).float()
        return sharpen(q, self.cfg.temperature), mask, {"mask": mask.mean()}
