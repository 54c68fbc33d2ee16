"""SSD: the Single Shot MultiBox Detector, with torchvision's layout and semantics.

Liu, Anguelov, Erhan, Szegedy, Reed, Fu & Berg, "SSD: Single Shot MultiBox Detector"
(ECCV 2016, arXiv 1512.02325). torchvision's ``models/detection/ssd.py`` is the layout
(attribute names, so state dicts move: ``backbone.scale_weight``,
``backbone.features.0.weight``, ``backbone.extra.0.1.weight``,
``head.classification_head.module_list.0.weight``, ...) and the reference for every rule
below.

The idea, on top of a classification network (VGG16):

1. **Several feature maps, one detector each.** SSD300 reads six maps of a 300x300
   image: conv4_3 (38x38), fc7 (19x19) and four extra layers (10, 5, 3, 1). Fine maps
   find small objects, coarse maps large ones; no region proposals, one pass.
2. **Default boxes.** At every position of map k sit a few boxes of scale s_k (a
   fraction of the image) and aspect ratios {1, 2, 1/2 (, 3, 1/3)} plus a square of scale
   sqrt(s_k s_k+1): [4, 6, 6, 6, 4, 4] per position, 8,732 in all
   (:class:`~minicnn.ops.DefaultBoxGenerator`).
3. **Heads.** A 3x3 convolution per map predicts, for each default box, K class scores
   (K counts the background, class 0) and 4 offsets from the default box to the object
   (:class:`~minicnn.ops.BoxCoder` with weights (10, 10, 5, 5), the paper's "variances"
   0.1 and 0.2).
4. **Matching.** A default box is positive for the ground-truth box it overlaps most if
   that IoU is at least 0.5; each ground truth also takes the default box that overlaps
   it most, whatever the IoU (:class:`~minicnn.ops.SSDMatcher`).
5. **Loss.** (L_conf + L_loc) / N, N the number of positives: smooth-L1 on the offsets
   of the positives, softmax cross-entropy on the positives and on the *hard negatives*,
   the negatives with the largest classification loss, three per positive
   (``positive_fraction`` 0.25; :func:`~minicnn.ops.hard_negative_mask`).
6. **Inference.** Softmax scores; per class, the boxes scoring above ``score_thresh``,
   at most ``topk_candidates`` of them; non-maximum suppression per class at IoU 0.45;
   the ``detections_per_img`` best.

The VGG16 trunk is changed as the paper says (§3, "Base network"): pool3 rounds up
(ceil mode, so 75 -> 38), pool5 becomes 3x3 with stride 1, fc6 and fc7 become a 3x3
convolution with dilation 6 (1024 filters) and a 1x1 convolution, and conv4_3, whose
activations are larger than the later maps', is L2-normalised across channels at each
position and multiplied by a learned per-channel scale started at 20 (ParseNet).

Shapes for SSD300 (N images)::

    input 300x300 -> features (conv1_1 ... conv4_3) (N, 512, 38, 38) -> L2 norm x scale
    extra.0: pool4 19 -> conv5_1..5_3 -> pool5 3x3/1 -> fc6 (dilation 6) -> fc7 (N, 1024, 19, 19)
    extra.1: 1x1 256 -> 3x3/2 512                 (N, 512, 10, 10)
    extra.2: 1x1 128 -> 3x3/2 256                 (N, 256, 5, 5)
    extra.3: 1x1 128 -> 3x3 valid 256             (N, 256, 3, 3)
    extra.4: 1x1 128 -> 3x3 valid 256             (N, 256, 1, 1)
    heads: (N, 8732, num_classes) scores and (N, 8732, 4) offsets

35,641,826 parameters for COCO's 91 classes, 26,285,486 for VOC's 21.

NOTE, where minicnn departs from torchvision:

* No pretrained weights are downloaded: ``ssd300_vgg16`` starts from minicnn's VGG16
  initialisation (torchvision's default backbone is a VGG16 trained on ImageNet, whose
  first block it freezes); a trained state dict loads with ``load_state_dict``.
* ``SSDFeatureExtractorVGG`` has an ``out_channels`` attribute, so SSD does not run a
  dummy 300x300 image through the backbone to find its channels (torchvision does for a
  backbone without one; so does minicnn).
* Among equal scores, the top-k candidates and NMS keep the lower index first (torch's
  ``topk`` leaves that order unspecified).
* An image with more than a quarter of its default boxes positive: torchvision's
  hard-negative selection then runs out of negatives, takes positives too and counts their
  loss twice; minicnn counts each default box once (:func:`~minicnn.ops.hard_negative_mask`).
  Identical otherwise (SSD300 has 8,732 default boxes per image).
* ``ssd_small`` is minicnn's addition: the same classes on a narrow trunk for small
  images (the generated shapes data set).
"""
from __future__ import annotations

import collections
import numbers

import numpy as np

import minicnn
from minicnn import nn
from minicnn.nn import functional as F
from minicnn import backend
from minicnn.functional._checks import positive_int
from minicnn.models.detection.transform import GeneralizedRCNNTransform, image_sequence
from minicnn.models.vgg import cfgs, make_layers
from minicnn.ops import (BoxCoder, DefaultBoxGenerator, SSDMatcher, batched_nms, box_iou,
                         clip_boxes_to_image, hard_negative_mask)

__all__ = ["SSD", "SSDHead", "SSDScoringHead", "SSDClassificationHead",
           "SSDRegressionHead", "SSDFeatureExtractorVGG", "SSDFeatureExtractorSmall",
           "ssd300_vgg16", "ssd_small"]


def _xavier_init(conv):
    """Xavier-uniform weights and zero biases for every convolution (torchvision's SSD
    initialisation of the heads and the layers it adds to VGG)."""
    for layer in conv.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.constant_(layer.bias, 0.0)


# =========================================================================== heads

class SSDHead(nn.Module):
    """The two heads on every feature map: ``{"bbox_regression": (N, A, 4),
    "cls_logits": (N, A, num_classes)}``, A the default boxes of all maps together."""

    def __init__(self, in_channels, num_anchors, num_classes):
        super().__init__()
        self.classification_head = SSDClassificationHead(in_channels, num_anchors, num_classes)
        self.regression_head = SSDRegressionHead(in_channels, num_anchors)

    def forward(self, x):
        return {
            "bbox_regression": self.regression_head(x),
            "cls_logits": self.classification_head(x),
        }


class SSDScoringHead(nn.Module):
    """One 3x3 convolution per feature map, predicting ``num_columns`` numbers for each of
    the map's default boxes; the results of all maps in one (N, A, num_columns) tensor,
    ordered map by map, then position by position (row-major), then box by box -- the
    order of :class:`~minicnn.ops.DefaultBoxGenerator`'s boxes."""

    def __init__(self, module_list, num_columns):
        super().__init__()
        self.module_list = module_list
        self.num_columns = num_columns

    def forward(self, x):
        all_results = []
        for features, module in zip(x, self.module_list):
            results = module(features)                        # (N, A_k * K, H, W)
            N, _, H, W = results.shape
            results = results.view(N, -1, self.num_columns, H, W)
            results = results.permute(0, 3, 4, 1, 2)          # (N, H, W, A_k, K)
            results = results.reshape(N, -1, self.num_columns)  # (N, H*W*A_k, K)
            all_results.append(results)
        return minicnn.cat(all_results, dim=1)                # (N, A, K)


class SSDClassificationHead(SSDScoringHead):
    def __init__(self, in_channels, num_anchors, num_classes):
        cls_logits = nn.ModuleList()
        for channels, anchors in zip(in_channels, num_anchors):
            cls_logits.append(nn.Conv2d(channels, num_classes * anchors, kernel_size=3,
                                        padding=1))
        _xavier_init(cls_logits)
        super().__init__(cls_logits, num_classes)


class SSDRegressionHead(SSDScoringHead):
    def __init__(self, in_channels, num_anchors):
        bbox_reg = nn.ModuleList()
        for channels, anchors in zip(in_channels, num_anchors):
            bbox_reg.append(nn.Conv2d(channels, 4 * anchors, kernel_size=3, padding=1))
        _xavier_init(bbox_reg)
        super().__init__(bbox_reg, 4)


# ======================================================================== the model

class SSD(nn.Module):
    """A single-shot detector around a ``backbone`` that returns several feature maps.

    Args:
        backbone: returns a Tensor, a list or a dict of (N, C_k, H_k, W_k) maps; its
            ``out_channels`` (a list) gives C_k, else a dummy image finds them.
        anchor_generator: a :class:`~minicnn.ops.DefaultBoxGenerator` (one list of
            aspect ratios per map).
        size: (width, height) every image is resized to.
        num_classes: counting the background (class 0).
        image_mean, image_std: the normalisation (default ImageNet's).
        head: default an :class:`SSDHead` on the backbone's maps.
        score_thresh, nms_thresh, detections_per_img, topk_candidates: inference (see the
            module docstring, 6.).
        iou_thresh: the IoU that makes a default box positive.
        positive_fraction: positives / (positives + hard negatives), 0.25 -> 3:1.

    ``forward(images, targets=None)``: images a list of (C, H, W) Tensors (any sizes, in
    [0, 1]) or an (N, C, H, W) Tensor. Training mode needs ``targets`` (one dict per image
    with ``boxes`` (K, 4) xyxy in pixels and ``labels`` (K,) int64 in 1..num_classes-1)
    and returns ``{"bbox_regression", "classification"}`` (scalar Tensors); eval mode
    returns one dict per image of ``boxes`` (D, 4) in that image's pixels, ``labels``
    (D,) int64 and ``scores`` (D,), by decreasing score.
    """

    def __init__(self, backbone, anchor_generator, size, num_classes, image_mean=None,
                 image_std=None, head=None, score_thresh=0.01, nms_thresh=0.45,
                 detections_per_img=200, iou_thresh=0.5, topk_candidates=400,
                 positive_fraction=0.25):
        super().__init__()
        num_classes = positive_int("SSD", "num_classes", num_classes)
        if not (isinstance(positive_fraction, numbers.Real) and 0 < positive_fraction <= 1):
            raise ValueError(f"SSD: positive_fraction must be in (0, 1], got "
                             f"{positive_fraction!r}")
        self.backbone = backbone
        self.anchor_generator = anchor_generator
        self.box_coder = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))

        if head is None:
            out_channels = getattr(backbone, "out_channels", None)
            if out_channels is None:
                out_channels = _retrieve_out_channels(backbone, size)
            elif isinstance(out_channels, numbers.Integral):
                out_channels = [int(out_channels)]
            out_channels = list(out_channels)
            if len(out_channels) != len(anchor_generator.aspect_ratios):
                raise ValueError(f"SSD: the backbone gives {len(out_channels)} feature maps "
                                 f"but the anchor generator has aspect ratios for "
                                 f"{len(anchor_generator.aspect_ratios)}")
            num_anchors = self.anchor_generator.num_anchors_per_location()
            head = SSDHead(out_channels, num_anchors, num_classes)
        self.head = head

        self.proposal_matcher = SSDMatcher(iou_thresh)

        if image_mean is None:
            image_mean = [0.485, 0.456, 0.406]
        if image_std is None:
            image_std = [0.229, 0.224, 0.225]
        self.transform = GeneralizedRCNNTransform(min(size), max(size), image_mean,
                                                  image_std, size_divisible=1,
                                                  fixed_size=size)

        self.num_classes = num_classes
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img
        self.topk_candidates = topk_candidates
        self.neg_to_pos_ratio = (1.0 - positive_fraction) / positive_fraction

    def forward(self, images, targets=None):
        images = image_sequence("SSD", images)
        if self.training and targets is None:
            raise ValueError("SSD: in training mode, targets should be passed")
        if targets is not None:
            targets = self._checked_targets(targets, len(images))

        original_image_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        images, targets = self.transform(images, targets)

        if targets is not None:
            for target_idx, target in enumerate(targets):
                boxes = target["boxes"].array
                degenerate = (boxes[:, 2:] <= boxes[:, :2]).any(axis=1)
                if degenerate.any():
                    bad = boxes[int(np.flatnonzero(backend.to_device(degenerate, "cpu"))[0])]
                    raise ValueError(f"SSD: All bounding boxes should have positive height "
                                     f"and width. Found invalid box {bad.tolist()} for "
                                     f"target at index {target_idx}.")

        features = self.backbone(images.tensors)
        if isinstance(features, minicnn.Tensor):
            features = [features]
        elif isinstance(features, dict):
            features = list(features.values())
        features = list(features)

        head_outputs = self.head(features)
        anchors = self.anchor_generator(images, features)

        if self.training:
            matched_idxs = []
            for anchors_per_image, targets_per_image in zip(anchors, targets):
                anchors_per_image = _array(anchors_per_image)
                xp = backend.get_array_module(anchors_per_image)
                if targets_per_image["boxes"].numel() == 0:
                    matched_idxs.append(xp.full((anchors_per_image.shape[0],), -1,
                                                dtype=np.int64))
                    continue
                match_quality_matrix = box_iou(targets_per_image["boxes"].array,
                                               anchors_per_image)
                matched_idxs.append(_array(self.proposal_matcher(match_quality_matrix)))
            return self.compute_loss(targets, head_outputs, anchors, matched_idxs)

        detections = self.postprocess_detections(head_outputs, anchors, images.image_sizes)
        return self.transform.postprocess(detections, images.image_sizes,
                                          original_image_sizes)

    def compute_loss(self, targets, head_outputs, anchors, matched_idxs):
        """SSD's MultiBox loss (module docstring, 5.).

        targets: per image ``boxes`` (K, 4) and ``labels`` (K,); head_outputs: the
        head's dict, (N, A, 4) and (N, A, num_classes); anchors: per image (A, 4) xyxy;
        matched_idxs: per image (A,) the matched ground truth's index, or < 0.
        Returns ``{"bbox_regression", "classification"}``, both divided by the number of
        positives in the batch (at least 1).
        """
        bbox_regression = head_outputs["bbox_regression"]
        cls_logits = head_outputs["cls_logits"]
        N, A, num_classes = cls_logits.shape
        dtype = bbox_regression.dtype
        xp = backend.get_array_module(cls_logits.array)

        # match the targets with the default boxes
        foreground_rows, regression_targets = [], []
        cls_targets = xp.zeros((N, A), dtype=np.int64)
        for i, (targets_per_image, anchors_per_image, matched_idxs_per_image) in \
                enumerate(zip(targets, anchors, matched_idxs)):
            matched = xp.asarray(_array(matched_idxs_per_image))
            foreground_idxs = xp.nonzero(matched >= 0)[0]
            foreground_matched_idxs = matched[foreground_idxs]
            matched_gt_boxes = _array(targets_per_image["boxes"])[foreground_matched_idxs]
            anchors_fg = _array(anchors_per_image)[foreground_idxs]
            regression_targets.append(_array(self.box_coder.encode_single(
                matched_gt_boxes.astype(dtype, copy=False), anchors_fg.astype(dtype,
                                                                               copy=False))))
            foreground_rows.append(foreground_idxs + i * A)
            cls_targets[i, foreground_idxs] = \
                _array(targets_per_image["labels"])[foreground_matched_idxs]
        num_foreground = int(sum(int(r.shape[0]) for r in foreground_rows))

        # smooth L1 on the positives' offsets (summed over the batch)
        rows = xp.concatenate(foreground_rows)
        predicted = bbox_regression.reshape(N * A, 4)[rows]
        wanted = minicnn.Tensor._wrap(xp.concatenate(regression_targets).reshape(-1, 4))
        bbox_loss = F.smooth_l1_loss(predicted, wanted, reduction="sum")

        # cross-entropy on the positives and the hard negatives
        cls_loss = F.cross_entropy(cls_logits.reshape(-1, num_classes),
                                   minicnn.Tensor._wrap(cls_targets.reshape(-1)),
                                   reduction="none").reshape(N, A)
        foreground = cls_targets > 0
        negatives = _array(hard_negative_mask(cls_loss.array, foreground,
                                              self.neg_to_pos_ratio))
        # NOTE: torchvision's selection also takes positives (ranked last, at -inf) when
        # 3 x positives exceeds an image's negatives, and then counts them twice;
        # hard_negative_mask picks negatives only, so each anchor counts at most once
        weight = foreground.astype(dtype) + negatives.astype(dtype)
        normalizer = max(1, num_foreground)
        return {
            "bbox_regression": bbox_loss / normalizer,
            "classification": (cls_loss * minicnn.Tensor._wrap(weight)).sum() / normalizer,
        }

    def postprocess_detections(self, head_outputs, image_anchors, image_shapes):
        """Boxes, scores and labels per image (module docstring, 6.), in the pixels of the
        resized image (``image_shapes``: its (h, w))."""
        with minicnn.no_grad():
            pred_scores = F.softmax(head_outputs["cls_logits"], dim=-1).array
        bbox_regression = head_outputs["bbox_regression"].array
        xp = backend.get_array_module(pred_scores)
        num_classes = pred_scores.shape[-1]

        detections = []
        for boxes, scores, anchors, image_shape in zip(bbox_regression, pred_scores,
                                                       image_anchors, image_shapes):
            boxes = _array(self.box_coder.decode_single(boxes, _array(anchors)))
            boxes = _array(clip_boxes_to_image(boxes.reshape(-1, 4), image_shape))

            image_boxes, image_scores, image_labels = [], [], []
            for label in range(1, num_classes):
                score = scores[:, label]
                keep_idxs = xp.nonzero(score > self.score_thresh)[0]
                score, box = score[keep_idxs], boxes[keep_idxs]
                # keep only the top-k scoring candidates (ties: lower index first)
                idxs = xp.argsort(-score, kind="stable")[:min(self.topk_candidates,
                                                              score.shape[0])]
                image_boxes.append(box[idxs])
                image_scores.append(score[idxs])
                image_labels.append(xp.full(idxs.shape, label, dtype=np.int64))

            image_boxes = xp.concatenate(image_boxes)
            image_scores = xp.concatenate(image_scores)
            image_labels = xp.concatenate(image_labels)

            # non-maximum suppression, class by class
            keep = _array(batched_nms(image_boxes, image_scores, image_labels,
                                      self.nms_thresh))
            keep = keep[:self.detections_per_img]
            detections.append({
                "boxes": minicnn.Tensor._wrap(image_boxes[keep]),
                "scores": minicnn.Tensor._wrap(image_scores[keep]),
                "labels": minicnn.Tensor._wrap(image_labels[keep]),
            })
        return detections

    def _checked_targets(self, targets, num_images):
        """Training targets as dicts of Tensors, checked: one per image, ``boxes`` (K, 4)
        floats and ``labels`` (K,) in [0, num_classes)."""
        if not isinstance(targets, (list, tuple)) or len(targets) != num_images:
            raise ValueError(f"SSD: expected a list of one target dict per image "
                             f"({num_images}), got {type(targets).__name__}"
                             + (f" of length {len(targets)}"
                                if isinstance(targets, (list, tuple)) else ""))
        checked = []
        for i, target in enumerate(targets):
            if not isinstance(target, dict) or "boxes" not in target \
                    or "labels" not in target:
                raise ValueError(f"SSD: target {i} must be a dict with 'boxes' and "
                                 f"'labels', got {target!r:.80}")
            boxes = minicnn.as_tensor(target["boxes"])
            labels = minicnn.as_tensor(target["labels"])
            if boxes.ndim != 2 or boxes.shape[-1] != 4:
                raise ValueError(f"SSD: expected target boxes to be a tensor of shape "
                                 f"(K, 4), got {tuple(boxes.shape)} for target {i}")
            if boxes.dtype.kind != "f":
                raise TypeError(f"SSD: expected floating-point target boxes, got "
                                f"{boxes.dtype} for target {i}")
            if labels.shape != (boxes.shape[0],) or labels.dtype.kind not in "iu":
                raise ValueError(f"SSD: expected integer target labels of shape "
                                 f"({boxes.shape[0]},) (one per box), got "
                                 f"{labels.dtype} of shape {tuple(labels.shape)} for "
                                 f"target {i}")
            if labels.numel() and (int(labels.array.min()) < 0 or
                                   int(labels.array.max()) >= self.num_classes):
                raise ValueError(f"SSD: target labels must be in [0, {self.num_classes}) "
                                 f"(num_classes={self.num_classes}, 0 the background), "
                                 f"got {sorted(set(labels.tolist()))} for target {i}")
            checked.append({**target, "boxes": boxes, "labels": labels})
        return checked


def _array(value):
    """The backend array of a Tensor (anything else as it is)."""
    return value.array if isinstance(value, minicnn.Tensor) else value


def _retrieve_out_channels(model, size):
    """The channels of each map ``model`` returns for a zero image of ``size`` (w, h)."""
    was_training = model.training
    model.eval()
    with minicnn.no_grad():
        param = next(iter(model.parameters()), None)
        device = param.device if param is not None else None
        features = model(minicnn.zeros(1, 3, size[1], size[0], device=device))
        if isinstance(features, minicnn.Tensor):
            features = [features]
        elif isinstance(features, dict):
            features = list(features.values())
        out_channels = [int(x.shape[1]) for x in features]
    model.train(was_training)
    return out_channels


# ================================================================ feature extractors

class SSDFeatureExtractorVGG(nn.Module):
    """VGG16 changed for SSD300 (module docstring): returns six maps as an ordered dict
    ``"0"`` ... ``"5"``, the first L2-normalised and scaled (``scale_weight``, 512
    values started at 20).

    ``backbone`` is VGG16's ``features`` (configuration D, no BN): its pool3 is switched
    to ceil mode in place; conv1_1 ... conv4_3 become ``features``, pool4 ... conv5_3
    with the new pool5, fc6 and fc7 the first block of ``extra``. ``highres`` adds
    SSD512's sixth extra layer (4x4 convolution).
    """

    def __init__(self, backbone, highres=False):
        super().__init__()
        pools = [i for i, layer in enumerate(backbone) if isinstance(layer, nn.MaxPool2d)]
        if len(pools) != 5:
            raise ValueError(f"SSDFeatureExtractorVGG: expected VGG's features with 5 max "
                             f"pools, got {len(pools)}")
        _, _, maxpool3_pos, maxpool4_pos, _ = pools

        # ceil mode for pool3 gives the paper's sizes (75 -> 38, not 37)
        backbone[maxpool3_pos].ceil_mode = True

        # the learned per-channel scale of the L2-normalised conv4_3 map
        self.scale_weight = nn.Parameter(minicnn.ones(512) * 20)

        # up to conv4_3 (and its ReLU): the first map
        self.features = nn.Sequential(*backbone[:maxpool4_pos])

        # the extra layers (the paper's Fig. 2)
        extra = nn.ModuleList([
            nn.Sequential(
                nn.Conv2d(1024, 256, kernel_size=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(256, 512, kernel_size=3, padding=1, stride=2),  # conv8_2
                nn.ReLU(inplace=True),
            ),
            nn.Sequential(
                nn.Conv2d(512, 128, kernel_size=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(128, 256, kernel_size=3, padding=1, stride=2),  # conv9_2
                nn.ReLU(inplace=True),
            ),
            nn.Sequential(
                nn.Conv2d(256, 128, kernel_size=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(128, 256, kernel_size=3),                       # conv10_2
                nn.ReLU(inplace=True),
            ),
            nn.Sequential(
                nn.Conv2d(256, 128, kernel_size=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(128, 256, kernel_size=3),                       # conv11_2
                nn.ReLU(inplace=True),
            ),
        ])
        if highres:
            # SSD512's additional layer (the paper's footnote 5)
            extra.append(nn.Sequential(
                nn.Conv2d(256, 128, kernel_size=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(128, 256, kernel_size=4),                       # conv12_2
                nn.ReLU(inplace=True),
            ))
        _xavier_init(extra)

        fc = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=False),  # pool5
            nn.Conv2d(512, 1024, kernel_size=3, padding=6, dilation=6),  # fc6, atrous
            nn.ReLU(inplace=True),
            nn.Conv2d(1024, 1024, kernel_size=1),                        # fc7
            nn.ReLU(inplace=True),
        )
        _xavier_init(fc)
        # pool4, conv5_1 ... conv5_3 (VGG's pool5 dropped), then the new pool5, fc6, fc7
        extra.insert(0, nn.Sequential(*backbone[maxpool4_pos:-1], fc))
        self.extra = extra
        self.out_channels = [512, 1024, 512, 256, 256, 256] + ([256] if highres else [])

    def forward(self, x):
        # L2 normalisation across channels, then the learned scale, on the first map
        x = self.features(x)
        rescaled = self.scale_weight.view(1, -1, 1, 1) * F.normalize(x)
        output = [rescaled]
        # the remaining maps, each block reading the previous one
        for block in self.extra:
            x = block(x)
            output.append(x)
        return collections.OrderedDict([(str(i), v) for i, v in enumerate(output)])


class SSDFeatureExtractorSmall(SSDFeatureExtractorVGG):
    """The same recipe on a narrow VGG for small images (minicnn's addition).

    ``features``: VGG's 3x3 convolutions and 2x2 pools as listed in ``cfg`` (a VGG
    configuration, see ``minicnn.models.vgg``; with BN after each convolution if
    ``batch_norm``), ending with convolutions at 1/8 of the input, as conv4_3 does: that
    map, L2-normalised and scaled, is the first output. ``extra.0`` halves it with a 2x2
    pool and applies a 3x3 and a 1x1 convolution (fc6's and fc7's places); every further
    block halves the map with a 1x1 bottleneck and a stride-2 3x3 convolution. For a
    64x64 image and the default configuration the maps are 8x8, 4x4, 2x2 and 1x1 with
    128 channels each.
    """

    def __init__(self, cfg=(16, "M", 32, "M", 64, 64, "M", 128, 128), fc_channels=128,
                 extra_channels=(128, 128), in_channels=3, batch_norm=False):
        nn.Module.__init__(self)
        self.features = make_layers(list(cfg), batch_norm=batch_norm, in_channels=in_channels)
        _vgg_init(self.features)
        channels = [v for v in cfg if v != "M"][-1]
        self.scale_weight = nn.Parameter(minicnn.ones(channels) * 20)
        extra = nn.ModuleList([nn.Sequential(
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(channels, fc_channels, kernel_size=3, padding=1),   # fc6's place
            nn.ReLU(inplace=True),
            nn.Conv2d(fc_channels, fc_channels, kernel_size=1),          # fc7's place
            nn.ReLU(inplace=True),
        )])
        out_channels = [channels, fc_channels]
        for width in extra_channels:
            extra.append(nn.Sequential(
                nn.Conv2d(out_channels[-1], width // 2, kernel_size=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(width // 2, width, kernel_size=3, padding=1, stride=2),
                nn.ReLU(inplace=True),
            ))
            out_channels.append(width)
        _xavier_init(extra)
        self.extra = extra
        self.out_channels = out_channels


def _vgg_init(features):
    """VGG's initialisation (He normal, fan out; zero biases; BN at 1 and 0)."""
    for m in features.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


# ========================================================================= builders

def _vgg_extractor(backbone, highres, trainable_layers):
    """VGG16's ``features`` with the first ``5 - trainable_layers`` blocks frozen, as an
    :class:`SSDFeatureExtractorVGG`."""
    stage_indices = [0] + [i for i, b in enumerate(backbone)
                           if isinstance(b, nn.MaxPool2d)][:-1]
    num_stages = len(stage_indices)
    if not 0 <= trainable_layers <= num_stages:
        raise ValueError(f"ssd300_vgg16: trainable_backbone_layers should be in the range "
                         f"[0, {num_stages}], got {trainable_layers}")
    freeze_before = len(backbone) if trainable_layers == 0 else \
        stage_indices[num_stages - trainable_layers]
    for b in backbone[:freeze_before]:
        for parameter in b.parameters():
            parameter.requires_grad_(False)
    return SSDFeatureExtractorVGG(backbone, highres)


def ssd300_vgg16(num_classes=91, trainable_backbone_layers=None, in_channels=3, **kwargs):
    """SSD300 on VGG16 (torchvision's ``ssd300_vgg16`` without weights): 300x300 input,
    six maps, 8,732 default boxes with COCO's scales 0.07 ... 1.05 and steps 8 ... 300;
    35,641,826 parameters for 91 classes, 26,285,486 for 21.

    The normalisation is torchvision's for its backbone (trained on 0-255 images): mean
    (0.48235, 0.45882, 0.40784) and std 1/255, so a [0, 1] image becomes
    255·image - 255·mean. ``trainable_backbone_layers`` (0-5, default all 5) freezes
    VGG's first blocks; ``kwargs`` go to :class:`SSD` (``size`` is fixed at 300x300:
    images of any size are resized to it by the model's transform). ``in_channels``
    must be 3 (VGG16's RGB input); it is an argument so that the zoo's builders share
    one signature.
    """
    if in_channels != 3:
        raise ValueError(f"ssd300_vgg16: in_channels must be 3 (VGG16 reads RGB images), "
                         f"got {in_channels!r}")
    if "size" in kwargs:
        raise ValueError("ssd300_vgg16: the size of the model is fixed at (300, 300); "
                         "build SSD(...) for another size")
    trainable_backbone_layers = 5 if trainable_backbone_layers is None else \
        trainable_backbone_layers
    backbone = make_layers(cfgs["D"])            # VGG16's features, torchvision's layout
    _vgg_init(backbone)
    backbone = _vgg_extractor(backbone, False, trainable_backbone_layers)
    anchor_generator = DefaultBoxGenerator(
        [[2], [2, 3], [2, 3], [2, 3], [2], [2]],
        scales=[0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05],
        steps=[8, 16, 32, 64, 100, 300],
    )
    defaults = {
        # the backbone's own normalisation: 0-255 images minus the mean
        "image_mean": [0.48235, 0.45882, 0.40784],
        "image_std": [1.0 / 255.0, 1.0 / 255.0, 1.0 / 255.0],
    }
    kwargs = {**defaults, **kwargs}
    return SSD(backbone, anchor_generator, (300, 300), num_classes, **kwargs)


def ssd_small(num_classes=4, image_size=64, in_channels=3, width=16, batch_norm=True,
              min_ratio=0.25, max_ratio=0.75, **kwargs):
    """A small SSD for small images such as the generated shapes (minicnn's addition).

    :class:`SSDFeatureExtractorSmall` with widths ``width`` x (1, 2, 4, 8) (BN in the VGG
    part with ``batch_norm``): four maps, 8, 4, 2 and 1 for a 64x64 image. Default boxes
    (:class:`~minicnn.ops.DefaultBoxGenerator`): aspect ratios {1, 2, 1/2} and the extra
    square, 4 per position (340 for 64x64), scales from ``min_ratio`` to ``max_ratio`` of
    the image (the paper's linear rule; 0.25 ... 0.75 covers the shapes' 12-40 pixels:
    98% of them overlap a default box by IoU >= 0.5). No normalisation: the data sets
    give normalised images. ``kwargs`` go to :class:`SSD` (``score_thresh``,
    ``detections_per_img`` (default 100), ...).

    On the generated shapes (``minicnn train --task detection --model ssd_small
    --epochs 10 --scheduler cosine``: 2,000 training images with the default
    augmentation, Adam at 1e-3, weight decay 5e-4, batch 32) it reaches mAP@0.5 95.4% on
    the 300 test images (758,848 parameters, 41 M multiply-adds per image).
    """
    width = positive_int("ssd_small", "width", width)
    cfg = (width, "M", 2 * width, "M", 4 * width, 4 * width, "M", 8 * width, 8 * width)
    backbone = SSDFeatureExtractorSmall(cfg, fc_channels=8 * width,
                                        extra_channels=(8 * width, 8 * width),
                                        in_channels=in_channels, batch_norm=batch_norm)
    anchor_generator = DefaultBoxGenerator([[2], [2], [2], [2]], min_ratio=min_ratio,
                                           max_ratio=max_ratio)
    defaults = {"image_mean": [0.0] * in_channels, "image_std": [1.0] * in_channels,
                "detections_per_img": 100}
    kwargs = {**defaults, **kwargs}
    return SSD(backbone, anchor_generator, (image_size, image_size), num_classes, **kwargs)
