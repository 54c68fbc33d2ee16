"""AlexNet: torchvision's form and the form of the 2012 paper.

Krizhevsky, Sutskever, Hinton, "ImageNet Classification with Deep Convolutional Neural
Networks" (NIPS 2012).

Two forms, because they differ in more than details:

* :class:`AlexNet` / :func:`alexnet` is torchvision's (from Krizhevsky's later "one weird
  trick" paper, 2014): 64-192-384-256-256 filters, no LRN, no groups, an adaptive 6x6
  average pool so any input from about 63x63 up works, dropout before the first two
  linear layers. 61,100,840 parameters; attribute names match torchvision, so its state
  dict loads directly.
* :class:`AlexNetPaper` / :func:`alexnet_paper` is the 2012 network: 96-256-384-384-256
  filters; the paper split the network over two GPUs ("towers") that only talk at layer
  3 and in the linear layers, which is exactly a ``groups=2`` convolution in layers 2, 4
  and 5; local response normalisation (LRN) after the first two ReLUs; overlapping
  3x3/2 max pooling; dropout 0.5 "in the first two fully-connected layers", i.e. on
  the outputs of fc6 and fc7 (as in Caffe's reproduction).

The code is plain PyTorch style (only the imports differ); the tests run this source
against ``torch.nn`` to check that both agree.
"""
from __future__ import annotations

import minicnn
from minicnn import nn
from minicnn.nn import functional as F  # noqa: F401  (kept so the file reads as torch code)

__all__ = ["AlexNet", "alexnet", "AlexNetPaper", "alexnet_paper"]


class AlexNet(nn.Module):
    """torchvision's AlexNet.

    Shape: (N, in_channels, H, W) -> (N, num_classes); at 224x224 the feature maps are
    55, 27, 13, 13, 13 and 6 pixels wide. ``hidden_features`` (4096) sets the width of
    the two hidden linear layers, an addition to torchvision's signature for small
    experiments; the default gives torchvision's shapes.
    """

    def __init__(self, num_classes=1000, dropout=0.5, in_channels=3, hidden_features=4096):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 64, kernel_size=11, stride=4, padding=2),  # (N, 64, 55, 55)
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),                            # (N, 64, 27, 27)
            nn.Conv2d(64, 192, kernel_size=5, padding=2),                     # (N, 192, 27, 27)
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),                            # (N, 192, 13, 13)
            nn.Conv2d(192, 384, kernel_size=3, padding=1),                    # (N, 384, 13, 13)
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),                    # (N, 256, 13, 13)
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),                    # (N, 256, 13, 13)
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),                            # (N, 256, 6, 6)
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(256 * 6 * 6, hidden_features),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(hidden_features, hidden_features),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_features, num_classes),
        )

    def forward(self, x):
        x = self.features(x)
        x = self.avgpool(x)           # (N, 256, 6, 6) whatever the input size
        x = minicnn.flatten(x, 1)     # (N, 9216)
        x = self.classifier(x)
        return x


def alexnet(**kwargs):
    """torchvision's AlexNet (61,100,840 parameters, 0.71 G multiply-adds at 224x224)."""
    return AlexNet(**kwargs)


class AlexNetPaper(nn.Module):
    """AlexNet as described in the 2012 paper (section 3.5 and figure 2).

    ===========  =============================================  ==============
    layer        paper                                          here
    ===========  =============================================  ==============
    conv1        96 11x11/4 kernels, ReLU, LRN, max pool 3x3/2  ``features.0-3``
    conv2        256 5x5 (two towers of 128), ReLU, LRN, pool   ``groups=2``
    conv3        384 3x3 connected to both towers               ``groups=1``
    conv4, 5     384 and 256 3x3, within each tower, pool       ``groups=2``
    fc6, 7, 8    4096, 4096, 1000; dropout 0.5 after fc6, fc7
    ===========  =============================================  ==============

    Conventions, each with an explicit switch:

    * LRN. The paper writes ``b = a / (k + alpha * sum(a^2))^beta`` over n=5 adjacent
      channels with k=2, alpha=1e-4, beta=0.75. ``torch.nn.LocalResponseNorm`` divides
      alpha by n (``k + alpha/n * sum``), as Caffe does. ``lrn_alpha_scaling="paper"``
      (default) keeps the paper's formula and constants; ``"torch"`` feeds the same
      constants to torch's formula, a normalisation five times weaker (Caffe's
      reproductions likewise put alpha=1e-4 into the alpha/n formula).
    * Pooling rounding. PyTorch floors the pooled size, Caffe (which most AlexNet
      reproductions used) rounds up: ``ceil_mode=False`` (default) or ``True``. At the
      paper's effective 227x227 input (55 -> 27 -> 13 -> 6) both agree.

    The paper says 224x224 inputs, but its sizes only work out for 227x227 (or 224 with
    2 pixels of padding, as torchvision does). ``conv1_padding=0`` (default) is the
    227x227 arithmetic; the adaptive 6x6 pool in front of fc6 is the identity there and
    lets other sizes through (an addition; the paper has no such layer).
    ``hidden_features`` (4096) sets the width of fc6/fc7 for small experiments.
    """

    def __init__(self, num_classes=1000, dropout=0.5, in_channels=3,
                 lrn_alpha_scaling="paper", ceil_mode=False, conv1_padding=0,
                 hidden_features=4096):
        super().__init__()
        if lrn_alpha_scaling not in ("paper", "torch"):
            raise ValueError(f"AlexNetPaper: lrn_alpha_scaling must be 'paper' or 'torch', "
                             f"got {lrn_alpha_scaling!r}")

        def lrn():
            return nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0,
                                        alpha_scaling=lrn_alpha_scaling)

        def pool():
            return nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=ceil_mode)

        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 96, kernel_size=11, stride=4, padding=conv1_padding),
            nn.ReLU(inplace=True),
            lrn(),
            pool(),                                                      # (N, 96, 27, 27)
            nn.Conv2d(96, 256, kernel_size=5, padding=2, groups=2),
            nn.ReLU(inplace=True),
            lrn(),
            pool(),                                                      # (N, 256, 13, 13)
            nn.Conv2d(256, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 384, kernel_size=3, padding=1, groups=2),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1, groups=2),
            nn.ReLU(inplace=True),
            pool(),                                                      # (N, 256, 6, 6)
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Linear(256 * 6 * 6, hidden_features),       # fc6
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(hidden_features, hidden_features),   # fc7
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(hidden_features, num_classes),       # fc8
        )
        # The paper's initialisation: N(0, 0.01) weights; biases 1 in conv2, 4, 5 and the
        # hidden linear layers (to give the ReLUs positive inputs early on), 0 elsewhere.
        convs = [m for m in self.features if isinstance(m, nn.Conv2d)]
        linears = [m for m in self.classifier if isinstance(m, nn.Linear)]
        bias_one = [convs[1], convs[3], convs[4], linears[0], linears[1]]
        for m in convs + linears:
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.constant_(m.bias, 1.0 if any(m is b for b in bias_one) else 0.0)

    def forward(self, x):
        x = self.features(x)
        x = self.avgpool(x)
        x = minicnn.flatten(x, 1)     # (N, 9216)
        return self.classifier(x)


def alexnet_paper(**kwargs):
    """The 2012 paper's AlexNet (60,965,224 parameters; see :class:`AlexNetPaper`)."""
    return AlexNetPaper(**kwargs)
