"""Fully connected baseline: hidden layers of Linear-BatchNorm-ReLU.

Batch normalization as in Ioffe & Szegedy, "Batch Normalization: Accelerating Deep Network
Training by Reducing Internal Covariate Shift", ICML 2015.

``mlp_dropout`` adds Dropout(0.2) after each hidden layer: the stochastic layer that a consistency
term toward the model's own eval-mode prediction needs (``meta_pl``, ``meta_pl_exact``), as
ConvLarge's dropout is in the SSL papers. On digits with 5 labels per class at 600 steps it moved
meta_pl from 0.4 points above supervised training to 3.7 below (means of 3 seeds), but it cost
MixMatch 4.4 points and turned MetaMixUp's lead over mixup into a deficit, so the plain ``mlp``
stays the default.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from metassl.errors import ConfigError
from metassl.models import MODELS


class MLP(nn.Module):
    def __init__(self, in_features: int, num_classes: int, hidden: Sequence[int] = (256, 256),
                 dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            # No bias: the following BatchNorm's shift makes it redundant.
            layers += [nn.Linear(width, h, bias=False), nn.BatchNorm1d(h), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        self.body = nn.Sequential(*layers)
        self.feature_dim = int(width)
        self.head = nn.Linear(width, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        # flatten works on logical order, so channels_last inputs give the same features.
        return self.body(x.flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


@MODELS.register("mlp")
def mlp(in_channels: int, num_classes: int, image_size: int | tuple[int, int],
        hidden: Sequence[int] = (256, 256), dropout: float = 0.0) -> MLP:
    if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence) or not all(
        isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in hidden
    ):
        raise ConfigError(f"model mlp: hidden must be a list of positive integers, got {hidden!r}")
    height, width = image_size if isinstance(image_size, tuple) else (image_size, image_size)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ConfigError(f"model mlp: dropout must be in [0, 1), got {dropout!r}")
    return MLP(in_channels * height * width, num_classes, tuple(hidden), float(dropout))


@MODELS.register("mlp_dropout")
def mlp_dropout(in_channels: int, num_classes: int, image_size: int | tuple[int, int],
                hidden: Sequence[int] = (256, 256), dropout: float = 0.2) -> MLP:
    return mlp(in_channels, num_classes, image_size, hidden, dropout)
