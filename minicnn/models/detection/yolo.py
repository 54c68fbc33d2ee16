"""YOLO v1: detection as one regression, from the pixels to a grid of boxes and classes.

Redmon, Divvala, Girshick & Farhadi, "You Only Look Once: Unified, Real-Time Object
Detection" (CVPR 2016, arXiv 1506.02640), figure 3 and §2.

The image is cut into an S x S grid (S = 7). Every cell predicts B boxes (B = 2), each
with a confidence, and one set of C class probabilities (C = 20 for Pascal VOC; YOLO
has no background class). One network does it all in a single pass: 24 convolutions
(1x1 "reduction" layers followed by 3x3 ones, as in Network in Network / GoogLeNet),
four 2x2/2 max pools, then two fully connected layers, the last one reshaped to the
grid. Every layer but the last uses leaky ReLU (slope 0.1); dropout 0.5 follows the first
fully connected layer. At 448x448::

    448 -> conv 7x7/2 64 -> 224 -> pool -> 112 -> conv 3x3 192 -> pool -> 56
        -> 1x1 128, 3x3 256, 1x1 256, 3x3 512 -> pool -> 28
        -> 4 x (1x1 256, 3x3 512), 1x1 512, 3x3 1024 -> pool -> 14
        -> 2 x (1x1 512, 3x3 1024), 3x3 1024, 3x3/2 1024 -> 7
        -> 3x3 1024, 3x3 1024                       (N, 1024, 7, 7) = 50,176 features
        -> FC 4,096 -> FC 7 * 7 * 30 = 1,470 -> (N, 7, 7, 30)

271,703,550 parameters (60,155,968 in the convolutions, 211,547,582 in the two fully
connected layers; biases everywhere, no batch normalisation: YOLO v2 added it).

The output (``model.grid(images)``, (N, S, S, 5B + C)) holds, in cell ``[n, i, j]``
(row i from the top, column j from the left), B boxes ``(x, y, √w, √h, confidence)``
then C class probabilities: x, y the box centre's offset in the cell (0..1), √w, √h the
square roots of its size relative to the image (the network predicts the roots, as
Darknet's ``sqrt=1``; see ``minicnn/functional/detection.py``), confidence
Pr(object) · IoU. Class channel k is the detection label k + 1 (0 is the background).

:class:`YOLOv1` follows torchvision's detector convention: ``model(images, targets)``
in training mode gives the loss dict of :func:`minicnn.nn.functional.yolo_v1_loss_terms`
(``loss_box``, ``loss_object``, ``loss_noobject``, ``loss_class``; their sum is the
paper's loss); ``model(images)`` in eval mode gives one ``{"boxes", "labels", "scores"}``
dict per image (:func:`yolo_v1_decode`: class-specific scores, a threshold, per-class
non-maximum suppression). The fully connected layers fix the input size to
``image_size``.

NOTE, departures: the paper pre-trains the first 20 convolutions on ImageNet at 224 and
trains the detector at 448; nothing is pre-trained here. The paper gives no
initialisation: convolutions and the hidden layer start with He's (for leaky ReLU,
slope 0.1), biases at 0; the last layer's weights with N(0, 0.01²) and its biases at
one guess for every cell -- each box in the middle of its cell, a quarter of the image
wide and high (√w = √h = 0.5), confidence 0, the classes equally likely -- so that
training starts near the average answer (on the shapes: test mAP@0.5 0.30 instead of
0.23 after 6 epochs).

The network is plain PyTorch code (only the imports differ); the tests run ``grid``
against the same source on ``torch.nn``.
"""
from __future__ import annotations

import minicnn
from minicnn import nn
from minicnn.nn import functional as F
from minicnn.functional._checks import pair, positive_int
from minicnn import ops

__all__ = ["YOLOv1", "make_yolo_layers", "yolo_cfgs", "yolo_v1", "yolo_v1_small",
           "yolo_v1_decode"]


# The convolutional part, in order. An int n is a 3x3 convolution with n filters
# (padding 1), (n, k) a k x k one (padding k // 2), (n, k, s) one with stride s, "M" a
# 2x2/2 max pool. Every convolution is followed by leaky ReLU (and BN if asked).
yolo_cfgs = {
    # the paper's figure 3: 24 convolutions
    "yolo_v1": [(64, 7, 2), "M",
                192, "M",
                (128, 1), 256, (256, 1), 512, "M",
                *[(256, 1), 512] * 4, (512, 1), 1024, "M",
                *[(512, 1), 1024] * 2, 1024, (1024, 3, 2),
                1024, 1024],
    # the small variant for 64x64 shapes (see yolo_v1_small): 64 -> 32 -> 16 -> 8 -> 4
    "yolo_v1_small": [(32, 5, 2), "M",
                      64, "M",
                      (32, 1), 128, "M",
                      (64, 1), 256,
                      (128, 1), 256],
}


class YOLOv1(nn.Module):
    """YOLO v1 around a convolutional ``features`` stack (see the module docstring).

    ``feature_shape``: the (channels, height, width) ``features`` gives for an
    ``image_size`` input (the builders work it out); the classifier maps its flattening
    to ``hidden_features`` (4096) and then to the S * S * (5B + C) outputs.

    Shape: images (N, in_channels, H, W) with (H, W) = ``image_size`` ->
    ``grid`` (N, S, S, 5B + C); ``forward`` as the detection convention says.

    ``score_threshold``, ``iou_threshold`` and ``max_detections`` are the eval-mode
    decoding's (:func:`yolo_v1_decode`); the λ's are the loss's
    (:func:`minicnn.nn.functional.yolo_v1_loss`, the paper's values by default).
    """

    def __init__(self, features, feature_shape, num_classes=20, S=7, B=2, image_size=448,
                 hidden_features=4096, dropout=0.5, score_threshold=0.05,
                 iou_threshold=0.5, max_detections=100, lambda_coord=5.0, lambda_obj=1.0,
                 lambda_noobj=0.5, lambda_classes=1.0):
        super().__init__()
        name = type(self).__name__
        self.num_classes = positive_int(name, "num_classes", num_classes)
        self.S = positive_int(name, "S", S)
        self.B = positive_int(name, "B", B)
        self.image_size = pair(name, "image_size", image_size, minimum=1)
        self.score_threshold, self.iou_threshold = score_threshold, iou_threshold
        self.max_detections = max_detections
        self.lambdas = dict(lambda_coord=lambda_coord, lambda_obj=lambda_obj,
                            lambda_noobj=lambda_noobj, lambda_classes=lambda_classes)
        self.features = features
        channels, height, width = feature_shape
        self.classifier = nn.Sequential(
            nn.Linear(channels * height * width, hidden_features),
            nn.LeakyReLU(0.1, inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(hidden_features, self.S * self.S * (5 * self.B + self.num_classes)),
        )
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, a=0.1, nonlinearity="leaky_relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        # the last layer starts near one guess everywhere: each box in the middle of its
        # cell, a quarter of the image wide and high (√w = √h = 0.5), confidence 0, the
        # classes equally likely
        last = self.classifier[-1]
        nn.init.normal_(last.weight, 0, 0.01)
        start = [0.5, 0.5, 0.5, 0.5, 0.0] * self.B + [1.0 / self.num_classes] * self.num_classes
        with minicnn.no_grad():
            last.bias.copy_(minicnn.tensor(start * (self.S * self.S)))

    def grid(self, images):
        """The raw prediction grid, (N, S, S, 5B + C) (layout in the module docstring)."""
        x = self.features(images)                   # (N, 1024, 7, 7) at 448
        x = minicnn.flatten(x, 1)                   # (N, 50176)
        x = self.classifier(x)                      # (N, 1470)
        return x.reshape(x.shape[0], self.S, self.S, 5 * self.B + self.num_classes)

    def forward(self, images, targets=None):
        """Training: ``targets`` (one dict per image, ``"boxes"`` (K, 4) xyxy pixels,
        ``"labels"`` (K,) in 1..num_classes) -> the dict of the four loss terms.
        Eval: a list of ``{"boxes", "labels", "scores"}`` dicts, boxes in the input's
        pixels, by decreasing score."""
        images = self._batch(images)
        pred = self.grid(images)
        if self.training:
            if targets is None:
                raise ValueError(f"{type(self).__name__}: in training mode forward needs "
                                 f"targets (one dict of boxes and labels per image)")
            if len(targets) != images.shape[0]:
                raise ValueError(f"{type(self).__name__}: got {images.shape[0]} images "
                                 f"but {len(targets)} targets")
            grid = F.yolo_v1_targets([t["boxes"] for t in targets],
                                     [t["labels"] for t in targets], self.S,
                                     self.num_classes, self.image_size, dtype=pred.dtype)
            return F.yolo_v1_loss_terms(pred, grid.to(device=pred.device), self.S, self.B,
                                        self.num_classes, **self.lambdas)
        return yolo_v1_decode(pred, self.S, self.B, self.num_classes, self.image_size,
                              self.score_threshold, self.iou_threshold,
                              self.max_detections)

    def _batch(self, images):
        """A (N, C, H, W) Tensor from a batch or a list of (C, H, W) images, all of
        ``image_size`` (the fully connected layers fix it)."""
        name = type(self).__name__
        if isinstance(images, (list, tuple)):
            if not images:
                raise ValueError(f"{name}: got an empty list of images")
            for k, image in enumerate(images):
                if image.ndim != 3:
                    raise ValueError(f"{name}: images[{k}] must be (C, H, W), got shape "
                                     f"{tuple(image.shape)}")
            sizes = {tuple(image.shape[-2:]) for image in images}
            if sizes == {self.image_size}:
                images = minicnn.stack(list(images))
        elif images.ndim != 4:
            raise ValueError(f"{name}: images must be (N, C, H, W) or a list of (C, H, W), "
                             f"got shape {tuple(images.shape)}")
        else:
            sizes = {tuple(images.shape[-2:])}
        if sizes != {self.image_size}:
            raise ValueError(f"{name}: its fully connected layers take images of exactly "
                             f"{self.image_size[0]}x{self.image_size[1]} (image_size), got "
                             f"{', '.join(f'{h}x{w}' for h, w in sorted(sizes))}; resize "
                             f"the images (and their boxes) first")
        return images


def make_yolo_layers(cfg, in_channels=3, width=1.0, batch_norm=False):
    """The ``features`` Sequential for a configuration list (see ``yolo_cfgs``), each
    convolution's filters scaled by ``width`` (at least 1)."""
    layers = []
    for v in cfg:
        if v == "M":
            layers += [nn.MaxPool2d(kernel_size=2, stride=2)]
            continue
        out_channels, kernel, stride = _conv_spec(v, width)
        conv = nn.Conv2d(in_channels, out_channels, kernel, stride=stride,
                         padding=kernel // 2, bias=not batch_norm)
        layers += [conv, nn.BatchNorm2d(out_channels)] if batch_norm else [conv]
        layers += [nn.LeakyReLU(0.1, inplace=True)]
        in_channels = out_channels
    return nn.Sequential(*layers)


def yolo_v1(num_classes=20, S=7, B=2, width=1.0, in_channels=3, image_size=448,
            hidden_features=4096, **kwargs):
    """YOLO v1 as in the paper's figure 3 (448x448 -> (N, 7, 7, 30) for 20 classes;
    271,703,550 parameters). ``width`` scales every convolution's filters and the hidden
    fully connected layer (``hidden_features``, 4096), for smaller experiments; other
    keywords go to :class:`YOLOv1`."""
    return _build("yolo_v1", yolo_cfgs["yolo_v1"], num_classes, S, B, width, in_channels,
                  image_size, hidden_features, batch_norm=False, **kwargs)


def yolo_v1_small(num_classes=3, S=4, B=2, width=1.0, in_channels=3, image_size=64,
                  hidden_features=256, batch_norm=True, dropout=0.0, **kwargs):
    """A small YOLO v1 for the generated 64x64 shapes (``ShapesDetection``, 3 object
    classes): the paper's design at a smaller scale -- a strided first convolution and
    max pools bring the image down, 1x1 reductions precede 3x3 convolutions, leaky ReLU
    0.1, a fully connected layer, dropout and a last fully connected layer reshaped to
    the S x S grid, the paper's loss -- with 8 convolutions (32 to 256 filters), three
    pools, a 4x4 grid (16-pixel cells) and a 256-wide hidden layer; 1,647,280
    parameters::

        64 -> conv 5x5/2 32 -> 32 -> pool -> 16 -> conv 3x3 64 -> pool -> 8
           -> 1x1 32, 3x3 128 -> pool -> 4 -> 1x1 64, 3x3 256, 1x1 128, 3x3 256
           -> (N, 256, 4, 4) -> FC 256 -> FC 4 * 4 * 13 -> (N, 4, 4, 13)  (B = 2, C = 3)

    NOTE, departures from the paper, both because nothing is pre-trained here:
    batch normalisation after each convolution (``batch_norm=True``; YOLO v2's
    addition), and no dropout by default (``dropout=0.0``; the paper's 0.5 on this
    256-wide layer slowed learning: test mAP@0.5 0.72 instead of 0.89 after the 40
    epochs below -- the augmentation regularises enough).

    The recipe that trains it (``examples/yolo_shapes.py``, the paper's section 2.2
    scaled down): 2,000 training images (``ShapesDetection(seed=0)``), 300 test images
    (``seed=1``); augmentation ``RandomHSV(1.5, 1.5)``, ``RandomScaleTranslate(0.2,
    0.2)``, ``RandomHorizontalFlip()``, ``SanitizeBoundingBoxes()``; Adam (instead of
    SGD with momentum 0.9), weight decay 5e-4, batch 16, 40 epochs, a one-cycle
    learning rate (a warm-up to 1e-3 over the first 30 %, then a cosine decay;
    ``OneCycleLR`` stepped per batch). Test mAP@0.5 0.900 in 247 s on the quiet 2-core
    machine; ``minicnn train --task detection`` (batch 32, 30 epochs at 2e-3): 0.853 in
    198 s.
    """
    return _build("yolo_v1_small", yolo_cfgs["yolo_v1_small"], num_classes, S, B, width,
                  in_channels, image_size, hidden_features, batch_norm=batch_norm,
                  dropout=dropout, **kwargs)


def yolo_v1_decode(pred, S=7, B=2, C=20, image_size=448, score_threshold=0.05,
                   iou_threshold=0.5, max_detections=100):
    """Boxes from a (N, S, S, 5B + C) prediction grid: one ``{"boxes", "labels",
    "scores"}`` dict per image, boxes (D, 4) float32 xyxy in the pixels of an
    ``image_size`` image (an int or (height, width)), labels (D,) int64 in 1..C, scores
    (D,) float32, by decreasing score. No gradient.

    Each of the S * S * B boxes gets a class-specific score per class (the paper's
    Pr(class | object) · Pr(object) · IoU = p̂_c · ĉ), with p̂ and ĉ clipped to [0, 1]
    first (the outputs are linear: two negative values must not make a positive score).
    Box (x, y, √w, √h) of cell (i, j): centre ((j + x) / S · W, (i + y) / S · H), size
    (√w² · W, √h² · H), clipped to the image; boxes under 0.01 pixel wide or high are
    dropped (torchvision's detectors do the same). Then: scores above
    ``score_threshold``, non-maximum suppression per class at ``iou_threshold``
    (``minicnn.ops.batched_nms``: a box competes only with boxes of its own label, so a
    box may appear once per class), the ``max_detections`` best.
    """
    op = "yolo_v1_decode"
    S, B, C = (positive_int(op, n, v) for n, v in (("S", S), ("B", B), ("C", C)))
    height, width = pair(op, "image_size", image_size, minimum=1)
    p = minicnn.as_tensor(pred).detach()
    if p.ndim != 4 or tuple(p.shape[1:]) != (S, S, 5 * B + C):
        raise ValueError(f"{op}: pred must have shape (N, S, S, 5B + C) = (N, {S}, {S}, "
                         f"{5 * B + C}) for S={S}, B={B}, C={C}, got {tuple(p.shape)}")
    if not 0 <= iou_threshold <= 1:
        raise ValueError(f"{op}: iou_threshold must lie in [0, 1], got {iou_threshold!r}")
    max_detections = positive_int(op, "max_detections", max_detections)
    a = p.array
    xp = minicnn.backend.get_array_module(a)
    boxes = a[..., :5 * B].reshape(-1, S, S, B, 5)                   # (N, S, S, B, 5)
    rows = xp.arange(S, dtype=a.dtype)[:, None, None]                 # i
    cols = xp.arange(S, dtype=a.dtype)[None, :, None]                 # j
    cx = (cols + boxes[..., 0]) / S * width                           # (N, S, S, B)
    cy = (rows + boxes[..., 1]) / S * height
    w, h = boxes[..., 2] ** 2 * width, boxes[..., 3] ** 2 * height
    xyxy = xp.stack([xp.clip(cx - w / 2, 0, width), xp.clip(cy - h / 2, 0, height),
                     xp.clip(cx + w / 2, 0, width), xp.clip(cy + h / 2, 0, height)], -1)
    confidence = xp.clip(boxes[..., 4], 0, 1)                          # (N, S, S, B)
    classes = xp.clip(a[..., 5 * B:], 0, 1)                            # (N, S, S, C)
    scores = confidence[..., None] * classes[:, :, :, None, :]          # (N, S, S, B, C)
    detections = []
    for n in range(a.shape[0]):
        image_boxes = xyxy[n].reshape(-1, 4).astype(xp.float32)       # (S*S*B, 4)
        image_scores = scores[n].reshape(-1, C)                        # (S*S*B, C)
        box, label = xp.nonzero(image_scores > score_threshold)        # candidates
        cand_boxes = image_boxes[box]
        cand_scores = image_scores[box, label].astype(xp.float32)
        big = ops.remove_small_boxes(cand_boxes, 1e-2)
        cand_boxes, cand_scores, label = cand_boxes[big], cand_scores[big], label[big]
        keep = ops.batched_nms(cand_boxes, cand_scores, label, iou_threshold)[:max_detections]
        detections.append({
            "boxes": minicnn.Tensor._wrap(cand_boxes[keep]),
            "labels": minicnn.Tensor._wrap((label[keep] + 1).astype(xp.int64)),
            "scores": minicnn.Tensor._wrap(cand_scores[keep]),
        })
    return detections


def _build(name, cfg, num_classes, S, B, width, in_channels, image_size, hidden_features,
           batch_norm, **kwargs):
    if not width > 0:
        raise ValueError(f"{name}: width must be > 0, got {width!r}")
    in_channels = positive_int(name, "in_channels", in_channels)
    size = pair(name, "image_size", image_size, minimum=1)
    features = make_yolo_layers(cfg, in_channels, width, batch_norm)
    feature_shape = _feature_shape(name, cfg, size, width)
    hidden = max(1, round(positive_int(name, "hidden_features", hidden_features) * width))
    return YOLOv1(features, feature_shape, num_classes, S, B, size, hidden, **kwargs)


def _feature_shape(name, cfg, size, width):
    """The (channels, height, width) the convolutional part gives for a ``size`` input:
    each convolution (s + 2 * (k // 2) - k) // stride + 1, each pool s // 2."""
    h, w = size
    channels = None
    for v in cfg:
        if v == "M":
            h, w = h // 2, w // 2
        else:
            channels, kernel, stride = _conv_spec(v, width)
            h = (h + 2 * (kernel // 2) - kernel) // stride + 1
            w = (w + 2 * (kernel // 2) - kernel) // stride + 1
        if h < 1 or w < 1:
            raise ValueError(f"{name}: image_size {size} is too small: the feature map "
                             f"vanishes before the fully connected layers")
    return channels, h, w


def _conv_spec(v, width):
    """(filters scaled by ``width``, kernel, stride) of a configuration entry."""
    filters, kernel, stride = (v, 3, 1) if isinstance(v, int) else (tuple(v) + (1,))[:3]
    return max(1, round(filters * width)), kernel, stride
