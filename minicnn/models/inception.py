"""Inception v3, torchvision's form (its state-dict keys).

Szegedy, Vanhoucke, Ioffe, Shlens, Wojna, "Rethinking the Inception Architecture for
Computer Vision" (CVPR 2016, arXiv 1512.00567). What changed since GoogLeNet (v1):

* factorised convolutions: a 5x5 becomes two 3x3 (``InceptionA``'s double-3x3 branch),
  an n x n becomes a 1 x n then an n x 1 (``InceptionC``, n = 7 on the 17x17 grid), and
  the 8x8 grid's 3x3s split into parallel 1x3 and 3x1 outputs (``InceptionE``);
* grid reduction without a representational bottleneck: a stride-2 convolution branch
  beside a stride-2 pool, concatenated (``InceptionB`` 35 -> 17, ``InceptionD`` 17 -> 8);
* one auxiliary classifier on the 17x17 grid, with BN, as a regulariser (torchvision's
  recipe weighs its loss 0.4; ``minicnn.train.Classification(aux_weight=0.4)``);
* every convolution is conv (no bias) -> BN (eps 0.001) -> ReLU; input 299x299, at least
  75x75.

27,161,264 parameters with the auxiliary head, 23,834,568 without (torchvision's counts).
In training mode with ``aux_logits`` the model returns :data:`InceptionOutputs`
``(logits, aux_logits)``, as torchvision; otherwise the logits.

NOTE: torchvision sets ``stddev`` 0.01 on the auxiliary ``conv1`` *wrapper*, which its
initialisation loop never looks at (it reads ``stddev`` of Conv2d and Linear modules), so
that convolution gets the default 0.1 there; the same happens here. The auxiliary ``fc``
gets 0.001.

The code is plain PyTorch style (only the imports differ); the tests run this source
against ``torch.nn`` to check that both agree.
"""
from __future__ import annotations

import collections

import minicnn
from minicnn import nn
from minicnn.nn import functional as F

__all__ = ["InceptionOutputs", "Inception3", "inception_v3"]

# What the network returns in training mode with the auxiliary head (as torchvision).
InceptionOutputs = collections.namedtuple("InceptionOutputs", ["logits", "aux_logits"])


class BasicConv2d(nn.Sequential):
    """conv (no bias: BN's shift replaces it) -> BN (eps 0.001) -> ReLU, children named
    ``conv``, ``bn`` and ``relu`` (the keys of torchvision's ``BasicConv2d``)."""

    def __init__(self, in_channels, out_channels, **kwargs):
        super().__init__(collections.OrderedDict([
            ("conv", nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)),
            ("bn", nn.BatchNorm2d(out_channels, eps=0.001)),
            ("relu", nn.ReLU(inplace=True))]))


class InceptionA(nn.Module):
    """35x35 module: 1x1 | 1x1 -> 5x5 | 1x1 -> 3x3 -> 3x3 | avg pool -> 1x1.
    Shape: (N, C, H, W) -> (N, 224 + pool_features, H, W)."""

    def __init__(self, in_channels, pool_features, conv_block=None):
        super().__init__()
        conv_block = conv_block or BasicConv2d
        self.branch1x1 = conv_block(in_channels, 64, kernel_size=1)
        self.branch5x5_1 = conv_block(in_channels, 48, kernel_size=1)
        self.branch5x5_2 = conv_block(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = conv_block(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = conv_block(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = conv_block(96, 96, kernel_size=3, padding=1)
        self.branch_pool = conv_block(in_channels, pool_features, kernel_size=1)

    def forward(self, x):
        branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        branch_pool = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return minicnn.cat([self.branch1x1(x), branch5x5, branch3x3dbl, branch_pool], 1)


class InceptionB(nn.Module):
    """Grid reduction 35 -> 17: 3x3/2 | 1x1 -> 3x3 -> 3x3/2 | max pool 3x3/2.
    Shape: (N, C, H, W) -> (N, 480 + C, (H - 3) // 2 + 1, (W - 3) // 2 + 1)."""

    def __init__(self, in_channels, conv_block=None):
        super().__init__()
        conv_block = conv_block or BasicConv2d
        self.branch3x3 = conv_block(in_channels, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = conv_block(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = conv_block(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = conv_block(96, 96, kernel_size=3, stride=2)

    def forward(self, x):
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        branch_pool = F.max_pool2d(x, kernel_size=3, stride=2)
        return minicnn.cat([self.branch3x3(x), branch3x3dbl, branch_pool], 1)


class InceptionC(nn.Module):
    """17x17 module with 7x7s factorised into 1x7 and 7x1 (``channels_7x7`` wide inside):
    1x1 | 1x1 -> 1x7 -> 7x1 | 1x1 -> 7x1 -> 1x7 -> 7x1 -> 1x7 | avg pool -> 1x1.
    Shape: (N, C, H, W) -> (N, 768, H, W)."""

    def __init__(self, in_channels, channels_7x7, conv_block=None):
        super().__init__()
        conv_block = conv_block or BasicConv2d
        c7 = channels_7x7
        row, col = dict(kernel_size=(1, 7), padding=(0, 3)), dict(kernel_size=(7, 1),
                                                                    padding=(3, 0))
        self.branch1x1 = conv_block(in_channels, 192, kernel_size=1)
        self.branch7x7_1 = conv_block(in_channels, c7, kernel_size=1)
        self.branch7x7_2 = conv_block(c7, c7, **row)
        self.branch7x7_3 = conv_block(c7, 192, **col)
        self.branch7x7dbl_1 = conv_block(in_channels, c7, kernel_size=1)
        self.branch7x7dbl_2 = conv_block(c7, c7, **col)
        self.branch7x7dbl_3 = conv_block(c7, c7, **row)
        self.branch7x7dbl_4 = conv_block(c7, c7, **col)
        self.branch7x7dbl_5 = conv_block(c7, 192, **row)
        self.branch_pool = conv_block(in_channels, 192, kernel_size=1)

    def forward(self, x):
        branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        branch7x7dbl = self.branch7x7dbl_1(x)
        for conv in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                     self.branch7x7dbl_5):
            branch7x7dbl = conv(branch7x7dbl)
        branch_pool = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return minicnn.cat([self.branch1x1(x), branch7x7, branch7x7dbl, branch_pool], 1)


class InceptionD(nn.Module):
    """Grid reduction 17 -> 8: 1x1 -> 3x3/2 | 1x1 -> 1x7 -> 7x1 -> 3x3/2 | max pool 3x3/2.
    Shape: (N, C, H, W) -> (N, 512 + C, (H - 3) // 2 + 1, (W - 3) // 2 + 1)."""

    def __init__(self, in_channels, conv_block=None):
        super().__init__()
        conv_block = conv_block or BasicConv2d
        self.branch3x3_1 = conv_block(in_channels, 192, kernel_size=1)
        self.branch3x3_2 = conv_block(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = conv_block(in_channels, 192, kernel_size=1)
        self.branch7x7x3_2 = conv_block(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = conv_block(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = conv_block(192, 192, kernel_size=3, stride=2)

    def forward(self, x):
        branch3x3 = self.branch3x3_2(self.branch3x3_1(x))
        branch7x7x3 = self.branch7x7x3_1(x)
        for conv in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            branch7x7x3 = conv(branch7x7x3)
        branch_pool = F.max_pool2d(x, kernel_size=3, stride=2)
        return minicnn.cat([branch3x3, branch7x7x3, branch_pool], 1)


class InceptionE(nn.Module):
    """8x8 module, the 3x3s split into parallel 1x3 and 3x1 outputs ("expanded filter
    bank"): 1x1 | 1x1 -> (1x3, 3x1) | 1x1 -> 3x3 -> (1x3, 3x1) | avg pool -> 1x1.
    Shape: (N, C, H, W) -> (N, 2048, H, W)."""

    def __init__(self, in_channels, conv_block=None):
        super().__init__()
        conv_block = conv_block or BasicConv2d
        row, col = dict(kernel_size=(1, 3), padding=(0, 1)), dict(kernel_size=(3, 1),
                                                                    padding=(1, 0))
        self.branch1x1 = conv_block(in_channels, 320, kernel_size=1)
        self.branch3x3_1 = conv_block(in_channels, 384, kernel_size=1)
        self.branch3x3_2a = conv_block(384, 384, **row)
        self.branch3x3_2b = conv_block(384, 384, **col)
        self.branch3x3dbl_1 = conv_block(in_channels, 448, kernel_size=1)
        self.branch3x3dbl_2 = conv_block(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = conv_block(384, 384, **row)
        self.branch3x3dbl_3b = conv_block(384, 384, **col)
        self.branch_pool = conv_block(in_channels, 192, kernel_size=1)

    def forward(self, x):
        branch3x3 = self.branch3x3_1(x)
        branch3x3 = minicnn.cat([self.branch3x3_2a(branch3x3), self.branch3x3_2b(branch3x3)], 1)
        branch3x3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        branch3x3dbl = minicnn.cat([self.branch3x3dbl_3a(branch3x3dbl),
                                    self.branch3x3dbl_3b(branch3x3dbl)], 1)
        branch_pool = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return minicnn.cat([self.branch1x1(x), branch3x3, branch3x3dbl, branch_pool], 1)


class InceptionAux(nn.Module):
    """The auxiliary classifier on the 17x17 grid: avg pool 5x5/3 (17 -> 5), 1x1 (128),
    5x5 (768), global average pool, FC. Shape: (N, C, 17, 17) -> (N, num_classes)."""

    def __init__(self, in_channels, num_classes, conv_block=None):
        super().__init__()
        conv_block = conv_block or BasicConv2d
        self.conv0 = conv_block(in_channels, 128, kernel_size=1)
        self.conv1 = conv_block(128, 768, kernel_size=5)
        self.conv1.stddev = 0.01        # not read by the init loop (see the module NOTE)
        self.fc = nn.Linear(768, num_classes)
        self.fc.stddev = 0.001

    def forward(self, x):
        x = F.avg_pool2d(x, kernel_size=5, stride=3)   # (N, 768, 5, 5) at 17x17
        x = self.conv1(self.conv0(x))                   # (N, 768, 1, 1)
        x = F.adaptive_avg_pool2d(x, (1, 1))            # (N, 768, 1, 1)
        return self.fc(minicnn.flatten(x, 1))           # (N, num_classes)


class Inception3(nn.Module):
    """torchvision's Inception v3.

    Shape: (N, in_channels, H, W) -> (N, num_classes), or in training mode with
    ``aux_logits=True`` an :data:`InceptionOutputs` (logits, aux_logits). H, W >= 75.
    ``transform_input`` re-normalises inputs from ImageNet's mean/std to [-1, 1], which
    torchvision's pretrained weights expect (False by default, as torchvision's class).
    """

    def __init__(self, num_classes=1000, aux_logits=True, transform_input=False,
                 init_weights=True, dropout=0.5, in_channels=3):
        super().__init__()
        if transform_input and in_channels != 3:
            raise ValueError("Inception3: transform_input needs in_channels=3 (it "
                             "re-normalises RGB)")
        self.aux_logits = aux_logits
        self.transform_input = transform_input
        self.Conv2d_1a_3x3 = BasicConv2d(in_channels, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.maxpool1 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.maxpool2 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.AuxLogits = InceptionAux(768, num_classes) if aux_logits else None
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280)
        self.Mixed_7c = InceptionE(2048)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(2048, num_classes)
        if init_weights:
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    stddev = float(getattr(m, "stddev", 0.1))
                    nn.init.trunc_normal_(m.weight, mean=0.0, std=stddev, a=-2, b=2)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.constant_(m.weight, 1)
                    nn.init.constant_(m.bias, 0)

    def _transform_input(self, x):
        if self.transform_input:
            # x was normalised with ImageNet's mean/std; map each channel to (v - 0.5)/0.5
            x = minicnn.cat([minicnn.unsqueeze(x[:, c], 1) * (s / 0.5) + (m - 0.5) / 0.5
                             for c, (m, s) in enumerate(((0.485, 0.229), (0.456, 0.224),
                                                         (0.406, 0.225)))], 1)
        return x

    def forward(self, x):
        x = self._transform_input(x)
        # shapes for a 299x299 input
        x = self.Conv2d_1a_3x3(x)    # (N, 32, 149, 149)
        x = self.Conv2d_2a_3x3(x)    # (N, 32, 147, 147)
        x = self.Conv2d_2b_3x3(x)    # (N, 64, 147, 147)
        x = self.maxpool1(x)         # (N, 64, 73, 73)
        x = self.Conv2d_3b_1x1(x)    # (N, 80, 73, 73)
        x = self.Conv2d_4a_3x3(x)    # (N, 192, 71, 71)
        x = self.maxpool2(x)         # (N, 192, 35, 35)
        x = self.Mixed_5b(x)         # (N, 256, 35, 35)
        x = self.Mixed_5c(x)         # (N, 288, 35, 35)
        x = self.Mixed_5d(x)         # (N, 288, 35, 35)
        x = self.Mixed_6a(x)         # (N, 768, 17, 17)
        x = self.Mixed_6b(x)         # (N, 768, 17, 17)
        x = self.Mixed_6c(x)         # (N, 768, 17, 17)
        x = self.Mixed_6d(x)         # (N, 768, 17, 17)
        x = self.Mixed_6e(x)         # (N, 768, 17, 17)
        use_aux = self.training and self.AuxLogits is not None
        aux = self.AuxLogits(x) if use_aux else None
        x = self.Mixed_7a(x)         # (N, 1280, 8, 8)
        x = self.Mixed_7b(x)         # (N, 2048, 8, 8)
        x = self.Mixed_7c(x)         # (N, 2048, 8, 8)
        x = self.avgpool(x)          # (N, 2048, 1, 1)
        x = self.dropout(x)
        x = minicnn.flatten(x, 1)    # (N, 2048)
        x = self.fc(x)               # (N, num_classes)
        if use_aux:
            return InceptionOutputs(x, aux)
        return x


def inception_v3(**kwargs):
    """torchvision's Inception v3 (``aux_logits=True`` by default; 27,161,264 parameters,
    23,834,568 without the auxiliary head; 299x299 input)."""
    return Inception3(**kwargs)
