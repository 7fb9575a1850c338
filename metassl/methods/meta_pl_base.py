"""The training step shared by the methods of Zhang et al., "Semi-Supervised Learning with
Meta-Gradient" (AISTATS 2021): ``meta_pl``, ``meta_pl_exact``, ``meta_pl_mixup``, ``mixup_ssl``.

Per iteration (Algorithms 1 and 2):

1. pseudo labels for the unlabeled batch start at the predictions, ỹ = f(x_u; θ) (Eq. 2), taken
   with BatchNorm in eval mode as in the authors' code;
2. a meta step moves them against the meta-gradient of the labeled loss through one SGD step on
   the unlabeled loss, ŷ = ỹ - β d (Eq. 5-6): first order in ``meta_pl`` and ``meta_pl_mixup``
   (Eq. 10-11), by autograd in ``meta_pl_exact``, absent in ``mixup_ssl``;
3. relu and row renormalisation keep ŷ a distribution (authors' code; ``project``);
4. loss = classification + w_t Φ(f(x_u), ŷ) (Eq. 13): KL on the labeled batch, or on the
   cross-domain mixed batch (Eq. 12) in ``mixup_ssl`` and ``meta_pl_mixup``; w_t ramps up
   linearly over the ``rampup`` length (``rampup_fraction`` of the run; the authors' 4000 steps of
   400k are ``rampup_steps=4000``);
5. one optimizer step.

Scale of the meta step. Eq. 8 gives the meta-gradient of pseudo label i as ∇ỹ_i = (α_t/B_u) d_i,

    d_i = D_θ[s(f(x_i^u; θ))] · g,   g = ∇_θ G(θ) (the labeled loss, Eq. 9),

where s is the θ-dependent part of -∂Φ/∂ỹ: s = 2 softmax for Φ = MSE, s = log_softmax for Φ = KL.
As in the authors' code the α_t/B_u factor is absorbed into the meta step size: every variant
steps ŷ = ỹ - β d with β = the current learning rate unless ``meta_lr`` is set, so the paper's
β_t equals β B_u / α_t. For Φ = MSE, d = (f(θ + εg) - f(θ - εg)) / ε is Algorithm 2's ∇ỹ.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Optional

import torch
import torch.nn.functional as F

from metassl import meta
from metassl.config import bounded, run_fraction, step_count
from metassl.methods.base import Batch, Method
from metassl.methods.losses import kl_to_target, mse_consistency
from metassl.methods.meta_labels import SCORES, first_order_meta_grad, labeled_cross_entropy, meta_step
from metassl.methods.ramps import run_rampup


@dataclass(frozen=True)
class Discrepancy:
    """Φ(softmax(logits), target): ``loss`` is its batch mean, ``score`` the θ-dependent part of
    -∂Φ/∂target per example, whose derivative along g is the meta-gradient d (Eq. 8)."""

    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    score: Callable[[torch.Tensor], torch.Tensor]


PHI = {
    "mse": Discrepancy(lambda logits, t: mse_consistency(F.softmax(logits.float(), dim=1), t), SCORES["mse"]),
    "kl": Discrepancy(kl_to_target, SCORES["kl"]),
}


@dataclass
class ConsistencyConfig:
    consistency: Literal["mse", "kl"] = "mse"          # Φ of the unlabeled loss
    consistency_weight: float = bounded(1.0, 0.0)     # w, reached at the end of the ramp
    rampup_fraction: float = run_fraction(0.4)            # linear 0 -> w over this share of the run
    rampup_steps: Optional[int] = step_count()             # ... or this many steps (0: no ramp)


@dataclass
class MetaStepConfig(ConsistencyConfig):
    meta_lr: Optional[float] = bounded(None, 0.0)     # β; null: the current learning rate
    meta_bn: Literal["eval", "train"] = "eval"       # BatchNorm in the meta passes
    project: bool = True                              # relu + renormalise the updated labels


@dataclass
class FirstOrderConfig(MetaStepConfig):
    pseudo_grad: Literal["fd", "jvp"] = "fd"          # two perturbed passes, or one forward-mode pass
    fd_radius: float = bounded(0.01, 0.0, lo_open=True)  # ε·||g|| (the paper's 0.01)


class PseudoLabelSSL(Method):
    """Steps 1-5 above; subclasses choose the pseudo labels and the classification loss."""

    needs_unlabeled = True

    def __init__(self, model, optimizer, cfg, ctx):
        super().__init__(model, optimizer, cfg, ctx)
        self.phi = PHI[cfg.consistency]

    def compiles(self) -> bool:
        # Forward mode (``pseudo_grad=jvp``) is a function transform over the passes.
        return getattr(self.cfg, "pseudo_grad", "fd") == "fd"

    def pseudo_labels(self, labeled: Batch, x_u: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """ŷ (no graph) and extra scalars to log."""
        raise NotImplementedError

    def classification_loss(self, labeled: Batch, x_u: torch.Tensor, y_hat: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def train_step(self, labeled, unlabeled, step):
        x_u = unlabeled.x
        y_hat, logs = self.pseudo_labels(labeled, x_u)
        loss_cls = self.classification_loss(labeled, x_u, y_hat)
        loss_cons = self.phi.loss(self.model(x_u), y_hat)
        w = self.cfg.consistency_weight * run_rampup("linear", step, self.cfg, self.ctx.total_steps)
        loss = loss_cls + w * loss_cons
        self.optimize(loss)
        return {"loss": loss.detach(), "loss_cls": loss_cls.detach(), "loss_cons": loss_cons.detach(), **logs}

    # -- the pieces subclasses assemble -------------------------------------------------------
    def predictions(self, x_u: torch.Tensor, bn: meta.BNPolicy = "eval") -> torch.Tensor:
        """ỹ = f(x_u; θ) (Eq. 2)."""
        with torch.no_grad():
            return F.softmax(meta.forward(self.model, meta.params(self.model), x_u, bn=bn).float(), dim=1)

    def labeled_loss(self, theta: meta.Params, labeled: Batch) -> torch.Tensor:
        """G(θ): KL to the one-hot labels, i.e. cross-entropy, in the meta passes' BatchNorm mode."""
        return labeled_cross_entropy(self.model, theta, labeled, self.cfg.meta_bn)

    def meta_grad(self, labeled: Batch, x_u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(ỹ, d), first order by Eq. 10 (``meta_labels.first_order_meta_grad``)."""
        cfg = self.cfg
        return first_order_meta_grad(self.model, lambda theta: self.labeled_loss(theta, labeled), x_u,
                                     self.phi.score, bn=cfg.meta_bn, pseudo_grad=cfg.pseudo_grad,
                                     fd_radius=cfg.fd_radius)

    def meta_step(self, y_tilde: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """ŷ = ỹ - β d (Eq. 6), projected back onto the simplex."""
        beta = self.cfg.meta_lr if self.cfg.meta_lr is not None else self.ctx.lr()
        return meta_step(y_tilde, d, beta, self.cfg.project)
