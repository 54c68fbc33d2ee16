"""ResNet, ResNeXt and Wide ResNet, in torchvision's layout, plus the CIFAR ResNets of
the paper.

He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition" (CVPR 2016);
Xie et al., "Aggregated Residual Transformations" (ResNeXt, CVPR 2017);
Zagoruyko & Komodakis, "Wide Residual Networks" (BMVC 2016).

A residual block computes ``relu(F(x) + shortcut(x))``: the layers only learn the
correction ``F`` to the identity, which is what lets 100+ layers train. The shortcut is
the identity when shapes agree, else a projection (``downsample`` = 1x1 conv + BN, the
paper's option B).

Attribute names (``conv1``, ``bn1``, ``layer1.0.downsample.0``, ``fc``) are torchvision's,
so ``model.load_state_dict`` accepts a torchvision state dict unchanged.

NOTE: like torchvision, the ImageNet Bottleneck is "ResNet v1.5": its stride-2 sits on
the 3x3 convolution, where the paper put it on the first 1x1 (v1.5 is slightly more
accurate and a little more expensive: 4.09 G multiply-adds for ResNet-50 against 3.8 G).

The code is written in plain PyTorch style (only the imports below differ), and the
tests run this very source against ``torch.nn`` to check that both agree. The one
minicnn-only name, ``norm_then_act(bn, relu, x)``, is ``relu(bn(x))``: one fused op for
plain BatchNorm2d and ReLU modules without hooks, the two modules otherwise (torch's
included), so the twin runs the plain code.
"""
from __future__ import annotations

import minicnn
from minicnn import nn
from minicnn.nn import functional as F
from minicnn.nn.activation import norm_then_act

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "resnet18", "resnet34", "resnet50",
           "resnet101", "resnet152", "resnext50_32x4d", "resnext101_32x8d",
           "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2",
           "ZeroPadShortcut", "CifarResNet", "resnet20", "resnet32", "resnet44", "resnet56",
           "resnet110"]


def conv3x3(in_planes, out_planes, stride=1, groups=1, dilation=1):
    """3x3 convolution that keeps the spatial size at stride 1 (padding = dilation)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=dilation,
                     groups=groups, bias=False, dilation=dilation)


def conv1x1(in_planes, out_planes, stride=1):
    """1x1 convolution: mixes channels, used to change width and for projections."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions (ResNet-18/34): conv-BN-ReLU-conv-BN, + shortcut, ReLU.

    Shape: (N, inplanes, H, W) -> (N, planes, H/stride, W/stride).
    """

    expansion = 1      # output channels = planes * expansion

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1,
                 base_width=64, dilation=1, norm_layer=None):
        super().__init__()
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock only supports groups=1 and base_width=64")
        if dilation > 1:
            raise NotImplementedError("dilation > 1 is not supported in BasicBlock")
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x

        out = self.conv1(x)
        out = norm_then_act(self.bn1, self.relu, out)      # self.relu(self.bn1(out))

        out = self.conv2(out)
        out = self.bn2(out)

        if self.downsample is not None:
            identity = self.downsample(x)

        out += identity
        out = self.relu(out)
        return out


class Bottleneck(nn.Module):
    """1x1 (reduce) -> 3x3 (grouped for ResNeXt) -> 1x1 (expand x4), + shortcut, ReLU.

    The 3x3 works on ``width = planes * base_width/64 * groups`` channels: 64/group for
    ResNet, wider for ResNeXt (``groups=32``) and Wide ResNet (``base_width=128``).
    Shape: (N, inplanes, H, W) -> (N, 4 * planes, H/stride, W/stride).
    """

    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1,
                 base_width=64, dilation=1, norm_layer=None):
        super().__init__()
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = norm_layer(width)
        self.conv2 = conv3x3(width, width, stride, groups, dilation)   # v1.5: stride here
        self.bn2 = norm_layer(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x

        out = self.conv1(x)
        out = norm_then_act(self.bn1, self.relu, out)      # self.relu(self.bn1(out))

        out = self.conv2(out)
        out = norm_then_act(self.bn2, self.relu, out)      # self.relu(self.bn2(out))

        out = self.conv3(out)
        out = self.bn3(out)

        if self.downsample is not None:
            identity = self.downsample(x)

        out += identity
        out = self.relu(out)
        return out


class ResNet(nn.Module):
    """The ImageNet ResNet: a 7x7/2 stem and a 3x3/2 max pool, four stages of residual
    blocks (64, 128, 256, 512 planes; stages 2-4 halve the resolution), global average
    pooling and one linear layer.

    ``layers`` gives the number of blocks per stage ([2, 2, 2, 2] is ResNet-18).
    Any input size from about 32x32 up works (the pooling is adaptive); at 224x224 the
    last stage is 7x7. ``in_channels`` (an addition to torchvision's signature) sets the
    stem's input channels. ``zero_init_residual`` starts each block's last BN at zero
    so that every block begins as the identity (Goyal et al., 2017).
    """

    def __init__(self, block, layers, num_classes=1000, zero_init_residual=False,
                 groups=1, width_per_group=64, replace_stride_with_dilation=None,
                 norm_layer=None, in_channels=3):
        super().__init__()
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d
        self._norm_layer = norm_layer

        self.inplanes = 64
        self.dilation = 1
        if replace_stride_with_dilation is None:
            # each entry says whether that stage (2, 3, 4) dilates instead of striding
            replace_stride_with_dilation = [False, False, False]
        if len(replace_stride_with_dilation) != 3:
            raise ValueError("replace_stride_with_dilation should be None or a 3-element "
                             f"tuple, got {replace_stride_with_dilation}")
        self.groups = groups
        self.base_width = width_per_group
        self.conv1 = nn.Conv2d(in_channels, self.inplanes, kernel_size=7, stride=2, padding=3,
                               bias=False)
        self.bn1 = norm_layer(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2,
                                       dilate=replace_stride_with_dilation[0])
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2,
                                       dilate=replace_stride_with_dilation[1])
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2,
                                       dilate=replace_stride_with_dilation[2])
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck) and m.bn3.weight is not None:
                    nn.init.constant_(m.bn3.weight, 0)
                elif isinstance(m, BasicBlock) and m.bn2.weight is not None:
                    nn.init.constant_(m.bn2.weight, 0)

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
        """One stage: ``blocks`` blocks; the first may change width and resolution, so it
        gets the projection shortcut."""
        norm_layer = self._norm_layer
        downsample = None
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride),
                norm_layer(planes * block.expansion),
            )

        layers = [block(self.inplanes, planes, stride, downsample, self.groups,
                        self.base_width, previous_dilation, norm_layer)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes, groups=self.groups,
                                base_width=self.base_width, dilation=self.dilation,
                                norm_layer=norm_layer))
        return nn.Sequential(*layers)

    def forward(self, x):
        # shapes for a 224x224 input (BasicBlock; x4 channels for Bottleneck from layer1 on)
        x = self.conv1(x)           # (N, 64, 112, 112)
        x = norm_then_act(self.bn1, self.relu, x)           # self.relu(self.bn1(x))
        x = self.maxpool(x)         # (N, 64, 56, 56)

        x = self.layer1(x)          # (N, 64, 56, 56)
        x = self.layer2(x)          # (N, 128, 28, 28)
        x = self.layer3(x)          # (N, 256, 14, 14)
        x = self.layer4(x)          # (N, 512, 7, 7)

        x = self.avgpool(x)         # (N, 512, 1, 1)
        x = minicnn.flatten(x, 1)   # (N, 512)
        x = self.fc(x)
        return x


def _resnet(block, layers, **kwargs):
    return ResNet(block, layers, **kwargs)


def resnet18(**kwargs):
    """ResNet-18: BasicBlock x [2, 2, 2, 2]; 11,689,512 parameters, 1.81 G multiply-adds."""
    return _resnet(BasicBlock, [2, 2, 2, 2], **kwargs)


def resnet34(**kwargs):
    """ResNet-34: BasicBlock x [3, 4, 6, 3]; 21.8 M parameters, 3.66 G multiply-adds."""
    return _resnet(BasicBlock, [3, 4, 6, 3], **kwargs)


def resnet50(**kwargs):
    """ResNet-50 (v1.5): Bottleneck x [3, 4, 6, 3]; 25,557,032 parameters, 4.09 G."""
    return _resnet(Bottleneck, [3, 4, 6, 3], **kwargs)


def resnet101(**kwargs):
    """ResNet-101 (v1.5): Bottleneck x [3, 4, 23, 3]; 44.5 M parameters, 7.8 G."""
    return _resnet(Bottleneck, [3, 4, 23, 3], **kwargs)


def resnet152(**kwargs):
    """ResNet-152 (v1.5): Bottleneck x [3, 8, 36, 3]; 60,192,808 parameters, 11.5 G."""
    return _resnet(Bottleneck, [3, 8, 36, 3], **kwargs)


def resnext50_32x4d(**kwargs):
    """ResNeXt-50 32x4d: 32 groups of 4 channels in the first stage's 3x3 (25.0 M)."""
    return _resnet(Bottleneck, [3, 4, 6, 3], groups=32, width_per_group=4, **kwargs)


def resnext101_32x8d(**kwargs):
    """ResNeXt-101 32x8d: 32 groups of 8 channels (88.8 M parameters)."""
    return _resnet(Bottleneck, [3, 4, 23, 3], groups=32, width_per_group=8, **kwargs)


def resnext101_64x4d(**kwargs):
    """ResNeXt-101 64x4d: 64 groups of 4 channels (83.5 M parameters)."""
    return _resnet(Bottleneck, [3, 4, 23, 3], groups=64, width_per_group=4, **kwargs)


def wide_resnet50_2(**kwargs):
    """Wide ResNet-50-2: the bottleneck's inner width doubled (68.9 M parameters); the
    outer 1x1 widths stay as in ResNet-50."""
    return _resnet(Bottleneck, [3, 4, 6, 3], width_per_group=64 * 2, **kwargs)


def wide_resnet101_2(**kwargs):
    """Wide ResNet-101-2 (126.9 M parameters)."""
    return _resnet(Bottleneck, [3, 4, 23, 3], width_per_group=64 * 2, **kwargs)


# ----------------------------------------------------------------- CIFAR ResNets

class ZeroPadShortcut(nn.Module):
    """The paper's option A shortcut: no parameters. Subsample by ``stride`` (take every
    other pixel) and append ``out_planes - in_planes`` zero channels.

    Shape: (N, in_planes, H, W) -> (N, out_planes, ceil(H/stride), ceil(W/stride)).
    """

    def __init__(self, in_planes, out_planes, stride):
        super().__init__()
        if out_planes < in_planes:
            raise ValueError(f"ZeroPadShortcut: out_planes ({out_planes}) must be at least "
                             f"in_planes ({in_planes})")
        self.in_planes, self.out_planes, self.stride = in_planes, out_planes, stride

    def forward(self, x):
        x = x[:, :, ::self.stride, ::self.stride]
        # pad lists (before, after) from the last dimension: W, H, then channels
        return F.pad(x, (0, 0, 0, 0, 0, self.out_planes - self.in_planes))

    def extra_repr(self):
        return f"{self.in_planes}, {self.out_planes}, stride={self.stride}"


class CifarResNet(nn.Module):
    """The ResNets of the paper's CIFAR-10 experiments (section 4.2): 6n+2 layers.

    A 3x3 conv with 16 filters, then three stages of n BasicBlocks on 32x32, 16x16 and
    8x8 maps with 16, 32 and 64 filters, global average pooling and a linear layer.
    ``n`` = 3, 5, 7, 9, 18 gives ResNet-20, 32, 44, 56, 110.

    ``shortcut="A"`` (the default, as in the paper's CIFAR runs) uses parameter-free
    zero-padding shortcuts (:class:`ZeroPadShortcut`): ResNet-20 has 0.27 M parameters as
    in the paper's table 6. ``shortcut="B"`` uses 1x1 conv + BN projections (as the
    ImageNet models). Attribute names follow the ImageNet ResNet's (no torchvision twin).
    """

    def __init__(self, block, layers, num_classes=10, shortcut="A", in_channels=3,
                 zero_init_residual=False):
        super().__init__()
        if shortcut not in ("A", "B"):
            raise ValueError(f"CifarResNet: shortcut must be 'A' (zero padding) or 'B' "
                             f"(projection), got {shortcut!r}")
        if len(layers) != 3:
            raise ValueError(f"CifarResNet: expected 3 stage depths, got {layers}")
        self.shortcut = shortcut
        self.inplanes = 16
        self.conv1 = nn.Conv2d(in_channels, 16, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(block, 16, layers[0])
        self.layer2 = self._make_layer(block, 32, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 64, layers[2], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(64 * block.expansion, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    nn.init.constant_(m.bn2.weight, 0)

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        out_planes = planes * block.expansion
        if stride != 1 or self.inplanes != out_planes:
            if self.shortcut == "A":
                downsample = ZeroPadShortcut(self.inplanes, out_planes, stride)
            else:
                downsample = nn.Sequential(conv1x1(self.inplanes, out_planes, stride),
                                           nn.BatchNorm2d(out_planes))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = out_planes
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = norm_then_act(self.bn1, self.relu, self.conv1(x))   # (N, 16, 32, 32)
        x = self.layer1(x)                       # (N, 16, 32, 32)
        x = self.layer2(x)                       # (N, 32, 16, 16)
        x = self.layer3(x)                       # (N, 64, 8, 8)
        x = self.avgpool(x)                      # (N, 64, 1, 1)
        x = minicnn.flatten(x, 1)
        return self.fc(x)


def _cifar_resnet(depth, **kwargs):
    if (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
    n = (depth - 2) // 6
    return CifarResNet(BasicBlock, [n, n, n], **kwargs)


def resnet20(**kwargs):
    """CIFAR ResNet-20 (n=3; 0.27 M parameters with option A shortcuts)."""
    return _cifar_resnet(20, **kwargs)


def resnet32(**kwargs):
    """CIFAR ResNet-32 (n=5; 0.46 M)."""
    return _cifar_resnet(32, **kwargs)


def resnet44(**kwargs):
    """CIFAR ResNet-44 (n=7; 0.66 M)."""
    return _cifar_resnet(44, **kwargs)


def resnet56(**kwargs):
    """CIFAR ResNet-56 (n=9; 0.85 M)."""
    return _cifar_resnet(56, **kwargs)


def resnet110(**kwargs):
    """CIFAR ResNet-110 (n=18; 1.7 M)."""
    return _cifar_resnet(110, **kwargs)
