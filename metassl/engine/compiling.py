"""The ``compile`` key: the model's forward and backward passes through ``torch.compile``.

The module is compiled in place (``nn.Module.compile``), after the method is built: its
parameters, state dict and checkpoints stay those of the eager module, every pass the method runs
(functional ones with substitute parameters included) goes through the compiled graph, and
copies the method made of the model (teachers) stay eager. Compilation happens lazily, in the
first steps; its seconds are read from TorchDynamo's own timers.

Where it applies: ``Method.compiles`` says so per step. Steps that differentiate through a
gradient (``create_graph``) stay eager, since compiled graphs have no double backward, and so do
forward-mode passes and MetaMixUp's first-order passes, whose replay of the look-ahead's kinks is
a function mode the compiled graph does not see.
"""
from __future__ import annotations

import os
import shutil
from typing import Literal

import torch
from torch import nn

from metassl.errors import ConfigError

Setting = Literal["off", "on", "auto"]

# ``auto`` compiles runs of at least this many steps. On a CPU, compiling cnn3's steps took 17-26 s
# with a warm kernel cache (minutes with a cold one) and saved 4-9% of a 65-250 ms step (README,
# Speed), so it pays back only after several thousand steps.
AUTO_MIN_STEPS = 10000


def available(device: torch.device) -> bool:
    """Whether torch.compile can build kernels here: TorchDynamo, and a C++ compiler on a CPU or
    Triton on CUDA."""
    if not torch._dynamo.is_dynamo_supported():
        return False
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        return has_triton()
    return shutil.which(os.environ.get("CXX", "g++")) is not None


def wanted(setting: Setting, applies: bool, steps: int, device: torch.device) -> bool:
    """Whether a run of ``steps`` compiles: ``on`` wherever it applies, ``auto`` only where the
    run is long enough to repay the compile time."""
    if setting == "off" or not applies:
        return False
    if setting == "auto":
        return steps >= AUTO_MIN_STEPS and available(device)
    if not available(device):
        need = "Triton" if device.type == "cuda" else f"a C++ compiler ({os.environ.get('CXX', 'g++')})"
        raise ConfigError(f"config: compile='on' needs {need} for torch.compile on {device.type}; "
                          "use compile=off or compile=auto")
    return True


def compile_model(model: nn.Module) -> None:
    """Compile ``model``'s forward in place. Its random ops draw from the eager generator in the
    eager order, so dropout masks are those of the eager run and the meta passes that replay a
    generator state (``meta.directional_fd``) see the masks they expect."""
    import torch._inductor.config as inductor_config

    inductor_config.fallback_random = True
    model.compile()


def compile_seconds() -> float:
    """TorchDynamo's total compile time in this process so far, forward and backward graphs."""
    from torch._dynamo.utils import calculate_time_spent

    return float(calculate_time_spent().get("total_wall_time", 0.0))
