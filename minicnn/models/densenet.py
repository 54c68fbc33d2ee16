"""DenseNet-BC, in torchvision's layout.

Huang, Liu, van der Maaten, Weinberger, "Densely Connected Convolutional Networks"
(CVPR 2017).

Inside a dense block every layer receives the concatenation of the block input and all
earlier layers' outputs, and adds ``growth_rate`` new channels: the block's width grows
linearly, features are reused instead of re-learned, and the gradient reaches every
layer through a short path. Each dense layer is BN-ReLU-conv1x1 (a "bottleneck" to
``bn_size * growth_rate`` channels) then BN-ReLU-conv3x3 (``growth_rate`` channels).
Between blocks a transition layer (BN-ReLU-conv1x1-avgpool 2x2) halves the channels
(compression 0.5, the "C" of DenseNet-BC) and the resolution.

Names match torchvision (``features.denseblock1.denselayer1.norm1.weight``,
``features.transition1.conv.weight``, ``classifier.bias``), so torchvision's state dicts
load unchanged. torchvision's ``memory_efficient`` option (recomputing the bottleneck
in backward to save memory) is not provided: it changes nothing in the results.

The code is plain PyTorch style (only the imports differ); the tests run this source
against ``torch.nn`` to check that both agree.
"""
from __future__ import annotations

import collections

import minicnn
from minicnn import nn
from minicnn.nn import functional as F

__all__ = ["DenseNet", "densenet121", "densenet161", "densenet169", "densenet201"]


class _DenseLayer(nn.Module):
    """BN-ReLU-conv1x1 (to bn_size*growth_rate) -> BN-ReLU-conv3x3 (to growth_rate).

    Input: the list of all earlier feature maps of the block, each (N, C_i, H, W).
    Output: (N, growth_rate, H, W).
    """

    def __init__(self, num_input_features, growth_rate, bn_size, drop_rate):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(num_input_features)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(num_input_features, bn_size * growth_rate, kernel_size=1,
                               stride=1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, kernel_size=3, stride=1,
                               padding=1, bias=False)
        self.drop_rate = float(drop_rate)

    def bn_function(self, inputs):
        concatenated = minicnn.cat(inputs, 1)       # (N, sum C_i, H, W)
        return self.conv1(self.relu1(self.norm1(concatenated)))

    def forward(self, input):
        prev_features = [input] if isinstance(input, minicnn.Tensor) else input
        bottleneck_output = self.bn_function(prev_features)
        new_features = self.conv2(self.relu2(self.norm2(bottleneck_output)))
        if self.drop_rate > 0:
            new_features = F.dropout(new_features, p=self.drop_rate, training=self.training)
        return new_features


class _DenseBlock(nn.ModuleDict):
    """``num_layers`` dense layers; output: the input and every layer's output,
    concatenated: (N, C + num_layers * growth_rate, H, W)."""

    def __init__(self, num_layers, num_input_features, bn_size, growth_rate, drop_rate):
        super().__init__()
        for i in range(num_layers):
            layer = _DenseLayer(num_input_features + i * growth_rate, growth_rate=growth_rate,
                                bn_size=bn_size, drop_rate=drop_rate)
            self.add_module("denselayer%d" % (i + 1), layer)

    def forward(self, init_features):
        features = [init_features]
        for name, layer in self.items():
            new_features = layer(features)
            features.append(new_features)
        return minicnn.cat(features, 1)


class _Transition(nn.Sequential):
    """BN-ReLU-conv1x1-avgpool 2x2/2: (N, C, H, W) -> (N, C_out, H/2, W/2)."""

    def __init__(self, num_input_features, num_output_features):
        super().__init__()
        self.norm = nn.BatchNorm2d(num_input_features)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(num_input_features, num_output_features, kernel_size=1,
                              stride=1, bias=False)
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)


class DenseNet(nn.Module):
    """DenseNet-BC: a 7x7/2 conv + 3x3/2 max pool stem, four dense blocks joined by
    transitions, a final BN, ReLU, global average pool and linear layer.

    ``growth_rate`` (k), ``block_config`` (layers per block), ``num_init_features``
    (stem width), ``bn_size`` (bottleneck width factor), ``drop_rate`` (dropout after
    each dense layer). Shape: (N, in_channels, H, W) -> (N, num_classes); at 224x224
    the four blocks run at 56, 28, 14 and 7 pixels. Works from about 32x32 up.
    """

    def __init__(self, growth_rate=32, block_config=(6, 12, 24, 16), num_init_features=64,
                 bn_size=4, drop_rate=0, num_classes=1000, in_channels=3):
        super().__init__()

        self.features = nn.Sequential(collections.OrderedDict([
            ("conv0", nn.Conv2d(in_channels, num_init_features, kernel_size=7, stride=2,
                                padding=3, bias=False)),
            ("norm0", nn.BatchNorm2d(num_init_features)),
            ("relu0", nn.ReLU(inplace=True)),
            ("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)),
        ]))

        num_features = num_init_features
        for i, num_layers in enumerate(block_config):
            block = _DenseBlock(num_layers=num_layers, num_input_features=num_features,
                                bn_size=bn_size, growth_rate=growth_rate, drop_rate=drop_rate)
            self.features.add_module("denseblock%d" % (i + 1), block)
            num_features = num_features + num_layers * growth_rate
            if i != len(block_config) - 1:
                trans = _Transition(num_input_features=num_features,
                                    num_output_features=num_features // 2)
                self.features.add_module("transition%d" % (i + 1), trans)
                num_features = num_features // 2

        self.features.add_module("norm5", nn.BatchNorm2d(num_features))
        self.classifier = nn.Linear(num_features, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.constant_(m.bias, 0)

    def forward(self, x):
        features = self.features(x)                    # (N, 1024, 7, 7) for 121 at 224
        out = F.relu(features, inplace=True)
        out = F.adaptive_avg_pool2d(out, (1, 1))       # (N, 1024, 1, 1)
        out = minicnn.flatten(out, 1)
        out = self.classifier(out)
        return out


def densenet121(**kwargs):
    """DenseNet-121: k=32, blocks (6, 12, 24, 16); 7,978,856 parameters, 2.83 G."""
    return DenseNet(32, (6, 12, 24, 16), 64, **kwargs)


def densenet161(**kwargs):
    """DenseNet-161: k=48, blocks (6, 12, 36, 24), 96-channel stem; 28.7 M parameters."""
    return DenseNet(48, (6, 12, 36, 24), 96, **kwargs)


def densenet169(**kwargs):
    """DenseNet-169: k=32, blocks (6, 12, 32, 32); 14.1 M parameters."""
    return DenseNet(32, (6, 12, 32, 32), 64, **kwargs)


def densenet201(**kwargs):
    """DenseNet-201: k=32, blocks (6, 12, 48, 32); 20.0 M parameters."""
    return DenseNet(32, (6, 12, 48, 32), 64, **kwargs)
