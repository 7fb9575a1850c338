"""The contract between the engine and a method.

The engine owns the loop, data, schedule, EMA, evaluation and checkpoints; a method owns one
iteration: its forward passes, backward passes and optimizer steps (meta methods take several).
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar, Optional

import torch
from torch import nn

from metassl.registry import Registry


@dataclass
class Batch:
    x: torch.Tensor              # augmented, normalised view
    raw: torch.Tensor            # the stored uint8 images, for methods that need more views
    y: Optional[torch.Tensor] = None
    idx: Optional[torch.Tensor] = None  # positions in the training set (for logging)


@dataclass
class TrainContext:
    num_classes: int
    total_steps: int
    augment: Callable[[torch.Tensor], torch.Tensor]    # uint8 batch -> augmented float batch
    normalize: Callable[[torch.Tensor], torch.Tensor]  # uint8 batch -> float batch, no augmentation
    device: torch.device
    lr: Callable[[], float] = lambda: 0.0                # current learning rate
    sample_val: Optional[Callable[[], Batch]] = None    # a batch of the validation set (meta methods)
    scaler: Optional[torch.amp.GradScaler] = None       # fp16 only
    autocast: Callable = nullcontext
    strong_augment: Optional[Callable[[torch.Tensor], torch.Tensor]] = None  # uint8 -> RandAugment view
    num_train: int = 0        # training-set size: the range of ``Batch.idx``
    num_unlabeled: int = 0    # how many of those the unlabeled stream draws from


@dataclass
class NoConfig:
    pass


class Method:
    """Base class: subclasses set ``Config`` (a dataclass) and implement ``train_step``."""

    Config: ClassVar[type] = NoConfig
    needs_unlabeled: ClassVar[bool] = False
    # Takes gradients outside ``optimize`` (look-aheads), which fp16 loss scaling does not reach.
    meta_gradient: ClassVar[bool] = False
    # Unlabeled images per labeled one where ``unlabeled_batch_size`` is not set (FixMatch's μ).
    unlabeled_ratio: ClassVar[int] = 1
    # The method this one extends, without the paper's addition: suite tables pair each row with
    # it by seed (meta_pl_mixup against mixup_ssl, metamixup against mixup, ...).
    parent: ClassVar[Optional[str]] = None

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, cfg, ctx: TrainContext):
        self.model, self.optimizer, self.cfg, self.ctx = model, optimizer, cfg, ctx

    def train_step(self, labeled: Batch, unlabeled: Optional[Batch], step: int) -> dict[str, torch.Tensor]:
        """One iteration; returns detached scalar losses (the key ``loss`` is the one watched)."""
        raise NotImplementedError

    def optimize(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        if self.ctx.scaler is not None:
            self.ctx.scaler.scale(loss).backward()
            self.ctx.scaler.step(self.optimizer)
            self.ctx.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()

    def compiles(self) -> bool:
        """Whether the ``compile`` key may run this step's passes through torch.compile
        (``engine.compiling``); False where a pass is one compiled graphs cannot run."""
        return True

    def eval_model(self) -> Optional[nn.Module]:
        """The network to evaluate and select, where the method keeps a better one than the
        student (a teacher); None: the engine's choice (its EMA weights, or the model)."""
        return None

    def evaluated(self) -> Optional[dict]:
        """What ``eval_model`` returns, for final.json (None where it returns None)."""
        return None

    def on_evaluate(self, step: int, run_dir: Optional[Path]) -> dict:
        """Called at every evaluation; may write artifacts into ``run_dir`` (None when nothing is
        written) and returns extra scalars for metrics.jsonl."""
        return {}

    def state_dict(self) -> dict:
        """Method state that must survive a resume (teachers, thresholds)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


METHODS: Registry[type[Method]] = Registry("method")
