"""Shake-Shake ResNet-26 2x96d (Gastaldi, "Shake-Shake regularization", arXiv:1705.07485, 2017),
the "Shake-Shake-Image" variant: per-sample mixing coefficients, drawn independently for the
forward and the backward pass.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from metassl.models import MODELS


def shake(b1: torch.Tensor, b2: torch.Tensor, training: bool) -> torch.Tensor:
    """Forward value alpha*b1 + (1-alpha)*b2, gradient as if beta had been used instead.

    The detached correction carries the forward/backward mismatch, so this needs no custom
    autograd.Function and works under torch.func transforms (functional_call, grad, jvp).
    """
    if not training:
        return 0.5 * (b1 + b2)
    shape = (b1.shape[0],) + (1,) * (b1.dim() - 1)
    alpha = torch.rand(shape, device=b1.device, dtype=b1.dtype)
    beta = torch.rand(shape, device=b1.device, dtype=b1.dtype)
    return beta * b1 + (1 - beta) * b2 + ((alpha - beta) * (b1 - b2)).detach()


def _branch(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ReLU(),
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
        nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
        nn.BatchNorm2d(cout),
    )


class _Shortcut(nn.Module):
    """Two strided 1x1 convs, the second on the input shifted by one pixel so that together
    they see every spatial position that the stride would otherwise skip."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv2d(cin, cout // 2, 1, bias=False)
        self.conv2 = nn.Conv2d(cin, cout - cout // 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        s = self.stride
        shifted = F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
        out = torch.cat([self.conv1(x[:, :, ::s, ::s]), self.conv2(shifted[:, :, ::s, ::s])], dim=1)
        return self.bn(out)


class _ShakeBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.branch1 = _branch(cin, cout, stride)
        self.branch2 = _branch(cin, cout, stride)
        self.shortcut = _Shortcut(cin, cout, stride) if cin != cout or stride != 1 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + shake(self.branch1(x), self.branch2(x), self.training)


class ShakeShakeResNet(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, depth: int = 26, width: int = 96):
        super().__init__()
        n = (depth - 2) // 6
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16))
        blocks: list[nn.Module] = []
        cin = 16
        for cout, stride in ((width, 1), (2 * width, 2), (4 * width, 2)):
            for i in range(n):
                blocks.append(_ShakeBlock(cin, cout, stride if i == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = cin
        self.head = nn.Linear(cin, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.pool(self.relu(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


@MODELS.register("shakeshake26")
def shakeshake26(in_channels: int, num_classes: int, image_size: int) -> ShakeShakeResNet:
    return ShakeShakeResNet(in_channels, num_classes, 26, 96)
