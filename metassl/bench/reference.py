"""Algorithm 2 of Zhang et al. (AISTATS 2021) as the authors' training loop runs it, one iteration
written out in plain PyTorch: the yardstick ``bench speed`` times ``meta_pl_mixup`` against.

Per iteration (``REFERENCE-NOTES``, "what the authors' code does per iteration"):

1. eval mode: g = ∇_θ CE(f(x_l; θ), y) (plain gradient over every trainable parameter);
2. eval mode, no grad: p = softmax(f(x_u; θ)); ε = r / ||g|| (r = ``fd_radius``, 0.01); the
   parameters are moved in place to θ + εg and θ - εg for one forward each, then put back;
   d = (softmax(f+) - softmax(f-)) / ε;
3. ŷ = relu(p - β d) with β = the current learning rate, each row renormalised to sum 1;
4. train mode: λ_i ~ Beta(γ, γ), the i-th labeled example mixed with the i-th unlabeled one,
   loss = KL(λ y + (1-λ) ŷ || softmax(f(x_mix))) + w_t mean_i ||softmax(f(x_u)) - ŷ_i||²,
   w_t linear over the ramp-up; one backward, one optimizer step.

Six forwards (four in eval mode) and two backwards, against ``meta_pl_mixup``'s five and two:
it takes the centre of the perturbed pair for p instead of the pass at θ. The network is built
from PyTorch's stock layers, as the authors' code builds it: its max pools are ``nn.MaxPool2d``
rather than metassl's ``models.pool.MaxPool2x2`` (same values and gradients, cheaper on a CPU). Both read the same
config (``meta_pl_mixup``'s section), so one λ draw gives both the same update to O(r²).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from metassl.config import run_length
from metassl.errors import ConfigError
from metassl.methods.base import Method
from metassl.methods.meta_pl_mixup import MetaPLMixupConfig
from metassl.models.pool import use_stock_pools

# The settings of the authors' loop; another value of these keys is not what it runs.
AUTHORS = {"consistency": "mse", "meta_bn": "eval", "project": True, "pseudo_grad": "fd"}


class MetaPLMixupReference(Method):
    """One iteration of the authors' loop; timed by ``bench speed`` as ``meta_pl_mixup_reference``."""

    Config = MetaPLMixupConfig
    needs_unlabeled = True
    meta_gradient = True

    def __init__(self, model, optimizer, cfg, ctx):
        for key, value in AUTHORS.items():
            if getattr(cfg, key) != value:
                raise ConfigError(f"config: meta_pl_mixup_reference runs the authors' loop, which has "
                                  f"{key}={value!r}; got {getattr(cfg, key)!r}")
        super().__init__(use_stock_pools(model), optimizer, cfg, ctx)

    def train_step(self, labeled, unlabeled, step):
        model, cfg = self.model, self.cfg
        x_l, y_l, x_u = labeled.x, labeled.y, unlabeled.x
        params = [p for p in model.parameters() if p.requires_grad]

        model.eval()
        g = torch.autograd.grad(F.cross_entropy(model(x_l).float(), y_l), params)
        # A relative step of 1e-2/||θ|| would vanish in bfloat16: the three passes run in float32.
        with torch.no_grad(), torch.autocast(x_u.device.type, enabled=False):
            p = F.softmax(model(x_u).float(), dim=1)
            eps = cfg.fd_radius / torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in g]))
            saved = [t.clone() for t in params]
            for t, gt in zip(params, g):
                t.add_(eps * gt)
            p_plus = F.softmax(model(x_u).float(), dim=1)
            for t, s, gt in zip(params, saved, g):
                t.copy_(s - eps * gt)
            p_minus = F.softmax(model(x_u).float(), dim=1)
            for t, s in zip(params, saved):
                t.copy_(s)
            d = (p_plus - p_minus) / eps
            beta = cfg.meta_lr if cfg.meta_lr is not None else self.ctx.lr()
            y_hat = (p - beta * d).clamp_min(0.0)
            y_hat = y_hat / y_hat.sum(1, keepdim=True).clamp_min(1e-12)

        model.train()
        lam = torch.distributions.Beta(torch.tensor(float(cfg.gamma), device=x_l.device),
                                       torch.tensor(float(cfg.gamma), device=x_l.device)).sample((len(x_l),))
        lam_x = lam.view(-1, *([1] * (x_l.dim() - 1))).to(x_l.dtype)
        x_mix = lam_x * x_l + (1 - lam_x) * x_u
        lam_y = lam.view(-1, 1)
        target = lam_y * F.one_hot(y_l, self.ctx.num_classes).float() + (1 - lam_y) * y_hat
        log_q = F.log_softmax(model(x_mix).float(), dim=1)
        loss_cls = (torch.xlogy(target, target) - target * log_q).sum(1).mean()
        loss_cons = (F.softmax(model(x_u).float(), dim=1) - y_hat).pow(2).sum(1).mean()
        length = run_length(cfg, "rampup", self.ctx.total_steps)
        w = cfg.consistency_weight * (1.0 if length <= 0 else min(1.0, max(0.0, step / length)))
        loss = loss_cls + w * loss_cons
        self.optimize(loss)
        return {"loss": loss.detach(), "loss_cls": loss_cls.detach(), "loss_cons": loss_cons.detach()}


# Bench rows that are not registered methods: name -> (class, the method whose config section it reads).
REFERENCES = {"meta_pl_mixup_reference": (MetaPLMixupReference, "meta_pl_mixup")}
