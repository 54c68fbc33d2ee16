"""Backbones with a feature pyramid for the two-stage detectors, as torchvision's
``models/detection/backbone_utils.py``: :class:`BackboneWithFPN`,
:func:`resnet_fpn_backbone` and :func:`_resnet_fpn_extractor`.

A ResNet's stages layer1..layer4 (strides 4, 8, 16, 32) are read through an
:class:`~minicnn.models.IntermediateLayerGetter` (its pool and ``fc`` dropped) and fed
to a :class:`~minicnn.ops.FeaturePyramidNetwork` with 256 channels plus the
:class:`~minicnn.ops.LastLevelMaxPool` level. For a (N, 3, 800, 1216) batch::

    body:  '0' (N, 256, 200, 304)  '1' (N, 512, 100, 152)  '2' (N, 1024, 50, 76)
           '3' (N, 2048, 25, 38)
    fpn:   '0' (N, 256, 200, 304)  '1' (N, 256, 100, 152) '2' (N, 256, 50, 76)
           '3' (N, 256, 25, 38)    'pool' (N, 256, 13, 19)

Keys are torchvision's (``body.layer1.0.conv1.weight``, ``fpn.inner_blocks.0.0.weight``,
``fpn.layer_blocks.3.0.bias``), so a torchvision detector's ``backbone.*`` loads.
``resnet_fpn_backbone('resnet50')`` with frozen batch norm (torchvision's default) has
26,799,296 parameters: 23,454,912 in the ResNet-50 trunk without ``fc`` (batch norm
then holds buffers, not parameters) and 3,344,384 in the FPN (984,064 in the 1x1
laterals, 2,360,320 in the 3x3 output convolutions).

Freezing, as torchvision: ``trainable_layers`` k in [0, 5] keeps the last k of
(layer4, layer3, layer2, layer1, conv1) trainable (5 adds bn1); every other backbone
parameter gets ``requires_grad = False``. Detectors train with 3.

The code is plain PyTorch style (the three imports differ, and the ops and ResNet come
from minicnn); the tests run this source on ``torch.nn`` with the twins of those pieces.
"""
from __future__ import annotations

import os

import minicnn
from minicnn import nn
from minicnn.nn import functional as F  # noqa: F401  (kept so the file reads as torch code)
from minicnn.models import resnet
from minicnn.models._utils import IntermediateLayerGetter
from minicnn.ops.feature_pyramid_network import ExtraFPNBlock  # noqa: F401  (as torchvision's)
from minicnn.ops.feature_pyramid_network import FeaturePyramidNetwork
from minicnn.ops.feature_pyramid_network import LastLevelMaxPool
from minicnn.ops.misc import FrozenBatchNorm2d

__all__ = ["BackboneWithFPN", "resnet_fpn_backbone", "_resnet_fpn_extractor"]


class BackboneWithFPN(nn.Module):
    """A backbone's intermediate maps through a feature pyramid.

    Args:
        backbone: a network whose direct children run in order (a ResNet).
        return_layers: ``{child name: output name}``, the maps handed to the FPN.
        in_channels_list: their channels, in order.
        out_channels: channels of every pyramid level (``self.out_channels``, which the
            detectors read).
        extra_blocks: extra pyramid levels (default :class:`LastLevelMaxPool`).
        norm_layer: norm inside the FPN's blocks (default none).

    Forward: (N, C, H, W) -> OrderedDict of (N, out_channels, H_i, W_i) maps.
    """

    def __init__(self, backbone, return_layers, in_channels_list, out_channels,
                 extra_blocks=None, norm_layer=None):
        super().__init__()
        if extra_blocks is None:
            extra_blocks = LastLevelMaxPool()
        self.body = IntermediateLayerGetter(backbone, return_layers=return_layers)
        self.fpn = FeaturePyramidNetwork(in_channels_list=in_channels_list,
                                         out_channels=out_channels,
                                         extra_blocks=extra_blocks, norm_layer=norm_layer)
        self.out_channels = out_channels

    def forward(self, x):
        x = self.body(x)
        x = self.fpn(x)
        return x


def resnet_fpn_backbone(backbone_name, weights=None, norm_layer=FrozenBatchNorm2d,
                        trainable_layers=3, returned_layers=None, extra_blocks=None):
    """A ResNet (``resnet.<backbone_name>(norm_layer=norm_layer)``) with an FPN on top,
    as torchvision's ``resnet_fpn_backbone``.

    Args:
        backbone_name: 'resnet18', 'resnet34', 'resnet50', 'resnet101', 'resnet152',
            'resnext50_32x4d', 'resnext101_32x8d', 'wide_resnet50_2', 'wide_resnet101_2'.
        weights: None (minicnn's initialisation), a classification state dict for the
            ResNet (a mapping, or the path of a torchvision ``.pth`` file read with
            ``minicnn.load_torch_checkpoint``); its ``fc`` is loaded then dropped.
        norm_layer: FrozenBatchNorm2d (torchvision's default) or nn.BatchNorm2d.
        trainable_layers: how many of (layer4, layer3, layer2, layer1, conv1), counted
            from layer4, stay trainable (0..5).
        returned_layers: which of layer1..layer4 feed the FPN (default [1, 2, 3, 4]);
            output names are '0', '1', ... in that order.
        extra_blocks: extra levels (default LastLevelMaxPool).
    """
    builder = getattr(resnet, str(backbone_name), None) \
        if str(backbone_name).startswith(("resnet", "resnext", "wide_resnet")) else None
    if builder is None or str(backbone_name) in ("resnet20", "resnet32", "resnet44",
                                                 "resnet56", "resnet110"):
        raise ValueError(f"resnet_fpn_backbone: backbone_name must name an ImageNet ResNet "
                         f"('resnet18', 'resnet50', 'resnext50_32x4d', ...), got "
                         f"{backbone_name!r}")
    backbone = builder(norm_layer=norm_layer)
    if weights is not None:
        if isinstance(weights, (str, os.PathLike)):
            weights = minicnn.load_torch_checkpoint(weights)
        backbone.load_state_dict(weights)
    return _resnet_fpn_extractor(backbone, trainable_layers, returned_layers, extra_blocks)


def _resnet_fpn_extractor(backbone, trainable_layers, returned_layers=None,
                          extra_blocks=None, norm_layer=None):
    """``backbone`` (a ResNet) frozen as ``trainable_layers`` says, wrapped in a
    :class:`BackboneWithFPN` of 256 channels reading ``returned_layers``."""
    if isinstance(trainable_layers, bool) or not isinstance(trainable_layers, int) \
            or not 0 <= trainable_layers <= 5:
        raise ValueError(f"_resnet_fpn_extractor: trainable_layers must be an integer in "
                         f"[0, 5], got {trainable_layers!r}")
    layers_to_train = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable_layers]
    if trainable_layers == 5:
        layers_to_train.append("bn1")
    for name, parameter in backbone.named_parameters():
        if all(not name.startswith(layer) for layer in layers_to_train):
            parameter.requires_grad_(False)

    if extra_blocks is None:
        extra_blocks = LastLevelMaxPool()

    if returned_layers is None:
        returned_layers = [1, 2, 3, 4]
    if not returned_layers or min(returned_layers) <= 0 or max(returned_layers) >= 5:
        raise ValueError(f"_resnet_fpn_extractor: each returned layer must be in [1, 4], got "
                         f"{returned_layers!r}")
    return_layers = {f"layer{k}": str(v) for v, k in enumerate(returned_layers)}

    # after _make_layer, inplanes is layer4's output width: 8x that of layer1's input
    in_channels_stage2 = backbone.inplanes // 8
    in_channels_list = [in_channels_stage2 * 2 ** (i - 1) for i in returned_layers]
    out_channels = 256
    return BackboneWithFPN(backbone, return_layers, in_channels_list, out_channels,
                           extra_blocks=extra_blocks, norm_layer=norm_layer)
