"""VGG: configurations A, A-LRN, B, C, D and E, with and without batch normalisation.

Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition" (ICLR 2015), table 1.

Every VGG is the same recipe: stacks of 3x3 convolutions (padding 1, so the size is
kept) and 2x2/2 max pools that halve the size, 64 -> 128 -> 256 -> 512 -> 512 channels,
then three linear layers. Two 3x3 convolutions see a 5x5 window, three a 7x7, with fewer
weights and more non-linearities than one large kernel: the paper's main point.

The layout is torchvision's (a configuration table, ``make_layers``, and ``features`` /
``avgpool`` / ``classifier``), so state-dict keys (``features.0.weight``,
``classifier.6.bias``) are identical for the configurations torchvision has (A, B, D, E
and their ``_bn`` versions). Batch normalisation is a later addition (Ioffe & Szegedy,
2015): ``_bn`` models put it between each convolution and its ReLU.

The code is plain PyTorch style (only the imports differ); the tests run this source
against ``torch.nn`` to check that both agree.
"""
from __future__ import annotations

import minicnn
from minicnn import nn
from minicnn.nn import functional as F  # noqa: F401  (kept so the file reads as torch code)

__all__ = ["VGG", "make_layers", "cfgs", "vgg", "vgg11", "vgg11_bn", "vgg11_lrn", "vgg13",
           "vgg13_bn", "vgg16", "vgg16_bn", "vgg16_c", "vgg16_c_bn", "vgg19", "vgg19_bn"]


# The paper's table 1. An integer is a 3x3 convolution with that many filters, "M" a
# 2x2/2 max pool, "LRN" local response normalisation, and (n, 1) a 1x1 convolution
# with n filters (configuration C only).
cfgs = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "A-LRN": [64, "LRN", "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "C": [64, 64, "M", 128, 128, "M", 256, 256, (256, 1), "M", 512, 512, (512, 1), "M",
          512, 512, (512, 1), "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
          512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
          512, 512, 512, 512, "M"],
}


class VGG(nn.Module):
    """A VGG network around a given ``features`` stack (see :func:`make_layers`).

    Shape: (N, C, H, W) -> (N, num_classes). At 224x224 the features end at
    (N, 512, 7, 7). The adaptive 7x7 average pool (torchvision's addition) is the
    identity there and makes any input of at least 32x32 work.

    ``hidden_features`` (4096) and ``feature_channels`` (512, the channels ``features``
    ends with) are additions to torchvision's signature for small experiments; the
    defaults give torchvision's shapes.
    """

    def __init__(self, features, num_classes=1000, init_weights=True, dropout=0.5,
                 hidden_features=4096, feature_channels=512):
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(feature_channels * 7 * 7, hidden_features),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(hidden_features, hidden_features),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(hidden_features, num_classes),
        )
        if init_weights:
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    if m.bias is not None:
                        nn.init.constant_(m.bias, 0)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.constant_(m.weight, 1)
                    nn.init.constant_(m.bias, 0)
                elif isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, 0, 0.01)
                    nn.init.constant_(m.bias, 0)

    def forward(self, x):
        x = self.features(x)          # (N, 512, H/32, W/32)
        x = self.avgpool(x)           # (N, 512, 7, 7)
        x = minicnn.flatten(x, 1)     # (N, 25088)
        x = self.classifier(x)
        return x


def make_layers(cfg, batch_norm=False, in_channels=3):
    """The ``features`` Sequential for a configuration list (see ``cfgs``).

    Each convolution is followed by BN (if ``batch_norm``) and ReLU. The LRN of
    configuration A-LRN uses AlexNet's constants in the AlexNet paper's formula (k=2,
    n=5, alpha=1e-4, beta=0.75), as the VGG paper says it follows Krizhevsky.
    """
    layers = []
    for v in cfg:
        if v == "M":
            layers += [nn.MaxPool2d(kernel_size=2, stride=2)]
        elif v == "LRN":
            layers += [nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0,
                                            alpha_scaling="paper")]
        else:
            out_channels, kernel = v if isinstance(v, tuple) else (v, 3)
            conv2d = nn.Conv2d(in_channels, out_channels, kernel_size=kernel,
                               padding=kernel // 2)
            if batch_norm:
                layers += [conv2d, nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]
            else:
                layers += [conv2d, nn.ReLU(inplace=True)]
            in_channels = out_channels
    return nn.Sequential(*layers)


def vgg(cfg, batch_norm=False, in_channels=3, **kwargs):
    """A VGG from a configuration name (``"A"`` ... ``"E"``, ``"A-LRN"``) or list."""
    if isinstance(cfg, str) and cfg not in cfgs:
        raise ValueError(f"vgg: unknown configuration {cfg!r}; expected one of "
                         f"{', '.join(cfgs)} or a list")
    layers = cfgs[cfg] if isinstance(cfg, str) else cfg
    convs = [v for v in layers if v not in ("M", "LRN")]
    last = convs[-1][0] if isinstance(convs[-1], tuple) else convs[-1]
    kwargs.setdefault("feature_channels", last)
    return VGG(make_layers(layers, batch_norm=batch_norm, in_channels=in_channels), **kwargs)


def vgg11(**kwargs):
    """VGG-11, configuration A (132.9 M parameters)."""
    return vgg("A", False, **kwargs)


def vgg11_bn(**kwargs):
    """VGG-11 with batch normalisation."""
    return vgg("A", True, **kwargs)


def vgg11_lrn(**kwargs):
    """Configuration A-LRN: A with LRN after the first layer (the paper found it no
    better; no torchvision twin)."""
    return vgg("A-LRN", False, **kwargs)


def vgg13(**kwargs):
    """VGG-13, configuration B (133.0 M parameters)."""
    return vgg("B", False, **kwargs)


def vgg13_bn(**kwargs):
    return vgg("B", True, **kwargs)


def vgg16(**kwargs):
    """VGG-16, configuration D (138,357,544 parameters, 15.5 G multiply-adds)."""
    return vgg("D", False, **kwargs)


def vgg16_bn(**kwargs):
    return vgg("D", True, **kwargs)


def vgg16_c(**kwargs):
    """Configuration C: 16 weight layers, three of them 1x1 (133.6 M parameters; the
    paper's D, with 3x3 instead, is better; no torchvision twin)."""
    return vgg("C", False, **kwargs)


def vgg16_c_bn(**kwargs):
    return vgg("C", True, **kwargs)


def vgg19(**kwargs):
    """VGG-19, configuration E (143.7 M parameters)."""
    return vgg("E", False, **kwargs)


def vgg19_bn(**kwargs):
    return vgg("E", True, **kwargs)
