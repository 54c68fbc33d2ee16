"""Mask R-CNN with a ResNet-50-FPN backbone, with torchvision's layout and semantics
(``models/detection/mask_rcnn.py``; state-dict keys as torchvision's, the released
checkpoints' older keys accepted too).

He, Gkioxari, Dollár & Girshick, "Mask R-CNN" (ICCV 2017, arXiv 1703.06870).

Faster R-CNN (:mod:`.faster_rcnn`) plus a third branch in the RoI heads that predicts,
for each box, a 28x28 mask per class:

* ``mask_roi_pool``: 14x14 RoIAlign on the FPN maps '0'-'3' (the paper's RoIAlign is
  what makes pixel-accurate masks possible: no rounding of the box to the map's cells);
* :class:`MaskRCNNHeads`: four 3x3 convolutions of 256 channels with ReLU;
* :class:`MaskRCNNPredictor`: a 2x2 stride-2 transposed convolution to 28x28, ReLU, and a
  1x1 convolution with one channel per class.

Training: the positives' masks only, binary cross-entropy on the channel of the gt class
(:func:`~minicnn.models.detection.roi_heads.maskrcnn_loss`); evaluation: the sigmoid of
the channel of each detection's predicted class, pasted into the image at the box's
place (:func:`~minicnn.models.detection.roi_heads.paste_masks_in_image`): ``masks``
(D, 1, H, W) probabilities in the input image's pixels (threshold at 0.5 for a binary
mask). Shapes per detection: (256, 14, 14) -> heads (256, 14, 14) -> predictor
(num_classes, 28, 28).

44,401,393 parameters for 91 classes with frozen batch norm (torchvision's published
count, of the model with weights): Faster R-CNN's 41,755,286, 2,360,320 in the mask head and 285,787 in the mask predictor.

NOTE, where minicnn departs from torchvision: as :func:`fasterrcnn_resnet50_fpn` (weights
from a file or a state dict, nothing downloaded, ``norm_layer``, eps 0 for the
released COCO_V1 layout).
"""
from __future__ import annotations

import collections

import minicnn  # noqa: F401  (the three imports of a model file: the tests' torch twin)
from minicnn import nn
from minicnn.nn import functional as F  # noqa: F401
from minicnn.models.detection.faster_rcnn import FasterRCNN, _out_channels, _rcnn_resnet50_fpn
from minicnn.ops import MultiScaleRoIAlign
from minicnn.ops.misc import Conv2dNormActivation

__all__ = ["MaskRCNN", "MaskRCNNHeads", "MaskRCNNPredictor", "maskrcnn_resnet50_fpn"]


class MaskRCNN(FasterRCNN):
    """Mask R-CNN: :class:`~minicnn.models.detection.faster_rcnn.FasterRCNN`'s arguments
    plus ``mask_roi_pool`` (default ``MultiScaleRoIAlign(['0', '1', '2', '3'], 14, 2)``),
    ``mask_head`` (default :class:`MaskRCNNHeads` (256, 256, 256, 256), dilation 1) and
    ``mask_predictor`` (default :class:`MaskRCNNPredictor` (256, 256, num_classes)).

    Training targets also need ``masks`` (K, H, W) uint8 per image, and the losses
    include ``loss_mask``; eval results also hold ``masks`` (D, 1, H, W) in [0, 1].
    """

    def __init__(self, backbone, num_classes=None, *args, mask_roi_pool=None,
                 mask_head=None, mask_predictor=None, **kwargs):
        name = type(self).__name__
        if not isinstance(mask_roi_pool, (MultiScaleRoIAlign, type(None))):
            raise TypeError(f"{name}: mask_roi_pool should be a MultiScaleRoIAlign or None, "
                            f"got {type(mask_roi_pool).__name__}")
        if num_classes is not None and mask_predictor is not None:
            raise ValueError(f"{name}: num_classes should be None when mask_predictor is "
                             f"specified")
        out_channels = _out_channels(name, backbone)
        if mask_roi_pool is None:
            mask_roi_pool = MultiScaleRoIAlign(featmap_names=["0", "1", "2", "3"],
                                               output_size=14, sampling_ratio=2)
        if mask_head is None:
            mask_layers = (256, 256, 256, 256)
            mask_dilation = 1
            mask_head = MaskRCNNHeads(out_channels, mask_layers, mask_dilation)
        if mask_predictor is None:
            mask_predictor_in_channels = 256        # mask_layers[-1]
            mask_dim_reduced = 256
            mask_predictor = MaskRCNNPredictor(mask_predictor_in_channels, mask_dim_reduced,
                                               num_classes)
        super().__init__(backbone, num_classes, *args, **kwargs)
        self.roi_heads.mask_roi_pool = mask_roi_pool
        self.roi_heads.mask_head = mask_head
        self.roi_heads.mask_predictor = mask_predictor


class MaskRCNNHeads(nn.Sequential):
    """The mask head: one 3x3 convolution + ReLU per entry of ``layers`` (padding and
    dilation ``dilation``), each a :class:`~minicnn.ops.Conv2dNormActivation` (keys
    ``0.0.weight``, ``0.0.bias``, ... ; with ``norm_layer`` a norm after each conv).
    Weights He-normal (fan out), biases 0.

    Loading reads the older keys of the released checkpoints, ``mask_fcn1.weight`` ...
    ``mask_fcn4.bias``, as ``0.0.weight`` ... ``3.0.bias`` (torchvision's version-1
    upgrade).
    """

    def __init__(self, in_channels, layers, dilation, norm_layer=None):
        blocks = []
        next_feature = in_channels
        for layer_features in layers:
            blocks.append(Conv2dNormActivation(next_feature, layer_features, kernel_size=3,
                                               stride=1, padding=dilation, dilation=dilation,
                                               norm_layer=norm_layer))
            next_feature = layer_features
        super().__init__(*blocks)
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):
                nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)

    def _upgrade_state_dict(self, state_dict, prefix):
        for i in range(len(self)):
            for kind in ("weight", "bias"):
                old_key = f"{prefix}mask_fcn{i + 1}.{kind}"
                new_key = f"{prefix}{i}.0.{kind}"
                if old_key in state_dict and new_key not in state_dict:
                    state_dict[new_key] = state_dict.pop(old_key)


class MaskRCNNPredictor(nn.Sequential):
    """``conv5_mask`` (2x2 transposed convolution, stride 2: 14x14 -> 28x28), ``relu``,
    ``mask_fcn_logits`` (1x1 convolution, one channel per class). Weights He-normal (fan
    out); the biases keep the layers' default initialisation, as torchvision's."""

    def __init__(self, in_channels, dim_reduced, num_classes):
        super().__init__(collections.OrderedDict([
            ("conv5_mask", nn.ConvTranspose2d(in_channels, dim_reduced, 2, 2, 0)),
            ("relu", nn.ReLU(inplace=True)),
            ("mask_fcn_logits", nn.Conv2d(dim_reduced, num_classes, 1, 1, 0)),
        ]))
        for name, param in self.named_parameters():
            if "weight" in name:
                nn.init.kaiming_normal_(param, mode="fan_out", nonlinearity="relu")


def maskrcnn_resnet50_fpn(*, weights=None, progress=True, num_classes=None,
                          weights_backbone=None, trainable_backbone_layers=None,
                          in_channels=3, norm_layer=None, **kwargs):
    """Mask R-CNN, ResNet-50-FPN (module docstring), torchvision's builder; the arguments
    as :func:`~minicnn.models.detection.faster_rcnn.fasterrcnn_resnet50_fpn`'s."""
    return _rcnn_resnet50_fpn("maskrcnn_resnet50_fpn", MaskRCNN, weights, num_classes,
                              weights_backbone, trainable_backbone_layers, in_channels,
                              norm_layer, kwargs)
