"""Ramp-up schedules for unsupervised loss weights, as functions of the step."""
from __future__ import annotations

import math

from metassl.config import run_length


def linear_rampup(step: int, length: int) -> float:
    """0 -> 1 linearly over ``length`` steps (the meta-gradient SSL code's ramp); 0 before step 0,
    so a ramp can be delayed by passing ``step - start``."""
    return 1.0 if length <= 0 else min(1.0, max(0.0, step / length))


def sigmoid_rampup(step: int, length: int) -> float:
    """exp(-5 (1 - t)^2), t = step / length clipped to [0, 1] (Laine & Aila 2017)."""
    if length <= 0:
        return 1.0
    t = min(1.0, max(0.0, step / length))
    return math.exp(-5.0 * (1.0 - t) ** 2)


RAMPS = {"linear": linear_rampup, "sigmoid": sigmoid_rampup}


def rampup(kind: str, step: int, length: int) -> float:
    return RAMPS[kind](step, length)


def run_rampup(kind: str, step: int, cfg, total_steps: int, name: str = "rampup") -> float:
    """The ramp over the length ``name`` of a method's config (``rampup_fraction`` of the run, or
    ``rampup_steps``), so one setting serves every step budget."""
    return rampup(kind, step, run_length(cfg, name, total_steps))
