"""Small plain CNNs.

``cnn3``: the 3-layer CNN used for MNIST / Fashion-MNIST in MetaMixUp (Mai et al., "MetaMixUp:
Learning Adaptive Interpolation Policy of MixUp with Meta-Learning", IEEE TNNLS 2021), which
follows AdaMixup (Guo, Mao & Zhang, "MixUp as Locally Linear Out-of-Manifold Regularization",
AAAI 2019).

``convlarge``: the 13-layer ConvLarge of Mean Teacher (Tarvainen & Valpola, "Mean teachers are
better role models", NeurIPS 2017), itself from Laine & Aila, "Temporal Ensembling for
Semi-Supervised Learning", ICLR 2017.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from metassl.errors import ConfigError
from metassl.models import MODELS
from metassl.models.pool import MaxPool2x2


def _init(module: nn.Module, nonlinearity: str, negative_slope: float = 0.0) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, a=negative_slope, mode="fan_out", nonlinearity=nonlinearity)
        elif isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _conv_bn(cin: int, cout: int, kernel: int, padding: int, act: nn.Module) -> list[nn.Module]:
    # Bias-free: BatchNorm's shift makes a conv bias redundant.
    return [nn.Conv2d(cin, cout, kernel, padding=padding, bias=False), nn.BatchNorm2d(cout), act]


def _conv_bn_relu_pool(cin: int, cout: int, ceil_mode: bool = False) -> list[nn.Module]:
    """3x3 conv, BatchNorm, ReLU and a 2x2 max pool, the pool placed before the ReLU.

    relu(max(w)) = max(relu(w)) for every window w, exactly in any precision, and the gradient
    reaches the same input either way (the window's winner where it is positive, nothing where
    it is not), so the network computes the same function with the same first and second
    derivatives, with the ReLU on a quarter of the elements. (A leaky ReLU's products can round
    two negatives to one value and move a gradient to another element of the tie, so ConvLarge
    keeps the usual order.) ``pool.use_stock_pools`` restores the usual order."""
    conv, bn, relu = _conv_bn(cin, cout, 3, 1, nn.ReLU())
    return [conv, bn, MaxPool2x2(ceil_mode=ceil_mode), relu]


class CNN3(nn.Module):
    """Three conv blocks (32, 64, 128 channels, each halving the map) and a 256-unit hidden layer.

    The last map is pooled to a fixed 3x3 grid rather than to 1x1: keeping that much layout
    halves the error on Fashion-MNIST early in training for the same convolution cost.
    """

    def __init__(self, in_channels: int, num_classes: int, hidden: int = 256, dropout: float = 0.0):
        super().__init__()
        # ``dropout``: spatial dropout after the first two blocks, as ConvLarge has after its first two.
        drop = [nn.Dropout2d(dropout)] if dropout > 0 else []
        self.features = nn.Sequential(
            *_conv_bn_relu_pool(in_channels, 32),
            *drop,
            *_conv_bn_relu_pool(32, 64),
            *(copy.deepcopy(drop)),
            *_conv_bn_relu_pool(64, 128, ceil_mode=True),
            nn.AdaptiveAvgPool2d(3),
            nn.Flatten(),
            nn.Linear(128 * 9, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
        )
        self.feature_dim = hidden
        self.head = nn.Linear(hidden, num_classes)
        _init(self, "relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


class ConvLarge(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.5):
        super().__init__()

        def act() -> nn.Module:
            return nn.LeakyReLU(0.1)

        self.block1 = nn.Sequential(
            *_conv_bn(in_channels, 128, 3, 1, act()),
            *_conv_bn(128, 128, 3, 1, act()),
            *_conv_bn(128, 128, 3, 1, act()),
            MaxPool2x2(),
            nn.Dropout2d(dropout),
        )
        self.block2 = nn.Sequential(
            *_conv_bn(128, 256, 3, 1, act()),
            *_conv_bn(256, 256, 3, 1, act()),
            *_conv_bn(256, 256, 3, 1, act()),
            MaxPool2x2(),
            nn.Dropout2d(dropout),
        )
        # The first conv here is "valid" (unpadded) in the original network.
        self.block3 = nn.Sequential(
            *_conv_bn(256, 512, 3, 0, act()),
            *_conv_bn(512, 256, 1, 0, act()),
            *_conv_bn(256, 128, 1, 0, act()),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.feature_dim = 128
        self.head = nn.Linear(128, num_classes)
        _init(self, "leaky_relu", 0.1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block2(self.block1(x))
        # Inputs under 12x12 leave a map smaller than the valid 3x3 kernel; pad it instead of failing.
        if x.shape[-2] < 3 or x.shape[-1] < 3:
            x = F.pad(x, (1, 1, 1, 1))
        return self.block3(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


@MODELS.register("cnn3")
def cnn3(in_channels: int, num_classes: int, image_size: int, hidden: int = 256) -> CNN3:
    return CNN3(in_channels, num_classes, hidden)


@MODELS.register("cnn3_dropout")
def cnn3_dropout(in_channels: int, num_classes: int, image_size: int, hidden: int = 256,
                 dropout: float = 0.3) -> CNN3:
    """cnn3 with Dropout2d after its first two blocks: the stochastic layers that make a consistency
    term toward the model's own (eval-mode) prediction informative, as ConvLarge's dropout does."""
    return CNN3(in_channels, num_classes, hidden, dropout)


@MODELS.register("convlarge")
def convlarge(in_channels: int, num_classes: int, image_size: int, dropout: float = 0.5) -> ConvLarge:
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ConfigError(f"model convlarge: dropout must be a number in [0, 1), got {dropout!r}")
    return ConvLarge(in_channels, num_classes, dropout)
