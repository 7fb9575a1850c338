"""The first-order meta step on pseudo labels (Zhang et al., "Semi-Supervised Learning with
Meta-Gradient", AISTATS 2021, Eq. 6-11), written once for ``meta_pl``'s family and for the
``meta_gradient`` plug-in of every pseudo-labelling method.

    g  = ∇_θ G(θ),  G the cross-entropy of the labeled batch                      (Eq. 9)
    d  = D_θ[s(f(x_u; θ))] · g,  s = -∂Φ/∂ỹ's θ-dependent part: 2 softmax (Φ = MSE),
         log_softmax (Φ = KL or cross-entropy)                                      (Eq. 8, 10-11)
    ŷ  = project(ỹ - β d),  project = relu + row renormalisation                   (Eq. 6)

d is taken by central differences at θ ± εg, ε = 0.01/||g|| (or exactly by one jvp); β absorbs
Eq. 8's α_t/B_u and defaults to the current learning rate (``meta_pl_base`` gives the scale).

The plug-in (``meta_gradient: true`` in a method's section) replaces the method's soft target
for the unlabeled batch, before its own thresholding, sharpening or masking, by ŷ. ỹ is that
target as the method computes it; the look-ahead passes run on the view it labels (the weak
view, ``unlabeled.x``) with BatchNorm in eval mode, as ``meta_pl`` does by default. Φ is the
method's unlabeled loss: cross-entropy for FixMatch's family and Pseudo-Label, squared error for
MixMatch and Mean Teacher. ``meta_lr: 0`` is the method itself, bit for bit: no passes are run.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar, Literal, Optional

import torch
import torch.nn.functional as F
from torch import nn

from metassl import meta
from metassl.config import bounded
from metassl.methods.base import Batch

Score = Callable[[torch.Tensor], torch.Tensor]

SCORES: dict[str, Score] = {
    "mse": lambda logits: 2.0 * F.softmax(logits.float(), dim=1),
    "kl": lambda logits: F.log_softmax(logits.float(), dim=1),
}


def project_rows(y: torch.Tensor) -> torch.Tensor:
    """relu, then each row divided by its sum; a row that sums to 0 stays 0."""
    y = y.clamp_min(0.0)
    return y / y.sum(1, keepdim=True).clamp_min(1e-12)


def labeled_cross_entropy(model: nn.Module, theta: meta.Params, labeled: Batch, bn: meta.BNPolicy) -> torch.Tensor:
    """G(θ): cross-entropy of the labeled batch, one functional pass in BatchNorm mode ``bn``."""
    logits = meta.forward(model, theta, labeled.x, bn=bn)
    return F.cross_entropy(logits.float(), labeled.y)


def first_order_meta_grad(model: nn.Module, labeled_loss: Callable[[meta.Params], torch.Tensor],
                          x_u: torch.Tensor, score: Score, *, bn: meta.BNPolicy = "eval",
                          pseudo_grad: Literal["fd", "jvp"] = "fd",
                          fd_radius: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
    """(ỹ, d): d along g = ∇ labeled_loss, by central differences at θ ± εg with ε = fd_radius/||g||,
    or exactly by one jvp. With differences ỹ is the mean of the pair, f(x_u; θ) to O(ε²||g||²),
    which saves the pass at θ itself."""
    theta = meta.params(model)
    g = meta.grad(labeled_loss(theta), theta)

    def probs_and_score(p):
        logits = meta.forward(model, p, x_u, bn=bn).float()
        return F.softmax(logits, dim=1), score(logits)

    if pseudo_grad == "jvp":
        (y_tilde, _), (_, d) = meta.directional_jvp(probs_and_score, theta, g)
    else:
        (y_tilde, _), (_, d) = meta.directional_fd(probs_and_score, theta, g, fd_radius)
    return y_tilde, d


def meta_step(y_tilde: torch.Tensor, d: torch.Tensor, beta: float, project: bool = True) -> tuple[torch.Tensor, dict]:
    """ŷ = ỹ - β d (Eq. 6), projected back onto the simplex, and the mean L1 shift to log."""
    y_hat = y_tilde - beta * d
    if project:
        y_hat = project_rows(y_hat)
    return y_hat, {"pl_shift": (y_hat - y_tilde).abs().sum(1).mean()}


@dataclass
class MetaGradientConfig:
    """The plug-in's keys, in the section of each pseudo-labelling method."""

    meta_gradient: bool = False                       # the unlabeled target becomes ŷ = project(ỹ - β d)
    meta_lr: Optional[float] = bounded(None, 0.0)     # β; null: the current learning rate


class MetaGradientTarget:
    """Mixin for a Method whose Config extends ``MetaGradientConfig``: ``meta_target`` is the
    identity unless ``meta_gradient`` is on."""

    # Φ of the method's unlabeled loss, which fixes the score s in d.
    meta_score: ClassVar[Literal["mse", "kl"]] = "kl"

    def meta_target(self, labeled: Batch, x_u: torch.Tensor, y_tilde: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """ŷ for the method's soft target ỹ of the unlabeled images ``x_u`` (the weak view), and
        scalars to log; ỹ itself where the plug-in is off or β = 0."""
        cfg = self.cfg
        if not cfg.meta_gradient:
            return y_tilde, {}
        beta = cfg.meta_lr if cfg.meta_lr is not None else self.ctx.lr()
        if beta == 0:
            return y_tilde, {}
        model = self.model
        _, d = first_order_meta_grad(model, lambda theta: labeled_cross_entropy(model, theta, labeled, "eval"),
                                     x_u, SCORES[self.meta_score])
        return meta_step(y_tilde, d, beta)
