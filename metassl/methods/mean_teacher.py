"""Mean Teacher (Tarvainen & Valpola, "Mean teachers are better role models", NeurIPS 2017).

The teacher's weights are an exponential moving average of the student's (eq. 2):

    θ'_t = α θ'_{t-1} + (1 - α) θ_t,   α = 0.99 during the ramp-up, 0.999 afterwards,

capped by 1 - 1/(t + 1) so that the first steps do not average in the random initialisation (the
authors' code). Student and teacher see the same minibatch under different augmentation noise
and the consistency cost J (eq. 1) is the squared error between their softmax outputs, averaged
over classes, on every example, labeled or not:

    L = CE(f_θ(x_l), y) + w(t) · (1/(C·|B|)) Σ_{i∈B} ||f_θ(x_i, η) - f_θ'(x_i, η')||²

w(t) ramps up with the sigmoid schedule; w_max = 100, the authors' CIFAR-10 setting. The
teacher runs in train mode like the student (its BatchNorm uses batch statistics, its dropout is
its noise); its running statistics are copied from the student at every update.

The teacher is what is evaluated and selected (``mean_teacher.evaluate=teacher``, as the paper
reports it) or the student (``student``); it is checkpointed with the method's state.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from metassl.config import bounded
from metassl.engine.dist import unwrap
from metassl.engine.ema import ModelEMA
from metassl.methods.base import METHODS, Method
from metassl.methods.losses import mse_consistency
from metassl.methods.ramps import rampup_fraction


@dataclass
class MeanTeacherConfig:
    w_max: float = bounded(100.0, 0.0)
    rampup_fraction: float = bounded(0.25, 0.0, 1.0)
    ema_decay: float = bounded(0.999, 0.0, 1.0)
    ema_decay_rampup: float = bounded(0.99, 0.0, 1.0)
    evaluate: Literal["teacher", "student"] = "teacher"


@METHODS.register("mean_teacher")
class MeanTeacher(Method):
    Config = MeanTeacherConfig
    needs_unlabeled = True

    def __init__(self, model, optimizer, cfg, ctx):
        super().__init__(model, optimizer, cfg, ctx)
        self.student = unwrap(model)
        self.teacher = ModelEMA(self.student, cfg.ema_decay)
        self.teacher.module.train()

    def decay(self, step: int) -> float:
        ramping = step < self.cfg.rampup_fraction * self.ctx.total_steps
        alpha = self.cfg.ema_decay_rampup if ramping else self.cfg.ema_decay
        return min(1.0 - 1.0 / (step + 1), alpha)

    def train_step(self, labeled, unlabeled, step):
        b = labeled.x.shape[0]
        logits = self.model(torch.cat([labeled.x, unlabeled.x])).float()
        with torch.no_grad():
            teacher_view = self.ctx.augment(torch.cat([labeled.raw, unlabeled.raw]))
            teacher_probs = self.teacher.module(teacher_view).float().softmax(1)
        loss_l = F.cross_entropy(logits[:b], labeled.y)
        loss_cons = mse_consistency(logits.softmax(1), teacher_probs, class_mean=True)
        ramp = rampup_fraction("sigmoid", step, self.ctx.total_steps, self.cfg.rampup_fraction)
        w = self.cfg.w_max * ramp
        loss = loss_l + w * loss_cons
        self.optimize(loss)
        self.teacher.update(self.student, self.decay(step))
        return {"loss": loss.detach(), "loss_l": loss_l.detach(), "loss_cons": loss_cons.detach()}

    def eval_model(self):
        return self.teacher.module if self.cfg.evaluate == "teacher" else None

    def state_dict(self) -> dict:
        return {"teacher": self.teacher.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.teacher.load_state_dict(state["teacher"])
