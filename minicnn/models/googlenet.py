"""GoogLeNet (Inception v1): torchvision's form and the paper's form.

Szegedy et al., "Going Deeper with Convolutions" (CVPR 2015).

The Inception module runs four branches side by side on the same input and
concatenates their outputs along channels: a 1x1 convolution; 1x1 -> 3x3; 1x1 -> 5x5;
and 3x3 max pool -> 1x1. The 1x1 "reduce" convolutions in front of the large kernels
cut the channels first, which is what makes the module cheap (the paper's main idea).
Two auxiliary classifiers on intermediate outputs (after 4a and 4d) add gradient
signal deep inside the network during training and are dropped at test time.

* :class:`GoogLeNet` / :func:`googlenet` is torchvision's: every convolution is
  :class:`BasicConv2d` (conv without bias, BN with eps=0.001, ReLU), an addition from
  later Inception versions. NOTE: torchvision's "5x5" branch really uses a 3x3
  convolution (a long-standing slip kept for its pretrained weights); we keep it so
  state dicts match (``Inception(..., branch3_kernel_size=5)`` gives the real one).
  6,624,904 parameters without the auxiliary classifiers.
* :class:`GoogLeNetPaper` / :func:`googlenet_paper` is the paper's table 1: convolutions
  with bias and ReLU, no BN, a true 5x5 branch, LRN after the first pool and after the
  second convolution stage, dropout 0.4 before the linear layer, and auxiliary heads of
  5x5/3 average pool, 1x1 conv (128), FC 1024, dropout 0.7, FC.

The code is plain PyTorch style (only the imports differ); the tests run this source
against ``torch.nn`` to check that both agree.
"""
from __future__ import annotations

import collections

import minicnn
from minicnn import nn
from minicnn.nn import functional as F

__all__ = ["GoogLeNetOutputs", "BasicConv2d", "Inception", "InceptionAux", "GoogLeNet",
           "googlenet", "ConvReLU", "InceptionAuxPaper", "GoogLeNetPaper", "googlenet_paper"]

# What the network returns in training mode with auxiliary classifiers (as torchvision).
GoogLeNetOutputs = collections.namedtuple("GoogLeNetOutputs",
                                          ["logits", "aux_logits2", "aux_logits1"])


class BasicConv2d(nn.Module):
    """Convolution (no bias: BN's shift replaces it) -> BN (eps=0.001) -> ReLU."""

    def __init__(self, in_channels, out_channels, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x):
        x = self.conv(x)
        x = self.bn(x)
        return F.relu(x, inplace=True)


class ConvReLU(nn.Module):
    """Convolution with bias -> ReLU: the paper's convolution unit (no BN in 2014)."""

    def __init__(self, in_channels, out_channels, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, **kwargs)

    def forward(self, x):
        return F.relu(self.conv(x), inplace=True)


class Inception(nn.Module):
    """The Inception module: four branches concatenated along channels.

    Shape: (N, in_channels, H, W) -> (N, ch1x1 + ch3x3 + ch5x5 + pool_proj, H, W).
    ``branch3_kernel_size`` is the kernel of the "5x5" branch: 3 in torchvision
    (default, see the module docstring), 5 in the paper.
    """

    def __init__(self, in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj,
                 conv_block=None, branch3_kernel_size=3):
        super().__init__()
        if conv_block is None:
            conv_block = BasicConv2d
        k = branch3_kernel_size
        self.branch1 = conv_block(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(
            conv_block(in_channels, ch3x3red, kernel_size=1),
            conv_block(ch3x3red, ch3x3, kernel_size=3, padding=1),
        )
        self.branch3 = nn.Sequential(
            conv_block(in_channels, ch5x5red, kernel_size=1),
            conv_block(ch5x5red, ch5x5, kernel_size=k, padding=k // 2),
        )
        self.branch4 = nn.Sequential(
            # stride 1 and padding 1 keep the size; ceil_mode changes nothing here
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
            conv_block(in_channels, pool_proj, kernel_size=1),
        )

    def forward(self, x):
        outputs = [self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)]
        return minicnn.cat(outputs, 1)


class InceptionAux(nn.Module):
    """torchvision's auxiliary classifier: adaptive 4x4 average pool, BasicConv2d 1x1
    (128), FC 2048 -> 1024, ReLU, dropout 0.7, FC -> num_classes."""

    def __init__(self, in_channels, num_classes, conv_block=None, dropout=0.7):
        super().__init__()
        if conv_block is None:
            conv_block = BasicConv2d
        self.conv = conv_block(in_channels, 128, kernel_size=1)
        self.fc1 = nn.Linear(2048, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(p=dropout)

    def forward(self, x):
        x = F.adaptive_avg_pool2d(x, (4, 4))   # (N, C, 4, 4): 14x14 at 224 in -> 4x4
        x = self.conv(x)                       # (N, 128, 4, 4)
        x = minicnn.flatten(x, 1)              # (N, 2048)
        x = F.relu(self.fc1(x), inplace=True)  # (N, 1024)
        x = self.dropout(x)
        x = self.fc2(x)                        # (N, num_classes)
        return x


class _GoogLeNetBase(nn.Module):
    """What the two forms share after their stem: the nine Inception modules of the
    paper's table 1 with the max pools between them, the auxiliary heads on 4a and 4d,
    and the head (average pool, dropout, linear). The attribute names are torchvision's
    (the state-dict contract)."""

    def _make_inception_stages(self, inception_block, aux_block, num_classes, aux_logits,
                               dropout, dropout_aux, maxpool4_kernel):
        self.aux_logits = aux_logits
        # widths in Inception's argument order: in_channels, #1x1, #3x3 reduce, #3x3,
        # #5x5 reduce, #5x5, pool proj (table 1)
        self.inception3a = inception_block(192, 64, 96, 128, 16, 32, 32)
        self.inception3b = inception_block(256, 128, 128, 192, 32, 96, 64)
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)

        self.inception4a = inception_block(480, 192, 96, 208, 16, 48, 64)
        self.inception4b = inception_block(512, 160, 112, 224, 24, 64, 64)
        self.inception4c = inception_block(512, 128, 128, 256, 24, 64, 64)
        self.inception4d = inception_block(512, 112, 144, 288, 32, 64, 64)
        self.inception4e = inception_block(528, 256, 160, 320, 32, 128, 128)
        # NOTE: torchvision pools 2x2/2 here, the paper 3x3/2; with ceil_mode both
        # take 14x14 to 7x7
        self.maxpool4 = nn.MaxPool2d(maxpool4_kernel, stride=2, ceil_mode=True)

        self.inception5a = inception_block(832, 256, 160, 320, 32, 128, 128)
        self.inception5b = inception_block(832, 384, 192, 384, 48, 128, 128)

        if aux_logits:
            self.aux1 = aux_block(512, num_classes, dropout=dropout_aux)
            self.aux2 = aux_block(528, num_classes, dropout=dropout_aux)
        else:
            self.aux1 = None
            self.aux2 = None

        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(1024, num_classes)

    def _forward_inception_stages(self, x):
        # shapes for a 224x224 input, whose stem ends at (N, 192, 28, 28)
        x = self.inception3a(x)      # (N, 256, 28, 28)
        x = self.inception3b(x)      # (N, 480, 28, 28)
        x = self.maxpool3(x)         # (N, 480, 14, 14)
        x = self.inception4a(x)      # (N, 512, 14, 14)
        use_aux = self.training and self.aux1 is not None
        aux1 = self.aux1(x) if use_aux else None

        x = self.inception4b(x)      # (N, 512, 14, 14)
        x = self.inception4c(x)      # (N, 512, 14, 14)
        x = self.inception4d(x)      # (N, 528, 14, 14)
        aux2 = self.aux2(x) if use_aux else None

        x = self.inception4e(x)      # (N, 832, 14, 14)
        x = self.maxpool4(x)         # (N, 832, 7, 7)
        x = self.inception5a(x)      # (N, 832, 7, 7)
        x = self.inception5b(x)      # (N, 1024, 7, 7)

        x = self.avgpool(x)          # (N, 1024, 1, 1)
        x = minicnn.flatten(x, 1)    # (N, 1024)
        x = self.dropout(x)
        x = self.fc(x)               # (N, num_classes)
        if use_aux:
            return GoogLeNetOutputs(x, aux2, aux1)
        return x


class GoogLeNet(_GoogLeNetBase):
    """torchvision's GoogLeNet.

    Shape: (N, in_channels, H, W) -> (N, num_classes), or in training mode with
    ``aux_logits=True`` a :data:`GoogLeNetOutputs` (logits, aux_logits2, aux_logits1).
    ``transform_input`` re-normalises inputs from ImageNet's mean/std to [-1, 1], which
    torchvision's pretrained weights expect; it is False by default here (torchvision
    turns it on only when loading those weights). Works for inputs of about 32x32 up.
    """

    def __init__(self, num_classes=1000, aux_logits=True, transform_input=False,
                 init_weights=True, blocks=None, dropout=0.2, dropout_aux=0.7,
                 in_channels=3):
        super().__init__()
        if blocks is None:
            blocks = [BasicConv2d, Inception, InceptionAux]
        if len(blocks) != 3:
            raise ValueError(f"blocks' length should be 3 instead of {len(blocks)}")
        if transform_input and in_channels != 3:
            raise ValueError("transform_input needs in_channels=3 (it re-normalises RGB)")
        conv_block, inception_block, inception_aux_block = blocks

        self.transform_input = transform_input

        self.conv1 = conv_block(in_channels, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = conv_block(64, 64, kernel_size=1)
        self.conv3 = conv_block(64, 192, kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self._make_inception_stages(inception_block, inception_aux_block, num_classes,
                                    aux_logits, dropout, dropout_aux, maxpool4_kernel=2)

        if init_weights:
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.constant_(m.weight, 1)
                    nn.init.constant_(m.bias, 0)

    def _transform_input(self, x):
        if self.transform_input:
            # x was normalised with ImageNet's mean/std; map each channel to (v - 0.5)/0.5
            x_ch0 = minicnn.unsqueeze(x[:, 0], 1) * (0.229 / 0.5) + (0.485 - 0.5) / 0.5
            x_ch1 = minicnn.unsqueeze(x[:, 1], 1) * (0.224 / 0.5) + (0.456 - 0.5) / 0.5
            x_ch2 = minicnn.unsqueeze(x[:, 2], 1) * (0.225 / 0.5) + (0.406 - 0.5) / 0.5
            x = minicnn.cat((x_ch0, x_ch1, x_ch2), 1)
        return x

    def forward(self, x):
        x = self._transform_input(x)
        # shapes for a 224x224 input
        x = self.conv1(x)            # (N, 64, 112, 112)
        x = self.maxpool1(x)         # (N, 64, 56, 56)
        x = self.conv2(x)            # (N, 64, 56, 56)
        x = self.conv3(x)            # (N, 192, 56, 56)
        x = self.maxpool2(x)         # (N, 192, 28, 28)
        return self._forward_inception_stages(x)


def googlenet(**kwargs):
    """torchvision's GoogLeNet (``aux_logits=True`` by default, as torchvision's class;
    6,624,904 parameters without the auxiliary classifiers, 1.5 G multiply-adds)."""
    return GoogLeNet(**kwargs)


class InceptionAuxPaper(nn.Module):
    """The paper's auxiliary classifier: 5x5/3 average pool (4x4 out of 14x14), 1x1 conv
    (128) + ReLU, FC 1024 + ReLU, dropout 0.7, FC. The pool is adaptive to 4x4 so that
    other input sizes work; at 224x224 it is exactly 5x5/3."""

    def __init__(self, in_channels, num_classes, dropout=0.7):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d((4, 4))
        self.conv = ConvReLU(in_channels, 128, kernel_size=1)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.dropout = nn.Dropout(p=dropout)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x):
        x = self.conv(self.avgpool(x))          # (N, 128, 4, 4)
        x = minicnn.flatten(x, 1)               # (N, 2048)
        x = F.relu(self.fc1(x), inplace=True)
        return self.fc2(self.dropout(x))


class GoogLeNetPaper(_GoogLeNetBase):
    """GoogLeNet as in the paper's table 1 and figure 3.

    Same stages and widths as :class:`GoogLeNet`, but convolutions have biases and no
    BN, the "5x5" branch is 5x5, LRN follows the first pool and the 3x3 convolution,
    and the head is a 7x7 average pool (adaptive here), dropout 0.4 and a linear layer.
    The LRN uses the constants of the Caffe reproduction "bvlc_googlenet" (n=5,
    alpha=1e-4, beta=0.75, k=1) in Caffe's formula, which is torch's (alpha divided by
    n); the paper does not give them. Returns
    :data:`GoogLeNetOutputs` in training mode with ``aux_logits`` (no torchvision twin).
    """

    def __init__(self, num_classes=1000, aux_logits=True, dropout=0.4, dropout_aux=0.7,
                 in_channels=3):
        super().__init__()

        def inception(*widths):
            return Inception(*widths, conv_block=ConvReLU, branch3_kernel_size=5)

        def lrn():
            return nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)

        self.conv1 = ConvReLU(in_channels, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.lrn1 = lrn()
        self.conv2 = ConvReLU(64, 64, kernel_size=1)
        self.conv3 = ConvReLU(64, 192, kernel_size=3, padding=1)
        self.lrn2 = lrn()
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)

        self._make_inception_stages(inception, InceptionAuxPaper, num_classes, aux_logits,
                                    dropout, dropout_aux, maxpool4_kernel=3)

        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.constant_(m.bias, 0.2 if isinstance(m, nn.Conv2d) else 0.0)

    def forward(self, x):
        x = self.lrn1(self.maxpool1(self.conv1(x)))     # (N, 64, 56, 56)
        x = self.conv3(self.conv2(x))                   # (N, 192, 56, 56)
        x = self.maxpool2(self.lrn2(x))                 # (N, 192, 28, 28)
        return self._forward_inception_stages(x)


def googlenet_paper(**kwargs):
    """The paper's GoogLeNet (see :class:`GoogLeNetPaper`)."""
    return GoogLeNetPaper(**kwargs)
