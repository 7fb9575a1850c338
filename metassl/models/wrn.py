"""Wide ResNet (Zagoruyko & Komodakis, "Wide Residual Networks", BMVC 2016) in the WRN-28-k
configuration used by Oliver et al., "Realistic Evaluation of Deep Semi-Supervised Learning
Algorithms", NeurIPS 2018: pre-activation basic blocks, LeakyReLU(0.1), BatchNorm with slow
running statistics (TensorFlow decay 0.999, i.e. PyTorch momentum 0.001).
"""
from __future__ import annotations

import torch
from torch import nn

from metassl.errors import ConfigError
from metassl.models import MODELS

_BN_MOMENTUM = 0.001
_SLOPE = 0.1


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, dropout: float):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, momentum=_BN_MOMENTUM)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout, momentum=_BN_MOMENTUM)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.act = nn.LeakyReLU(_SLOPE)
        self.project = cin != cout or stride != 1
        self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False) if self.project else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.act(self.bn1(x))
        # A projecting block feeds its shortcut the activated input (He et al. 2016, pre-activation),
        # so the first block of the network does not add the raw stem output.
        skip = self.shortcut(pre) if self.project else x
        out = self.conv1(pre)
        out = self.conv2(self.drop(self.act(self.bn2(out))))
        return out + skip


class WideResNet(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, depth: int = 28, widen: int = 2, dropout: float = 0.0):
        super().__init__()
        if (depth - 4) % 6:
            raise ConfigError(f"model wrn: depth must be 6n+4, got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.stem = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        blocks: list[nn.Module] = []
        cin = widths[0]
        for cout, stride in zip(widths[1:], (1, 2, 2)):
            for i in range(n):
                blocks.append(_Block(cin, cout, stride if i == 0 else 1, dropout))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(cin, momentum=_BN_MOMENTUM)
        self.act = nn.LeakyReLU(_SLOPE)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = cin
        self.head = nn.Linear(cin, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, a=_SLOPE, mode="fan_out", nonlinearity="leaky_relu")
            elif isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.pool(self.act(self.bn(x))).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


def _check_dropout(name: str, dropout: float) -> None:
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ConfigError(f"model {name}: dropout must be a number in [0, 1), got {dropout!r}")


@MODELS.register("wrn28_2")
def wrn28_2(in_channels: int, num_classes: int, image_size: int, dropout: float = 0.0) -> WideResNet:
    _check_dropout("wrn28_2", dropout)
    return WideResNet(in_channels, num_classes, 28, 2, dropout)


@MODELS.register("wrn28_10")
def wrn28_10(in_channels: int, num_classes: int, image_size: int, dropout: float = 0.0) -> WideResNet:
    _check_dropout("wrn28_10", dropout)
    return WideResNet(in_channels, num_classes, 28, 10, dropout)
