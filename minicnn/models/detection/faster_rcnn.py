"""Faster R-CNN with a ResNet-50-FPN backbone, with torchvision's layout and semantics
(``models/detection/faster_rcnn.py``: the same constructor arguments and defaults, the
same state-dict keys, so torchvision's checkpoints load).

Ren, He, Girshick & Sun, "Faster R-CNN: Towards Real-Time Object Detection with Region
Proposal Networks" (NeurIPS 2015, arXiv 1506.01497), with the feature pyramid of Lin,
Dollár, Girshick, He, Hariharan & Belongie, "Feature Pyramid Networks for Object
Detection" (CVPR 2017, arXiv 1612.03144).

Two stages share one backbone:

1. **transform** (:class:`~minicnn.models.detection.GeneralizedRCNNTransform`): each image
   normalised with ImageNet's mean and std and resized so its shorter side is 800
   (longer side at most 1333), the batch zero-padded to multiples of 32;
2. **backbone**: ResNet-50 (with weights: frozen batch norm, the stem and layer1 frozen
   by default) and an FPN of 256 channels: maps '0'-'3' at strides 4, 8, 16, 32 and 'pool' at 64;
3. **RPN** (:class:`~minicnn.models.detection.rpn.RegionProposalNetwork`): 3 anchors per
   position (aspect ratios 0.5, 1, 2) of size 32, 64, 128, 256, 512 on the five maps; the
   best 2000 (training) / 1000 (testing) proposals per level before NMS at 0.7 and per
   image after;
4. **RoI heads** (:class:`~minicnn.models.detection.roi_heads.RoIHeads`): 7x7 RoIAlign on
   '0'-'3' (each box on the level that suits its size), :class:`TwoMLPHead` (two fully
   connected layers of 1024) and :class:`FastRCNNPredictor` (a score per class, 4 offsets
   per class); in training 512 proposals per image, a quarter positive; in eval
   detections above 0.05, NMS 0.5 per class, 100 per image.

Shapes for one 800x1088 padded image, 91 classes::

    backbone -> '0' (1, 256, 200, 272), '1' 100x136, '2' 50x68, '3' 25x34, 'pool' 13x17
    rpn      -> 1000 proposals (1000, 4)
    box_roi_pool (1000, 256, 7, 7) -> box_head (1000, 1024)
             -> box_predictor: class_logits (1000, 91), box_regression (1000, 364)

41,755,286 parameters for 91 classes with frozen batch norm (torchvision's published
count, of the model with weights): 26,799,296 in the backbone and FPN, 593,935 in the
RPN head, 13,895,680 in TwoMLPHead, 466,375 in the predictor. From nothing (ordinary
batch norm) the backbone's 53,120 batch-norm weights and biases are parameters too.

NOTE, where minicnn departs from torchvision:

* No weights are downloaded. ``weights`` is a torchvision checkpoint *file* (the .pth
  torchvision downloads, read with :func:`minicnn.load_torch_checkpoint`, no torch
  needed) or a state dict; ``weights_backbone`` likewise for an ImageNet ResNet-50, and
  None by default (torchvision's default is its ImageNet weights). ``num_classes`` then
  comes from the checkpoint's predictor.
* ``norm_layer`` (minicnn's keyword) picks the backbone's batch norm. By default it
  follows torchvision's rule: :class:`~minicnn.ops.FrozenBatchNorm2d` when any weights
  are given (the published parameter counts, 41,755,286 here, are of that model), and
  ``nn.BatchNorm2d`` when the model starts from nothing, so that it can be trained from
  scratch (ResNet-50 with frozen identity statistics and random weights gives features
  far too large to train; B2's measurement: NaN by the third SGD step). Without weights
  every layer is trainable, as torchvision's rule says (``trainable_backbone_layers``
  is 5 then).
* torchvision gives the released COCO weights (``COCO_V1``) batch-norm eps 0; minicnn
  does the same for a checkpoint in their layout (the version-1 key
  ``rpn.head.conv.weight``), the only torchvision files with that layout for this model.
* ``in_channels`` (3 only) is accepted, as by every builder of the zoo.
"""
from __future__ import annotations

import collections.abc
import os
import warnings

import minicnn
from minicnn import nn
from minicnn.nn import functional as F
from minicnn.models.detection.backbone_utils import _resnet_fpn_extractor
from minicnn.models.detection.generalized_rcnn import GeneralizedRCNN
from minicnn.models.detection.roi_heads import RoIHeads
from minicnn.models.detection.rpn import RegionProposalNetwork, RPNHead
from minicnn.models.detection.transform import GeneralizedRCNNTransform
from minicnn.models.resnet import resnet50
from minicnn.ops import AnchorGenerator, MultiScaleRoIAlign
from minicnn.ops.misc import FrozenBatchNorm2d

__all__ = ["FasterRCNN", "TwoMLPHead", "FastRCNNPredictor", "fasterrcnn_resnet50_fpn",
           "overwrite_eps"]


class FasterRCNN(GeneralizedRCNN):
    """Faster R-CNN around any ``backbone`` that returns a dict of feature maps (or one
    map) and has an ``out_channels`` attribute (the same for every map).

    Args (torchvision's, with its defaults):
        backbone: the feature extractor.
        num_classes: counting the background; None when ``box_predictor`` is given.
        min_size, max_size, image_mean, image_std: the transform (800, 1333, ImageNet's).
        rpn_anchor_generator: default sizes 32-512 (one per map), ratios 0.5, 1, 2.
        rpn_head: default an :class:`~minicnn.models.detection.rpn.RPNHead`.
        rpn_pre_nms_top_n_train/test, rpn_post_nms_top_n_train/test: 2000/1000,
            2000/1000.
        rpn_nms_thresh (0.7), rpn_fg_iou_thresh (0.7), rpn_bg_iou_thresh (0.3),
        rpn_batch_size_per_image (256), rpn_positive_fraction (0.5), rpn_score_thresh (0).
        box_roi_pool: default ``MultiScaleRoIAlign(['0', '1', '2', '3'], 7, 2)``.
        box_head, box_predictor: default :class:`TwoMLPHead` (1024) and
            :class:`FastRCNNPredictor`.
        box_score_thresh (0.05), box_nms_thresh (0.5), box_detections_per_img (100),
        box_fg_iou_thresh (0.5), box_bg_iou_thresh (0.5), box_batch_size_per_image (512),
        box_positive_fraction (0.25), bbox_reg_weights (None: 10, 10, 5, 5).
        **kwargs: on to the transform (``size_divisible``, ``fixed_size``).

    ``forward(images, targets=None)``: a list of (3, H, W) images in [0, 1]. Training
    mode needs one target dict per image (``boxes`` (K, 4) float xyxy pixels, ``labels``
    (K,) int64) and returns ``loss_classifier``, ``loss_box_reg``, ``loss_objectness``,
    ``loss_rpn_box_reg``; eval mode returns one dict per image of ``boxes`` (in that
    image's pixels), ``labels`` and ``scores``, by decreasing score.
    """

    def __init__(self, backbone, num_classes=None,
                 # transform
                 min_size=800, max_size=1333, image_mean=None, image_std=None,
                 # RPN
                 rpn_anchor_generator=None, rpn_head=None,
                 rpn_pre_nms_top_n_train=2000, rpn_pre_nms_top_n_test=1000,
                 rpn_post_nms_top_n_train=2000, rpn_post_nms_top_n_test=1000,
                 rpn_nms_thresh=0.7, rpn_fg_iou_thresh=0.7, rpn_bg_iou_thresh=0.3,
                 rpn_batch_size_per_image=256, rpn_positive_fraction=0.5,
                 rpn_score_thresh=0.0,
                 # box branch
                 box_roi_pool=None, box_head=None, box_predictor=None,
                 box_score_thresh=0.05, box_nms_thresh=0.5, box_detections_per_img=100,
                 box_fg_iou_thresh=0.5, box_bg_iou_thresh=0.5,
                 box_batch_size_per_image=512, box_positive_fraction=0.25,
                 bbox_reg_weights=None, **kwargs):
        name = type(self).__name__
        out_channels = _out_channels(name, backbone)
        if not isinstance(rpn_anchor_generator, (AnchorGenerator, type(None))):
            raise TypeError(f"{name}: rpn_anchor_generator should be an AnchorGenerator or "
                            f"None, got {type(rpn_anchor_generator).__name__}")
        if not isinstance(box_roi_pool, (MultiScaleRoIAlign, type(None))):
            raise TypeError(f"{name}: box_roi_pool should be a MultiScaleRoIAlign or None, "
                            f"got {type(box_roi_pool).__name__}")
        if num_classes is not None and box_predictor is not None:
            raise ValueError(f"{name}: num_classes should be None when box_predictor is "
                             f"specified")
        if num_classes is None and box_predictor is None:
            raise ValueError(f"{name}: num_classes should not be None when box_predictor "
                             f"is not specified")

        if rpn_anchor_generator is None:
            anchor_sizes = ((32,), (64,), (128,), (256,), (512,))
            aspect_ratios = ((0.5, 1.0, 2.0),) * len(anchor_sizes)
            rpn_anchor_generator = AnchorGenerator(anchor_sizes, aspect_ratios)
        if rpn_head is None:
            rpn_head = RPNHead(out_channels,
                               rpn_anchor_generator.num_anchors_per_location()[0])
        rpn = RegionProposalNetwork(
            rpn_anchor_generator, rpn_head, rpn_fg_iou_thresh, rpn_bg_iou_thresh,
            rpn_batch_size_per_image, rpn_positive_fraction,
            dict(training=rpn_pre_nms_top_n_train, testing=rpn_pre_nms_top_n_test),
            dict(training=rpn_post_nms_top_n_train, testing=rpn_post_nms_top_n_test),
            rpn_nms_thresh, score_thresh=rpn_score_thresh)

        if box_roi_pool is None:
            box_roi_pool = MultiScaleRoIAlign(featmap_names=["0", "1", "2", "3"],
                                              output_size=7, sampling_ratio=2)
        representation_size = 1024
        if box_head is None:
            resolution = box_roi_pool.output_size[0]
            box_head = TwoMLPHead(out_channels * resolution ** 2, representation_size)
        if box_predictor is None:
            box_predictor = FastRCNNPredictor(representation_size, num_classes)
        roi_heads = RoIHeads(
            box_roi_pool, box_head, box_predictor,
            box_fg_iou_thresh, box_bg_iou_thresh,
            box_batch_size_per_image, box_positive_fraction, bbox_reg_weights,
            box_score_thresh, box_nms_thresh, box_detections_per_img)

        if image_mean is None:
            image_mean = [0.485, 0.456, 0.406]
        if image_std is None:
            image_std = [0.229, 0.224, 0.225]
        transform = GeneralizedRCNNTransform(min_size, max_size, image_mean, image_std,
                                             **kwargs)
        super().__init__(backbone, rpn, roi_heads, transform)


class TwoMLPHead(nn.Module):
    """The box head of FPN detectors: the pooled features flattened, then two fully
    connected layers with ReLU. (K, C, 7, 7) -> (K, representation_size)."""

    def __init__(self, in_channels, representation_size):
        super().__init__()
        self.fc6 = nn.Linear(in_channels, representation_size)
        self.fc7 = nn.Linear(representation_size, representation_size)

    def forward(self, x):
        x = x.flatten(start_dim=1)
        x = F.relu(self.fc6(x))
        return F.relu(self.fc7(x))


class FastRCNNPredictor(nn.Module):
    """Fast R-CNN's two sibling layers: ``cls_score`` (K, num_classes) and ``bbox_pred``
    (K, 4·num_classes), one box per class, from (K, in_channels) (or (K, in_channels, 1,
    1)) features."""

    def __init__(self, in_channels, num_classes):
        super().__init__()
        self.cls_score = nn.Linear(in_channels, num_classes)
        self.bbox_pred = nn.Linear(in_channels, num_classes * 4)

    def forward(self, x):
        if x.dim() == 4 and list(x.shape[2:]) != [1, 1]:
            raise ValueError(f"FastRCNNPredictor: a 4-D input must be (K, C, 1, 1), got "
                             f"shape {tuple(x.shape)}")
        x = x.flatten(start_dim=1)
        return self.cls_score(x), self.bbox_pred(x)


# ====================================================================== builders

def fasterrcnn_resnet50_fpn(*, weights=None, progress=True, num_classes=None,
                            weights_backbone=None, trainable_backbone_layers=None,
                            in_channels=3, norm_layer=None, **kwargs):
    """Faster R-CNN, ResNet-50-FPN (module docstring), torchvision's builder.

    Args:
        weights: None, a torchvision checkpoint file (.pth) or a state dict of the whole
            model; ``num_classes`` then defaults to the checkpoint's.
        progress: accepted for torchvision's signature (nothing is downloaded).
        num_classes: counting the background (default 91, COCO's).
        weights_backbone: None, or an ImageNet ResNet-50's file or state dict.
        trainable_backbone_layers: 0-5 of (layer4, layer3, layer2, layer1, conv1) left
            trainable, from the top; default 3 with weights, 5 without.
        norm_layer: the backbone's batch norm; default (None) torchvision's rule:
            ``FrozenBatchNorm2d`` with weights or weights_backbone, ``nn.BatchNorm2d``
            without any (pass ``FrozenBatchNorm2d`` for the published parameter count).
        **kwargs: on to :class:`FasterRCNN`.
    """
    return _rcnn_resnet50_fpn("fasterrcnn_resnet50_fpn", FasterRCNN, weights, num_classes,
                              weights_backbone, trainable_backbone_layers, in_channels,
                              norm_layer, kwargs)


def _rcnn_resnet50_fpn(name, model_class, weights, num_classes, weights_backbone,
                       trainable_backbone_layers, in_channels, norm_layer, kwargs):
    """The builder both fasterrcnn_ and maskrcnn_resnet50_fpn are: torchvision's steps."""
    if in_channels != 3:
        raise ValueError(f"{name}: in_channels must be 3 (ResNet-50 reads RGB images), got "
                         f"{in_channels!r}")
    state = _state_dict(name, "weights", weights)
    backbone_state = _state_dict(name, "weights_backbone", weights_backbone)
    if state is not None:
        backbone_state = None
        num_classes = _checkpoint_classes(name, state, num_classes)
    elif num_classes is None:
        num_classes = 91
    is_trained = state is not None or backbone_state is not None
    trainable_backbone_layers = _validate_trainable_layers(
        name, is_trained, trainable_backbone_layers, 5, 3)

    if norm_layer is None:
        norm_layer = FrozenBatchNorm2d if is_trained else nn.BatchNorm2d
    elif not callable(norm_layer):
        raise TypeError(f"{name}: norm_layer should be a batch-norm class such as "
                        f"FrozenBatchNorm2d or nn.BatchNorm2d (called with a channel count), "
                        f"got {norm_layer!r}")
    backbone = resnet50(norm_layer=norm_layer)
    if backbone_state is not None:
        backbone.load_state_dict(backbone_state)
    backbone = _resnet_fpn_extractor(backbone, trainable_backbone_layers)
    model = model_class(backbone, num_classes=num_classes, **kwargs)
    if state is not None:
        model.load_state_dict(state)
        if "rpn.head.conv.weight" in state:
            # the released COCO_V1 weights were trained with eps 0 (torchvision's builder)
            overwrite_eps(model, 0.0)
    return model


def _out_channels(name, backbone):
    """The backbone's ``out_channels``; an error naming the model when it has none."""
    if not hasattr(backbone, "out_channels"):
        raise ValueError(f"{name}: backbone should have an attribute out_channels, the "
                         f"number of channels of its feature maps (the same for all)")
    return backbone.out_channels


def overwrite_eps(model, eps):
    """Set the ``eps`` of every FrozenBatchNorm2d in ``model`` (torchvision's
    ``_utils.overwrite_eps``: its legacy detection weights use 0)."""
    for module in model.modules():
        if isinstance(module, FrozenBatchNorm2d):
            module.eps = eps


def _validate_trainable_layers(name, is_trained, trainable_backbone_layers, max_value,
                               default_value):
    """torchvision's rule: without any weights every layer is trained (a value given is
    ignored with a warning); otherwise the value given, or ``default_value``."""
    if not is_trained:
        if trainable_backbone_layers is not None:
            warnings.warn(f"{name}: changing trainable_backbone_layers has no effect without "
                          f"weights or weights_backbone; all {max_value} layers are "
                          f"trainable", stacklevel=3)
        trainable_backbone_layers = max_value
    if trainable_backbone_layers is None:
        trainable_backbone_layers = default_value
    if isinstance(trainable_backbone_layers, bool) \
            or not isinstance(trainable_backbone_layers, int) \
            or not 0 <= trainable_backbone_layers <= max_value:
        raise ValueError(f"{name}: trainable_backbone_layers should be an integer in "
                         f"[0, {max_value}], got {trainable_backbone_layers!r}")
    return trainable_backbone_layers


def _state_dict(name, argument, value):
    """None, a mapping (used as it is) or a path to a PyTorch checkpoint (read)."""
    if value is None or isinstance(value, collections.abc.Mapping):
        return value
    if isinstance(value, (str, os.PathLike)):
        state = minicnn.load_torch_checkpoint(value)
        if isinstance(state, collections.abc.Mapping) and "model" in state \
                and isinstance(state["model"], collections.abc.Mapping):
            state = state["model"]          # a training checkpoint {"model": ..., ...}
        return state
    raise TypeError(f"{name}: {argument} must be None, a checkpoint file path or a state "
                    f"dict, got {type(value).__name__} (minicnn downloads nothing: "
                    f"torchvision's weight enums are not available)")


def _checkpoint_classes(name, state, num_classes):
    """The number of classes of a checkpoint's box predictor; a different
    ``num_classes`` is an error (torchvision's ``_ovewrite_value_param``)."""
    key = "roi_heads.box_predictor.cls_score.weight"
    if key not in state:
        raise ValueError(f"{name}: the weights have no {key!r}: not a checkpoint of this "
                         f"model (first keys {list(state)[:3]})")
    classes = int(state[key].shape[0])
    if num_classes is not None and num_classes != classes:
        raise ValueError(f"{name}: num_classes {num_classes} given, but the weights have "
                         f"{classes} classes")
    return classes
