"""The seeds' own listings, where they differ from the papers' forms the rest of the zoo
follows: each written as the seed writes it (its module names, its layer order), so its
``minicnn summary`` table is the seed's printed one.

``monster``          Fleuret EE-559 §7 (seed 002 L1483-1672): AlexNet's conv1 + ReLU, a
                     3x3 "converter", residual blocks conv-BN-ReLU-conv-BN with **no ReLU
                     after the sum** (``x = x + b(x)``), ``AvgPool2d(7)`` (7x7 maps: 32x32
                     input only) and one linear layer. Monster(16, 64): 1,246,666
                     parameters. ``freeze_features(q)`` is the seed's; the loop that
                     freezes the first half of the epochs is ``examples/monster_finetune.py``.
``lenet5_fleuret``   seed 002 L287-305: unpadded 5x5 convs, ReLU, max pooling on 1x28x28,
                     so the classifier starts at ``Linear(256, 120)`` (16 x 4 x 4), not the
                     paper's 120 maps of C5.
``lenet5_d2l``       seed 003 L288-305 (d2l): ``padding=2``, **sigmoid** and average
                     pooling, ``Linear(400, 120)``, in one ``net`` Sequential.
``nin_d2l``          seed 003 L367-446 (d2l): floor pooling, the last block all ``n_cls``
                     wide, on 1x224x224: 96x54x54 -> 96x26x26 -> 256x26x26 -> 256x12x12 ->
                     384x12x12 -> 384x5x5 -> 10x5x5 -> 10x1x1. ``nin`` (the authors' Caffe
                     release: ceil pooling, a 1024-wide last block) ends at 10x6x6.

The layers' initialisation is minicnn's default (PyTorch's), as in the seeds' code.
"""
from __future__ import annotations

from minicnn import nn

from .nin import NiN

__all__ = ["Monster", "monster", "make_resnet_block", "LeNet5Fleuret", "lenet5_fleuret",
           "LeNet5D2L", "lenet5_d2l", "nin_d2l"]


def make_resnet_block(nb_channels, kernel_size=3):
    """The seed's residual branch: conv-BN-ReLU-conv-BN (the sum is in ``forward``)."""
    return nn.Sequential(
        nn.Conv2d(nb_channels, nb_channels, kernel_size=kernel_size,
                  padding=(kernel_size - 1) // 2),
        nn.BatchNorm2d(nb_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(nb_channels, nb_channels, kernel_size=kernel_size,
                  padding=(kernel_size - 1) // 2),
        nn.BatchNorm2d(nb_channels),
    )


class Monster(nn.Module):
    """Seed 002's fine-tuning network for CIFAR-10 (see the module docstring).

    ``alexnet``: a (trained) AlexNet whose ``features[0]`` becomes this net's first layer
    (shared, as in the seed); None builds a fresh ``Conv2d(in_channels, 64, 11, 4, 2)``.

    Shape: (N, in_channels, 32, 32) -> features (N, 64, 7, 7) -> (N, num_classes).
    """

    def __init__(self, nb_residual_blocks=16, nb_channels=64, num_classes=10, in_channels=3,
                 alexnet=None):
        super().__init__()
        nb_alexnet_channels = 64
        alexnet_feature_map_size = 7               # for 32x32 (e.g. CIFAR)
        first = (alexnet.features[0] if alexnet is not None else
                 nn.Conv2d(in_channels, nb_alexnet_channels, kernel_size=11, stride=4,
                           padding=2))
        self.features = nn.Sequential(first, nn.ReLU(inplace=True))
        self.converter = nn.Sequential(
            nn.Conv2d(nb_alexnet_channels, nb_channels, kernel_size=3, padding=1),
            nn.ReLU(inplace=True))
        self.resnet_blocks = nn.ModuleList(
            [make_resnet_block(nb_channels, 3) for _ in range(nb_residual_blocks)])
        self.final_average = nn.AvgPool2d(alexnet_feature_map_size)
        self.fc = nn.Linear(nb_channels, num_classes)

    def freeze_features(self, q):
        """Freeze (``q`` true) or unfreeze the AlexNet layer."""
        for p in self.features.parameters():
            p.requires_grad = not q        # frozen: no gradient needed

    def forward(self, x):
        x = self.features(x)                               # (N, 64, 7, 7) at 32x32
        x = self.converter(x)                              # (N, nb_channels, 7, 7)
        if x.shape[-2:] != (7, 7):
            raise ValueError(f"Monster: expects 32x32 images (7x7 maps for AvgPool2d(7)), "
                             f"got maps of {tuple(x.shape[-2:])}")
        for b in self.resnet_blocks:
            x = x + b(x)                                   # no ReLU after the sum
        x = self.final_average(x).view(x.size(0), -1)      # (N, nb_channels)
        return self.fc(x)                                  # (N, num_classes)


def monster(nb_residual_blocks=16, nb_channels=64, num_classes=10, in_channels=3,
            alexnet=None):
    """Seed 002's "Monster": AlexNet conv1 + residual blocks + average pool + fc."""
    return Monster(nb_residual_blocks, nb_channels, num_classes, in_channels, alexnet)


class LeNet5Fleuret(nn.Module):
    """LeNet-5 as torch prints it in seed 002 (``features``, ``classifier``).

    Shape: (N, in_channels, 28, 28) -> (N, 16, 4, 4) -> (N, num_classes).
    """

    def __init__(self, num_classes=10, in_channels=1):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(6, 16, kernel_size=5), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=2, stride=2))
        self.classifier = nn.Sequential(
            nn.Linear(256, 120), nn.ReLU(inplace=True),
            nn.Linear(120, 84), nn.ReLU(inplace=True),
            nn.Linear(84, num_classes))

    def forward(self, x):
        x = self.features(x)                   # (N, 16, 4, 4) at 28x28
        return self.classifier(x.view(x.size(0), -1))


def lenet5_fleuret(num_classes=10, in_channels=1):
    """Seed 002's LeNet5: unpadded convs, ReLU, max pooling, Linear(256, 120); 28x28."""
    return LeNet5Fleuret(num_classes, in_channels)


class LeNet5D2L(nn.Module):
    """d2l's LeNet (seed 003): one ``net`` Sequential, sigmoid and average pooling.

    Shape: (N, in_channels, 28, 28) -> (N, 16, 5, 5) -> (N, 400) -> (N, num_classes).
    """

    def __init__(self, num_classes=10, in_channels=1):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5, padding=2), nn.Sigmoid(),
            nn.AvgPool2d(kernel_size=2, stride=2),
            nn.Conv2d(6, 16, kernel_size=5), nn.Sigmoid(),
            nn.AvgPool2d(kernel_size=2, stride=2),
            nn.Flatten(),
            nn.Linear(400, 120), nn.Sigmoid(),
            nn.Linear(120, 84), nn.Sigmoid(),
            nn.Linear(84, num_classes))

    def forward(self, x):
        return self.net(x)


def lenet5_d2l(num_classes=10, in_channels=1):
    """Seed 003's (d2l's) LeNet: padding 2, sigmoid, average pooling; 28x28."""
    return LeNet5D2L(num_classes, in_channels)


def nin_d2l(num_classes=10, in_channels=1, dropout=0.5):
    """Seed 003's (d2l's) NiN: floor pooling, last block ``num_classes`` wide throughout;
    1x224x224 in, 10x5x5 class maps (the :class:`NiN` layout, so the blocks are named as
    ``nin``'s)."""
    def pool():
        return nn.MaxPool2d(kernel_size=3, stride=2)
    return NiN(
        blocks=[((96, 96, 96), 11, 4, 0),                     # (N, 96, 54, 54) at 224
                ((256, 256, 256), 5, 1, 2),                   # (N, 256, 26, 26)
                ((384, 384, 384), 3, 1, 1),                   # (N, 384, 12, 12)
                ((num_classes, num_classes, None), 3, 1, 1)],  # (N, num_classes, 5, 5)
        between=[pool(), pool(), nn.Sequential(pool(), nn.Dropout(p=dropout))],
        num_classes=num_classes, in_channels=in_channels)
