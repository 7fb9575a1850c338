"""Virtual Adversarial Training (Miyato et al., "Virtual Adversarial Training: A Regularization
Method for Supervised and Semi-Supervised Learning", TPAMI 2018), with and without entropy
minimisation (their "VAT+EntMin").

The local distributional smoothness of an unlabeled x is

    LDS(x) = KL(p(y|x) || p(y|x + r_vadv)),   r_vadv = ε · g / ||g||₂,
    g = ∇_r KL(p(y|x) || p(y|x + r)) at r = ξ d,

with d a random unit vector refined by power iteration (ξ = 1e-6, one iteration) and p(y|x)
held constant. The loss is CE(x_l) + α · mean LDS(x_u) (+ the mean prediction entropy on
x_u for ``vat_em``, its weight ramped up over the run). ε is in units of the normalised inputs and depends on the input's size: Miyato
et al. used 8.0 on CIFAR-10 and 3.5 on SVHN (ZCA-whitened and [-1, 1]-scaled respectively), and
6.0 is Oliver et al.'s CIFAR-10 value for standardised inputs. The default (``eps: null``) scales
that value by the typical norm of a standardised input, √D for D input values:
ε = 6.0 · √(D / 3072), i.e. 6.0 on 3x32x32 images, 3.0 on 28x28 and 0.87 on 8x8 digits and on
feature vectors (stored as 8x8 images up to 64 features), where an unscaled 6.0 moves each value by
about its own standard deviation.

BatchNorm. The perturbed passes run in train mode (batch statistics) under ``frozen_bn_stats``,
which leaves the running statistics alone, as the authors' code does with
``update_batch_stats=False``. The clean unlabeled batch gets its own forward, separate from the
labeled one: p(y|x) must come from the same batch statistics as p(y|x + ξd), otherwise their KL
is not near zero at ξ -> 0 and g points along the statistics mismatch instead of along the
dominant eigenvector of the Hessian.

The power iteration runs with autocast off: the logits move by O(ξ) there, below bf16 precision.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from metassl.config import bounded, run_fraction, step_count
from metassl.methods.base import METHODS, Method
from metassl.methods.losses import entropy, kl_to_target
from metassl.methods.pseudo import frozen_bn_stats
from metassl.methods.ramps import run_rampup


@dataclass
class VATConfig:
    eps: Optional[float] = bounded(None, 0.0, lo_open=True)  # ε, norm of the perturbation in normalised input units; null: 6·√(D/3072) for D input values
    xi: float = bounded(1e-6, 0.0, lo_open=True)  # ξ, the power iteration's step
    power_iterations: int = bounded(1, 1)  # refinements of the adversarial direction
    alpha: float = bounded(1.0, 0.0)  # α, weight of the LDS loss


# Oliver et al.'s ε for standardised CIFAR-10 and that input's number of values (3 x 32 x 32).
REFERENCE_EPS, REFERENCE_SIZE = 6.0, 3 * 32 * 32


def size_scaled_eps(eps: Optional[float], x: torch.Tensor) -> float:
    """ε as set, or the reference ε scaled by the typical norm of one standardised input of ``x``."""
    if eps is not None:
        return eps
    return REFERENCE_EPS * math.sqrt(x[0].numel() / REFERENCE_SIZE)


def l2_normalize(d: torch.Tensor) -> torch.Tensor:
    """Each sample scaled to unit L2 norm over all its dimensions. The gradients at r = ξd are of
    order ξ·||H|| (1e-8 and below), so they are first scaled by their largest entry: the norm's
    1e-12 guard would otherwise be comparable to the norm itself."""
    shape = (-1, *([1] * (d.dim() - 1)))
    d = d / (d.flatten(1).abs().amax(dim=1).view(shape) + torch.finfo(d.dtype).tiny)
    return d / (d.flatten(1).norm(dim=1).view(shape) + 1e-12)


def adversarial_direction(model: nn.Module, x: torch.Tensor, p: torch.Tensor, xi: float,
                          iterations: int) -> torch.Tensor:
    """Unit direction approximating the dominant eigenvector of the Hessian of
    KL(p || p(y|x + r)) at r = 0, by power iteration on gradients taken at r = ξ d. A sample
    whose prediction does not move at all at r = ξ d in floating point has a gradient of exactly
    zero, and keeps its direction so far rather than losing its perturbation."""
    d = torch.randn_like(x)
    with torch.autocast(x.device.type, enabled=False):
        for _ in range(iterations):
            r = (xi * l2_normalize(d)).requires_grad_()
            dist = kl_to_target(model(x + r), p)
            grad = torch.autograd.grad(dist, r)[0]
            moved = grad.flatten(1).abs().amax(dim=1) > 0
            d = torch.where(moved.view(-1, *([1] * (x.dim() - 1))), grad, d)
    return l2_normalize(d)


@METHODS.register("vat")
class VAT(Method):
    Config = VATConfig
    needs_unlabeled = True
    has_entropy = False

    def entropy_weight(self, step: int) -> float:
        return 0.0

    def train_step(self, labeled, unlabeled, step):
        loss_l = F.cross_entropy(self.model(labeled.x).float(), labeled.y)
        # p(y|x_u) is a constant target; only the entropy term needs the clean pass's graph.
        with torch.set_grad_enabled(self.has_entropy):
            logits_u = self.model(unlabeled.x).float()
        p = logits_u.detach().softmax(1)
        with frozen_bn_stats(self.model):
            d = adversarial_direction(self.model, unlabeled.x, p, self.cfg.xi, self.cfg.power_iterations)
            eps = size_scaled_eps(self.cfg.eps, unlabeled.x)
            lds = kl_to_target(self.model(unlabeled.x + eps * d), p)
        loss = loss_l + self.cfg.alpha * lds
        out = {"loss_l": loss_l.detach(), "lds": lds.detach()}
        if self.has_entropy:
            ent = entropy(logits_u)
            loss = loss + self.entropy_weight(step) * ent
            out["entropy"] = ent.detach()
        self.optimize(loss)
        return {"loss": loss.detach(), **out}


@dataclass
class VATEntMinConfig(VATConfig):
    entropy_weight: float = bounded(1.0, 0.0)  # weight of the prediction entropy on x_u after its ramp-up
    entropy_rampup_fraction: float = run_fraction(0.4)  # sigmoid ramp-up of the entropy weight, a share of the run
    entropy_rampup_steps: Optional[int] = step_count()


@METHODS.register("vat_em")
class VATEntMin(VAT):
    """VAT plus the conditional entropy of p(y|x_u) (Grandvalet & Bengio 2005), weight 1 once
    ramped up. Miyato et al. weight it 1 from the first step; at full weight before the
    predictions mean anything it confirms whatever class they lean to, which on a hard set
    collapses the model onto one class, hence the ramp (0 for none)."""

    Config = VATEntMinConfig
    has_entropy = True

    def entropy_weight(self, step: int) -> float:
        return self.cfg.entropy_weight * run_rampup("sigmoid", step, self.cfg, self.ctx.total_steps,
                                                    "entropy_rampup")
