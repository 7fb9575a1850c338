"""Pre-activation ResNet (He, Zhang, Ren & Sun, "Identity Mappings in Deep Residual Networks",
ECCV 2016) in the CIFAR layout: 3x3 stride-1 stem, four stages of basic blocks (64/128/256/512).
"""
from __future__ import annotations

import torch
from torch import nn

from metassl.models import MODELS


class _PreActBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.relu = nn.ReLU()
        self.project = cin != cout or stride != 1
        self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False) if self.project else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu(self.bn1(x))
        # Projections read the activated input; identity shortcuts keep the clean residual path.
        skip = self.shortcut(pre) if self.project else x
        out = self.conv2(self.relu(self.bn2(self.conv1(pre))))
        return out + skip


class PreActResNet(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, layers: tuple[int, ...]):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        blocks: list[nn.Module] = []
        cin = 64
        for stage, (cout, count) in enumerate(zip((64, 128, 256, 512), layers)):
            for i in range(count):
                blocks.append(_PreActBlock(cin, cout, 2 if stage > 0 and i == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        # Pre-activation blocks end on a bare addition, so the trunk needs a final BN-ReLU.
        self.bn = nn.BatchNorm2d(cin)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = cin
        self.head = nn.Linear(cin, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.pool(self.relu(self.bn(x))).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


@MODELS.register("preact_resnet18")
def preact_resnet18(in_channels: int, num_classes: int, image_size: int) -> PreActResNet:
    return PreActResNet(in_channels, num_classes, (2, 2, 2, 2))


@MODELS.register("preact_resnet34")
def preact_resnet34(in_channels: int, num_classes: int, image_size: int) -> PreActResNet:
    return PreActResNet(in_channels, num_classes, (3, 4, 6, 3))
