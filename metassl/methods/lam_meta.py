"""Mixing coefficients learned by meta-gradient: the meta step of MetaMixUp (Mai et al.,
"MetaMixUp: Learning Adaptive Interpolation Policy of MixUp with Meta-Learning", Sec. III-B),
shared by ``metamixup``, ``metamixup_ssl``, ``mixmatch_metamixup`` and ``meta_pl_metamixup``.

Each iteration, for the n pairs a method is about to mix (Algorithm 1, lines 2-7):

    λ_i = sigmoid(z_i),  λ_i drawn at random (z_i its logit), e.g. from Beta(1, 1)       line 2
    θ'  = θ - η ∇_θ ℓ_mix(θ, λ)              one SGD step on the mixed loss (Eq. 7)     lines 4-5
    M   = ℓ(f(x_v; θ'), y_v)                 the loss on a meta-validation batch (Eq. 9)
    z*  = z - α ∇_z M,  λ* = sigmoid(z*)     Eq. 10-11, α = 5                           line 6

and the method re-mixes with λ* for its real update (line 7-8). η is the current learning rate.

Parametrisation (Eq. 10-11). The variable the meta step moves is the real number z; sigmoid maps it
into [0, 1], and every mixing, in the look-ahead as in the real step, uses λ = sigmoid(z). Reading
Eq. 10-11 with λ itself as the mixing weight at line 4 and sigmoid applied only after the step is
inconsistent (sigmoid is not a projection: it would map an unmoved λ = 0.2 to 0.55, so every λ* would
fall in [0.5, 0.73] whatever the gradient, contradicting the mass at 0 and 1 of Figure 6). With z the
logit of a Beta(1, 1) draw, MetaMixUp with a zero meta-gradient is exactly per-sample mixup with
α = 1, the baseline of Figures 5 and 6.

The hypergradient. With g(z) = ∇_θ ℓ_mix(θ, sigmoid(z)) and v = ∇_θ M(θ'),

    dM/dz = -η (∂g/∂z)^T v                                             (chain rule through θ')

``grad=exact`` computes it by double backpropagation: g with ``create_graph``, then the
vector-Jacobian product with v (``meta.hypergradient``).

``grad=first_order`` avoids the second-order graph. Since ∂g/∂z is a mixed second derivative,

    (∂g/∂z)^T v = ∂/∂z <v, ∇_θ ℓ_mix(θ, z)> = D_v [∇_z ℓ_mix](θ),

the derivative of the *first-order* quantity ∇_z ℓ_mix (one backward pass to the inputs, no
parameter gradients) along the direction v in parameter space, ε = ``fd_radius``/||v||
(``meta.directional_fd``):

    dM/dz ≈ -η (∇_z ℓ_mix(θ + εv) - ∇_z ℓ_mix(θ)) / ε          ``fd_onesided`` (default)
    dM/dz ≈ -η (∇_z ℓ_mix(θ + εv) - ∇_z ℓ_mix(θ - εv)) / (2ε)   ``fd``   (``directional``)

The one-sided difference is exact to O(ε) and costs one such pass: ∇_z ℓ_mix(θ) comes out of the
look-ahead's own backward pass (z requires grad there; under autocast, whose low-precision pass
cannot serve as the base of a float32 difference, it falls back to the central one). The central
difference is exact to O(ε²) from two passes; a forward-mode pass (``directional=jvp``) is exact.
All need v at θ', i.e. the inner gradient (no graph), one step, and the validation gradient. The
validation loss is then not differentiated through the inner backward pass at all, which is what
saves the memory of ``exact``. Under data parallelism the inner loss is the mean over ranks
of each rank's loss, so each rank's derivative carries 1/world_size (as in ``meta.hypergradient``).

Kinks. ∇_z ℓ_mix contains the input gradient ⟨∇_x ℓ, x_i - x_j⟩, which in a ReLU or max-pool
network is piecewise constant in θ: it jumps wherever a unit or a pooling winner switches, and the
kinks of a whole batch lie far closer together than ε. Plain differences measure those jumps
rather than the derivative (on cnn3 their cosine with ``exact`` was 0.1-0.5). So the difference
passes replay the look-ahead pass's ReLU / LeakyReLU pattern, max-pool winners and dropout masks
(``meta.Kinks``, ``directional_fd(start=...)``): they run the network linearised where autograd
differentiates it, and the difference has the accuracy it would have on a smooth net (cnn3,
float32, against ``exact``: cosine 1.00000 and relative error 1e-4 central, 0.99999 and 5e-3
one-sided).
``directional=jvp`` is exact without that, but slower than ``exact`` (forward mode over the
λ-gradient); it is there to check the derivation. ``grad=exact`` stays the default, the paper's
method; ``first_order`` (one-sided) takes 26-29% less time on cnn3 and half the memory (no
second-order graph).

Scale of the step (``scale``). The training loss is a batch mean, so

    dM/dz_i = -(η/n) λ_i(1-λ_i) <v, ∂g_i/∂λ_i>,     g_i pair i's own gradient,

which shrinks with the batch size n and with the learning rate η. Taken literally (``scale=batch``),
α = 5 with η = 0.05 and n = 64 (digits, MLP) moves the learned λ by about 1e-4 from their random start,
MetaMixUp trains as per-sample mixup, and the step would vanish altogether as the schedule decays η;
yet the paper states one α = 5 for every dataset, batch size (100, 128) and schedule (η divided by
1000 over a run). ``scale=pair`` (default) makes α mean the same thing everywhere: it takes the
derivative per pair, as if pair i's step were the whole step, n·W/η · dM/dz_i =
-λ_i(1-λ_i) <v, ∂g_i/∂λ_i> (n the number of λ, W the number of data-parallel processes), which
moves λ by 0.16-0.21 on average at α = 5 on digits over a whole run (``batch``: 2e-4 falling to
1e-5 as η decays), and lowers the 3-seed mean test error there from 6.69% (``batch``) to 6.13%
(mixup: 7.15%). Both use the same hypergradient; they differ by that constant.

BatchNorm. ``meta_bn=train`` (default) runs the look-ahead and the validation pass with batch
statistics, like the real update the look-ahead stands in for; the running statistics are never
written (``meta.forward`` updates copies). ``eval`` uses the running statistics instead.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Literal, Optional

import torch
import torch.nn.functional as F

from metassl import meta
from metassl.config import bounded
from metassl.errors import ConfigError
from metassl.methods.base import Batch
from metassl.methods.lam_record import LamRecorder

Forward = Callable[[torch.Tensor], torch.Tensor]
# A method's training loss as a function of how to run the network and of the mixing weights, so
# that the same code serves the look-ahead (functional, substitute θ) and the real update.
LossOf = Callable[[Forward, torch.Tensor], torch.Tensor]


@dataclass
class MetaStepConfig:
    alpha: float = bounded(5.0, 0.0)                    # step size of Eq. 10
    grad: Literal["exact", "first_order"] = "exact"     # hypergradient by double backprop, or not
    # first_order: a one-sided or central difference, or forward mode
    directional: Literal["fd_onesided", "fd", "jvp"] = "fd_onesided"
    fd_radius: float = bounded(0.01, 0.0, lo_open=True)  # ε·||v||
    meta_bn: Literal["train", "eval"] = "train"         # BatchNorm in the look-ahead and validation passes
    meta_lr: Optional[float] = bounded(None, 0.0)       # η of the look-ahead; null: the current lr
    scale: Literal["pair", "batch"] = "pair"            # Eq. 10's gradient per pair, or of the batch mean

    def inert_keys(self) -> tuple[str, ...]:
        """Keys that change nothing in this setting: the difference's form and radius with the
        exact gradient (a run's results compare across them)."""
        return ("directional", "fd_radius") if self.grad == "exact" else ()


@dataclass
class MetaLamConfig(MetaStepConfig):
    init_alpha: float = bounded(1.0, 0.0, lo_open=True)  # λ starts ~ Beta(init_alpha, init_alpha)


def mixed_cross_entropy(logits: torch.Tensor, y_i: torch.Tensor, y_j: torch.Tensor,
                        lam: torch.Tensor) -> torch.Tensor:
    """Per-row λ·CE(logits, y_i) + (1-λ)·CE(logits, y_j), the cross-entropy against the mixed
    one-hot target λ y_i + (1-λ) y_j. It keeps the logits' precision (float64 in the gradient
    checks; autocast lifts half precision to float32 inside ``cross_entropy``)."""
    return lam * F.cross_entropy(logits, y_i, reduction="none") + (1 - lam) * F.cross_entropy(
        logits, y_j, reduction="none")


class MetaLam:
    """Learns the mixing weights of one iteration (Algorithm 1, lines 2-6)."""

    def __init__(self, model, cfg: MetaStepConfig, ctx):
        if ctx.sample_val is None:
            raise ConfigError("config: MetaMixUp learns its mixing weights on a meta-validation set; "
                              "set val_per_class >= 1")
        self.model, self.cfg, self.ctx = model, cfg, ctx

    def forward_at(self, theta: meta.Params, second_order: bool = False) -> Forward:
        return partial(meta.forward, self.model, theta, bn=self.cfg.meta_bn, second_order=second_order)

    def eta(self) -> float:
        return self.cfg.meta_lr if self.cfg.meta_lr is not None else self.ctx.lr()

    def meta_loss(self, theta: meta.Params, val: Batch) -> torch.Tensor:
        return F.cross_entropy(self.forward_at(theta)(val.x), val.y)

    def hypergradient(self, loss_of: LossOf, z: torch.Tensor, val: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(dM/dz, M): the meta-gradient of the validation loss after one look-ahead step, and
        that loss (detached)."""
        theta, eta = meta.params(self.model), self.eta()
        if self.cfg.grad == "exact":
            z = z.detach().requires_grad_()
            g = meta.grad(loss_of(self.forward_at(theta, second_order=True), torch.sigmoid(z)), theta,
                           create_graph=True)
            theta_lookahead = meta.lookahead(theta, meta.detached_mean(g), eta)
            outer = self.meta_loss(theta_lookahead, val)
            v = meta.grad(outer, theta_lookahead)
            return meta.hypergradient(g, z, v, eta), outer.detach()
        kinks, start = meta.Kinks(), meta.rng_state(z.device)
        # The one-sided difference takes its base point ∇_z ℓ_mix(θ) from the look-ahead's own
        # backward pass, unless autocast ran that pass in low precision.
        one_sided = self.cfg.directional == "fd_onesided" and not torch.is_autocast_enabled(z.device.type)
        z_inner, base = z.detach().requires_grad_(one_sided), None
        # Only the differences replay the pass's kinks; forward mode needs no record.
        with kinks.record() if self.cfg.directional != "jvp" else nullcontext():
            inner = loss_of(self.forward_at(theta), torch.sigmoid(z_inner))
            if one_sided:
                g, base = meta.grad_and(inner, theta, z_inner)
            else:
                g = meta.grad(inner, theta)
        theta_lookahead = meta.lookahead(theta, g, eta)
        outer = self.meta_loss(theta_lookahead, val)
        v = meta.grad(outer, theta_lookahead)

        def lam_grad(p: meta.Params) -> torch.Tensor:
            if self.cfg.directional == "jvp":
                # A function transform, so that forward mode can see through it.
                return torch.func.grad(lambda zz: loss_of(self.forward_at(p), torch.sigmoid(zz)))(z.detach())
            # Plain autograd inside the difference's no_grad: about 10% faster than torch.func.grad.
            with torch.enable_grad(), kinks.replay():
                zz = z.detach().requires_grad_()
                return torch.autograd.grad(loss_of(self.forward_at(p), torch.sigmoid(zz)), zz)[0]

        if self.cfg.directional == "jvp":
            _, d = meta.directional_jvp(lam_grad, theta, v)
        else:
            # Linearised at the look-ahead's pass: its unit pattern and its dropout masks.
            _, d = meta.directional_fd(lam_grad, theta, v, self.cfg.fd_radius, start=start, base=base)
        return d * (-eta / meta.world_size()), outer.detach()

    def __call__(self, loss_of: LossOf, lam_start: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """λ* (detached, in [0, 1]) from the random start ``lam_start``, and scalars to log."""
        z = torch.logit(lam_start, eps=1e-6)
        dz, outer = self.hypergradient(loss_of, z, self.ctx.sample_val())
        eta = self.eta()
        if self.cfg.scale == "pair" and eta > 0:
            dz = dz * (z.numel() * meta.world_size() / eta)
        lam = torch.sigmoid(z - self.cfg.alpha * dz)
        return lam, {"meta_loss": outer, "lam_shift": (lam - torch.sigmoid(z)).abs().mean()}


class LearnedLam:
    """For a Method whose mixing weights ``MetaLam`` learns: ``self.learned_lam`` and
    ``self.lam_log`` (the ``lambdas.jsonl`` recorder), written at every evaluation and kept
    across a resume."""

    meta_gradient = True

    def setup_learned_lam(self, cfg: MetaStepConfig, baseline_alpha: Optional[float]) -> None:
        self.learned_lam = MetaLam(self.model, cfg, self.ctx)
        self.lam_log = LamRecorder(self.ctx.num_classes, self.ctx.device, baseline_alpha)

    def compiles(self) -> bool:
        # Exact: a double backward. First order: the difference passes replay the look-ahead's
        # kinks through a function mode, which a compiled graph does not see.
        return False

    def on_evaluate(self, step: int, run_dir: Optional[Path]) -> dict:
        return self.lam_log.flush(step, run_dir)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "lam_log": self.lam_log.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.lam_log.load_state_dict(state["lam_log"])
