"""Network in Network (NiN).

Lin, Chen, Yan, "Network In Network" (ICLR 2014).

Two ideas: (1) the *mlpconv* block, a kxk convolution followed by two 1x1 convolutions,
i.e. a small multi-layer perceptron slid over every position (a 1x1 convolution is a
linear layer applied per pixel); (2) no fully connected classifier at all: the last
mlpconv has as many channels as classes and a *global average pool* turns each channel
map into that class's score. Far fewer parameters than AlexNet and a spatial score map
for free.

``nin`` is the ImageNet model of the authors' Caffe release (four mlpconv blocks,
96-256-384-1024 channels, about 7.6 M parameters). ``nin_cifar`` is the paper's CIFAR-10
model (three blocks of 192-160-96, 192-192-192, 192-192-classes, 5x5, 5x5 and 3x3
kernels; max pool, then average pool, between them). Every convolution is followed by a
ReLU, the class maps' included, as in both releases. No torchvision twin.
"""
from __future__ import annotations

import minicnn
from minicnn import nn
from minicnn.nn import functional as F  # noqa: F401  (kept so the file reads as torch code)

__all__ = ["MLPConv", "NiN", "nin", "nin_cifar"]


class MLPConv(nn.Sequential):
    """kxk convolution, then two 1x1 convolutions, each followed by ReLU.

    Shape: (N, in_channels, H, W) -> (N, channels[2], OH, OW) with
    OH = floor((H + 2*padding - kernel_size) / stride) + 1.
    Children are named conv, relu, cccp1, relu1, cccp2, relu2 ("cascaded cross-channel
    parametric pooling", the paper's name for the 1x1 layers).
    """

    def __init__(self, in_channels, channels, kernel_size, stride=1, padding=0):
        c1, c2, c3 = channels
        super().__init__()
        self.add_module("conv", nn.Conv2d(in_channels, c1, kernel_size, stride, padding))
        self.add_module("relu", nn.ReLU(inplace=True))
        self.add_module("cccp1", nn.Conv2d(c1, c2, kernel_size=1))
        self.add_module("relu1", nn.ReLU(inplace=True))
        self.add_module("cccp2", nn.Conv2d(c2, c3, kernel_size=1))
        self.add_module("relu2", nn.ReLU(inplace=True))


class NiN(nn.Module):
    """A stack of mlpconv blocks with pooling/dropout between them, then global average
    pooling. ``blocks`` is a list of ``(channels, kernel_size, stride, padding)`` and
    ``between`` a list of Modules placed after every block but the last (a pool, or a
    Sequential of pool and dropout). The last block's last width is ``num_classes``.

    Shape: (N, in_channels, H, W) -> (N, num_classes).
    """

    def __init__(self, blocks, between, num_classes, in_channels=3):
        super().__init__()
        if len(between) != len(blocks) - 1:
            raise ValueError(f"NiN: expected {len(blocks) - 1} modules between "
                             f"{len(blocks)} blocks, got {len(between)}")
        layers = []
        for i, (channels, kernel_size, stride, padding) in enumerate(blocks):
            if i == len(blocks) - 1:
                channels = (channels[0], channels[1], num_classes)
            layers.append(MLPConv(in_channels, channels, kernel_size, stride, padding))
            if i < len(between):
                layers.append(between[i])
            in_channels = channels[2]
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))   # the global average pool

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                nn.init.constant_(m.bias, 0)

    def forward(self, x):
        x = self.features(x)          # (N, num_classes, h, w): one map per class
        x = self.avgpool(x)           # (N, num_classes, 1, 1)
        return minicnn.flatten(x, 1)  # (N, num_classes)


def nin(num_classes=1000, in_channels=3, dropout=0.5):
    """The ImageNet NiN of the authors' release (224x224 in, 6x6 class maps out)."""
    def pool():
        return nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)
    return NiN(
        blocks=[((96, 96, 96), 11, 4, 0),         # (N, 96, 54, 54) at 224
                ((256, 256, 256), 5, 1, 2),       # (N, 256, 27, 27)
                ((384, 384, 384), 3, 1, 1),       # (N, 384, 13, 13)
                ((1024, 1024, None), 3, 1, 1)],   # (N, num_classes, 6, 6)
        between=[pool(), pool(), nn.Sequential(pool(), nn.Dropout(p=dropout))],
        num_classes=num_classes, in_channels=in_channels)


def nin_cifar(num_classes=10, in_channels=3, dropout=0.5):
    """The paper's CIFAR-10 NiN (32x32 in, 8x8 class maps out; about 0.97 M parameters)."""
    return NiN(
        blocks=[((192, 160, 96), 5, 1, 2),        # (N, 96, 32, 32)
                ((192, 192, 192), 5, 1, 2),       # (N, 192, 16, 16)
                ((192, 192, None), 3, 1, 1)],     # (N, num_classes, 8, 8)
        between=[nn.Sequential(nn.MaxPool2d(3, stride=2, ceil_mode=True),
                               nn.Dropout(p=dropout)),
                 nn.Sequential(nn.AvgPool2d(3, stride=2, ceil_mode=True),
                               nn.Dropout(p=dropout))],
        num_classes=num_classes, in_channels=in_channels)
