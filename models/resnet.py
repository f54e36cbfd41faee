"""ResNet-18 written out by hand (He et al., 2015, "Deep Residual Learning for Image Recognition").

Parameter names follow torchvision's ``resnet18`` exactly (``conv1``, ``bn1``, ``layer1.0.conv1``,
..., ``fc``) so that its ``state_dict`` loads into this model with ``strict=True``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

STEMS = ("imagenet", "cifar")


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1 and no bias (a BatchNorm follows it)."""
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution used by the projection shortcut."""
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 conv + BN layers and a shortcut: relu(bn2(conv2(relu(bn1(conv1(x))))) + x)."""

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, channels, stride)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(channels, channels)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != channels:
            # Projection shortcut: the identity cannot be added when the shape changes.
            self.downsample = nn.Sequential(
                conv1x1(in_channels, channels, stride), nn.BatchNorm2d(channels)
            )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """ResNet built from BasicBlocks; ``forward`` returns logits of shape (N, num_classes).

    ``stem="imagenet"`` is the original 7x7 stride-2 conv + 3x3 stride-2 max pool, which divides
    the input side by 4 before ``layer1``. ``stem="cifar"`` is a 3x3 stride-1 conv with no pooling,
    the usual adaptation for 32x32 inputs: it keeps 32x32 feature maps in ``layer1`` and costs
    about 15x more compute per image.
    """

    def __init__(
        self,
        layers: tuple[int, int, int, int] = (2, 2, 2, 2),
        num_classes: int = 1000,
        stem: str = "imagenet",
        dropout: float = 0.0,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if stem not in STEMS:
            raise ValueError(f"stem must be one of {STEMS}, got {stem!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.in_channels = 64
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(3, stride=2, padding=1)
        else:
            self.conv1 = conv3x3(3, 64)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(64, layers[0], stride=1)
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(512 * BasicBlock.expansion, num_classes)
        self._init_weights(zero_init_residual)

    def _make_layer(self, channels: int, blocks: int, stride: int) -> nn.Sequential:
        stage = [BasicBlock(self.in_channels, channels, stride)]
        self.in_channels = channels * BasicBlock.expansion
        stage += [BasicBlock(self.in_channels, channels) for _ in range(1, blocks)]
        return nn.Sequential(*stage)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if zero_init_residual:
            # Each block starts as the identity (Goyal et al., 2017, "Accurate, Large Minibatch
            # SGD: Training ImageNet in 1 Hour"), which helps early optimisation.
            for module in self.modules():
                if isinstance(module, BasicBlock):
                    nn.init.zeros_(module.bn2.weight)

    def forward(self, x: Tensor) -> Tensor:
        # x: (N, 3, H, W)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (N, 64, H/4, W/4) imagenet stem
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (N, 512, H/32, W/32)
        x = torch.flatten(self.avgpool(x), 1)  # (N, 512)
        return self.fc(self.dropout(x))  # (N, num_classes)


def resnet18(
    num_classes: int = 1000,
    stem: str = "imagenet",
    dropout: float = 0.0,
    zero_init_residual: bool = False,
) -> ResNet:
    """ResNet-18: four stages of two BasicBlocks with 64/128/256/512 channels."""
    return ResNet((2, 2, 2, 2), num_classes, stem, dropout, zero_init_residual)
