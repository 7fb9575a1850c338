"""Mean Teacher (Tarvainen & Valpola, "Mean teachers are better role models", NeurIPS 2017).

The teacher's weights are an exponential moving average of the student's (eq. 2):

    θ'_t = α θ'_{t-1} + (1 - α) θ_t,   α = 0.99 during the ramp-up, 0.999 afterwards,

capped by 1 - 1/(t + 1) so that the first steps do not average in the random initialisation (the
authors' code), and by 1 - 1/H, H = ``ema_horizon`` (5% of the run), so that the teacher of a short
run is not an average over more steps than the run has (``metassl.engine.ema``; from 20000 steps
on the paper's 0.999 applies unchanged). Student and teacher see the same minibatch under different augmentation noise
and the consistency cost J (eq. 1) is the squared error between their softmax outputs, averaged
over classes, on every example, labeled or not:

    L = CE(f_θ(x_l), y) + w(t) · (1/(C·|B|)) Σ_{i∈B} ||f_θ(x_i, η) - f_θ'(x_i, η')||²

w(t) ramps up with the sigmoid schedule; w_max = 100, the authors' CIFAR-10 setting. The
teacher runs in train mode like the student (its BatchNorm uses batch statistics, its dropout is
its noise); its running statistics are copied from the student at every update.

The teacher is what is evaluated and selected (``mean_teacher.evaluate=teacher``, as the paper
reports it) or the student (``student``); it is checkpointed with the method's state.

``meta_gradient: true`` replaces the teacher's targets for the unlabeled batch by the meta step's
ŷ (Φ = squared error, the look-ahead on the student's view; ``meta_labels``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import torch
import torch.nn.functional as F

from metassl.config import bounded, run_fraction, run_length, step_count
from metassl.engine.dist import unwrap
from metassl.engine.ema import ModelEMA, effective_decay, horizon_steps
from metassl.methods.base import METHODS, Method
from metassl.methods.losses import mse_consistency
from metassl.methods.meta_labels import MetaGradientConfig, MetaGradientTarget
from metassl.methods.ramps import run_rampup


@dataclass
class MeanTeacherConfig(MetaGradientConfig):
    w_max: float = bounded(100.0, 0.0)  # consistency weight after the sigmoid ramp-up
    rampup_fraction: float = run_fraction(0.25)  # sigmoid ramp-up of w, a share of the run
    rampup_steps: Optional[int] = step_count()
    ema_decay: float = bounded(0.999, 0.0, 1.0)  # the teacher's EMA decay α after the ramp-up
    ema_decay_rampup: float = bounded(0.99, 0.0, 1.0)  # α during the ramp-up
    ema_horizon_fraction: float = run_fraction(0.05)  # cap on the teacher EMA's time constant 1/(1 - α)
    ema_horizon_steps: Optional[int] = step_count()
    evaluate: Literal["teacher", "student"] = "teacher"  # the model evaluated and selected


@METHODS.register("mean_teacher")
class MeanTeacher(MetaGradientTarget, Method):
    Config = MeanTeacherConfig
    needs_unlabeled = True
    meta_score = "mse"

    def __init__(self, model, optimizer, cfg, ctx):
        super().__init__(model, optimizer, cfg, ctx)
        self.student = unwrap(model)
        self.teacher = ModelEMA(self.student, cfg.ema_decay, horizon_steps(cfg, ctx.total_steps))
        self.teacher.module.train()
        self.rampup_length = run_length(cfg, "rampup", ctx.total_steps)

    def decay(self, step: int) -> float:
        """The teacher's decay in effect at ``step``."""
        alpha = self.cfg.ema_decay_rampup if step < self.rampup_length else self.cfg.ema_decay
        return effective_decay(alpha, step, self.teacher.horizon)

    def train_step(self, labeled, unlabeled, step):
        b = labeled.x.shape[0]
        logits = self.model(torch.cat([labeled.x, unlabeled.x])).float()
        with torch.no_grad():
            teacher_view = self.ctx.augment(torch.cat([labeled.raw, unlabeled.raw]))
            teacher_probs = self.teacher.module(teacher_view).float().softmax(1)
        target_u, meta_logs = self.meta_target(labeled, unlabeled.x, teacher_probs[b:])
        teacher_probs = torch.cat([teacher_probs[:b], target_u])
        loss_l = F.cross_entropy(logits[:b], labeled.y)
        loss_cons = mse_consistency(logits.softmax(1), teacher_probs, class_mean=True)
        ramp = run_rampup("sigmoid", step, self.cfg, self.ctx.total_steps)
        w = self.cfg.w_max * ramp
        loss = loss_l + w * loss_cons
        self.optimize(loss)
        self.teacher.update(self.student, step, self.decay(step))
        return {"loss": loss.detach(), "loss_l": loss_l.detach(), "loss_cons": loss_cons.detach(), **meta_logs}

    def eval_model(self):
        return self.teacher.module if self.cfg.evaluate == "teacher" else None

    def evaluated(self):
        if self.cfg.evaluate == "student":
            return None
        return {"weights": "teacher", "ema_decay": self.cfg.ema_decay, "horizon_steps": self.teacher.horizon,
                "decay_at_end": self.teacher.last_decay}

    def state_dict(self) -> dict:
        return {"teacher": self.teacher.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.teacher.load_state_dict(state["teacher"])
