"""FCN on a dilated ResNet-50, in torchvision's layout (``fcn_resnet50``).

Long, Shelhamer & Darrell, "Fully Convolutional Networks for Semantic Segmentation"
(CVPR 2015) is built on VGG16 (see ``fcn.py`` for that form). torchvision's FCN keeps
the idea, a classification network made fully convolutional and scored per pixel, but
not the skips or the deconvolutions:

* the backbone is a ResNet-50 whose last two stages *dilate* instead of striding
  (``replace_stride_with_dilation=[False, True, True]``, the "à trous" trick of
  DeepLab, Chen et al. 2015), so layer4 is 1/8 of the input instead of 1/32 and the
  final map is fine enough to need no skip connections;
* the head, :class:`FCNHead`, is a 3x3 convolution to a quarter of the channels, BN,
  ReLU, dropout 0.1 and a 1x1 convolution to the classes;
* the scores are upsampled to the input size by bilinear interpolation
  (``align_corners=False``), not by a learned deconvolution, in training and in eval;
* an optional auxiliary head on layer3 (``aux_loss=True``) gives a second prediction,
  "aux", whose loss is added with a small weight during training (torchvision's
  reference scripts use 0.5).

Module names and state-dict keys are torchvision's (``backbone.layer4.2.conv3.weight``,
``classifier.4.bias``, ``aux_classifier.0.weight``), so ``model.load_state_dict`` takes
a torchvision ``fcn_resnet50`` state dict unchanged (see
``minicnn.utils.convert.load_torch_state_dict``). 35,322,218 parameters with the
auxiliary head and 21 classes, 32,957,013 without.

The code is plain PyTorch style (only the three imports below differ); the tests run
this source against ``torch.nn`` to check that both agree.
"""
from __future__ import annotations

from collections import OrderedDict

import minicnn  # noqa: F401  (kept so the file reads as torch code)
from minicnn import nn
from minicnn.nn import functional as F
from minicnn.models._utils import IntermediateLayerGetter
from minicnn.models.resnet import resnet50

__all__ = ["FCN", "FCNHead", "fcn_resnet50"]


class _SimpleSegmentationModel(nn.Module):
    """``backbone`` -> dict of feature maps; ``classifier`` scores ``features["out"]``
    (and ``aux_classifier``, if any, ``features["aux"]``); each score map is resized to
    the input's H x W by bilinear interpolation.

    Shape: (N, C, H, W) -> {"out": (N, num_classes, H, W)[, "aux": the same]}.
    """

    def __init__(self, backbone, classifier, aux_classifier=None):
        super().__init__()
        self.backbone = backbone
        self.classifier = classifier
        self.aux_classifier = aux_classifier

    def forward(self, x):
        input_shape = x.shape[-2:]
        features = self.backbone(x)     # {"aux": (N, 1024, H/8, W/8), "out": (N, 2048, ...)}

        result = OrderedDict()
        x = self.classifier(features["out"])                    # (N, classes, H/8, W/8)
        result["out"] = F.interpolate(x, size=input_shape, mode="bilinear",
                                      align_corners=False)      # (N, classes, H, W)
        if self.aux_classifier is not None:
            x = self.aux_classifier(features["aux"])
            result["aux"] = F.interpolate(x, size=input_shape, mode="bilinear",
                                          align_corners=False)
        return result


class FCN(_SimpleSegmentationModel):
    """A fully convolutional network: a backbone returning {"out"[, "aux"]} feature maps,
    a per-pixel classifier on "out" and an optional auxiliary one on "aux"."""


class FCNHead(nn.Sequential):
    """The per-pixel classifier: conv 3x3 (in -> in/4, no bias: BN follows), BN, ReLU,
    dropout 0.1, conv 1x1 (in/4 -> channels). Shape: (N, in, h, w) -> (N, channels, h, w)."""

    def __init__(self, in_channels, channels):
        inter_channels = in_channels // 4
        super().__init__(
            nn.Conv2d(in_channels, inter_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(inter_channels),
            nn.ReLU(),
            nn.Dropout(0.1),
            nn.Conv2d(inter_channels, channels, 1),
        )


def fcn_resnet50(*, weights=None, progress=True, num_classes=21, aux_loss=None,
                 weights_backbone=None, in_channels=3):
    """FCN-ResNet50 as ``torchvision.models.segmentation.fcn_resnet50``.

    Designed for VOC-style images around 520x520 (torchvision's training crops 480); any
    size from about 32x32 works (output stride 8). ``aux_loss`` None means False, as in
    torchvision without weights.

    NOTE, departures from torchvision: minicnn downloads no weights, so ``weights``
    must be None (build the model, then load torchvision's file with
    ``minicnn.utils.convert.load_torch_state_dict``), and ``weights_backbone`` defaults
    to None (a random ResNet-50) instead of ImageNet weights; pass a ResNet-50 state dict
    or the path of one (torchvision's ``resnet50`` file) to start from trained weights.
    ``progress`` is accepted and ignored. ``in_channels`` is an addition (the stem's
    input channels).
    """
    if weights is not None:
        raise ValueError(f"fcn_resnet50: minicnn ships no pretrained weights (got "
                         f"weights={weights!r}); build with weights=None and load a "
                         f"torchvision state dict with "
                         f"minicnn.utils.convert.load_torch_state_dict(model, path)")
    aux_loss = bool(aux_loss)
    backbone = resnet50(replace_stride_with_dilation=[False, True, True],
                        in_channels=in_channels)
    if weights_backbone is not None:
        from minicnn.utils.convert import load_torch_state_dict
        load_torch_state_dict(backbone, weights_backbone)
    return_layers = {"layer4": "out"}
    if aux_loss:
        return_layers["layer3"] = "aux"
    backbone = IntermediateLayerGetter(backbone, return_layers=return_layers)
    aux_classifier = FCNHead(1024, num_classes) if aux_loss else None
    classifier = FCNHead(2048, num_classes)
    return FCN(backbone, classifier, aux_classifier)
