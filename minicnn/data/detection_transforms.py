"""Transforms for detection: an image and its target moved together, and the collate
that batches detection samples.

Every transform here is called as ``image, target = t(image, target)``, as
torchvision's ``transforms.v2`` applied to an image and a target holding
``tv_tensors.BoundingBoxes`` and ``tv_tensors.Mask``. ``target`` is a dict of arrays, one
row per object (K of them): ``"boxes"`` ``(K, 4)`` ``(x1, y1, x2, y2)`` in pixels,
``"labels"`` ``(K,)``, and optionally ``"masks"`` ``(K, H, W)``, ``"difficult"``,
``"iscrowd"``, ``"area"`` (the per-object keys, :data:`PER_BOX_KEYS`: a transform that
drops a box drops its row in each of them). Other keys pass through untouched.

Coordinates are pixel edges: pixel ``(row, col)`` covers ``[col, col + 1) x [row, row +
1)``, the image ``[0, W] x [0, H]``. The formulas are torchvision's: a horizontal flip
maps ``x`` to ``W - x`` (and swaps ``x1``, ``x2``), a resize multiplies by the size
ratios, a crop subtracts its corner and clamps to the new canvas, a pad adds its left and
top margins.

The image may be the picture a data set stores -- an integer array ``(H, W, C)`` (or
``(H, W)``), as read from a file -- or a tensor image, a float array ``(C, H, W)`` in
[0, 1] as :class:`ToTensor` makes it (a minicnn Tensor is accepted and given back as
one). The dtype tells them apart: integer arrays are pictures, float arrays tensor
images; each transform gives back the layout and dtype it got. Geometry and colour work on
either, so a pipeline can augment the small uint8 picture and convert last::

    Compose([RandomHSV(), RandomScaleTranslate(), RandomHorizontalFlip(),
             SanitizeBoundingBoxes(), ToTensor(), Normalize(mean, std)])

Images are resampled bilinearly, masks with nearest neighbour; area outside the image
gets ``fill`` in the image (in the image's own units: 0..255 for a uint8 picture, 0..1
for a tensor image) and 0 in the masks. Random transforms draw from
``minicnn.data._random.current_generator()`` (minicnn's seeded generator, or inside a
DataLoader the batch's own), so augmentation is reproducible and resumable. Each random
transform's ``get_params`` makes its draws, and the module-level functions
(:func:`horizontal_flip`, :func:`resize`, :func:`crop`, :func:`pad`,
:func:`scale_translate`, :func:`adjust_hsv`) apply given parameters.
"""
from __future__ import annotations

import collections.abc
import math
import numbers

import numpy as np

from ..autograd import Tensor
from . import imageops
from ._random import current_generator
from .imageops import BILINEAR, NEAREST
from .transforms import Normalize as _ImageNormalize
from .transforms import ToTensor as _ImageToTensor
from .transforms import _pair as _size_pair          # int or (h, w) -> (h, w), both > 0

__all__ = ["Compose", "ToTensor", "Normalize", "RandomHorizontalFlip", "Resize",
           "RandomIoUCrop", "RandomZoomOut", "RandomPhotometricDistort", "RandomHSV",
           "RandomScaleTranslate", "SanitizeBoundingBoxes", "detection_collate",
           "horizontal_flip", "resize", "crop", "pad", "scale_translate", "adjust_hsv",
           "PER_BOX_KEYS"]

# the target keys holding one row per box
PER_BOX_KEYS = ("boxes", "labels", "masks", "difficult", "iscrowd", "area")

# the dtype each known key has in a sample after ToTensor and in a collated batch
_TARGET_DTYPES = {"boxes": np.float32, "labels": np.int64, "masks": np.uint8,
                  "difficult": np.bool_, "iscrowd": np.int64, "area": np.float32}


# ---------------------------------------------------------------- containers

class Compose:
    """Apply detection transforms one after the other to ``(image, target)``."""

    def __init__(self, transforms):
        self.transforms = list(transforms)
        for t in self.transforms:
            if not callable(t):
                raise TypeError(f"Compose: every transform must be callable, got "
                                f"{type(t).__name__}")

    def __call__(self, image, target):
        for t in self.transforms:
            image, target = t(image, target)
        return image, target

    def __repr__(self):
        inner = "".join(f"\n    {t!r}" for t in self.transforms)
        return f"Compose({inner}\n)"


# ---------------------------------------------------------------- conversion

class ToTensor:
    """Picture -> tensor image: an ``(H, W[, C])`` integer array or PIL image becomes a
    ``(C, H, W)`` float32 array in [0, 1] (uint8 divided by 255); a float ``(C, H, W)``
    image passes through as float32. The target's known keys get their batch dtypes
    (``boxes`` float32, ``labels`` int64, ``masks`` uint8, ``difficult`` bool)."""

    def __init__(self):
        self._to_tensor = _ImageToTensor()

    def __call__(self, image, target):
        if isinstance(image, Tensor):
            image = image.numpy()
        if isinstance(image, np.ndarray) and image.dtype.kind == "f":
            if image.ndim != 3:
                raise ValueError(f"ToTensor: a float image must be (C, H, W), got shape "
                                 f"{image.shape}")
            tensor = image.astype(np.float32, copy=False)
        else:
            tensor = self._to_tensor(image)
        target = _checked_target(target, tensor.shape[-2:], "ToTensor")
        for key, dtype in _TARGET_DTYPES.items():
            if key in target:
                target[key] = target[key].astype(dtype, copy=False)
        return tensor, target

    def __repr__(self):
        return "ToTensor()"


class Normalize:
    """``transforms.Normalize(mean, std)`` on a tensor image; the target is unchanged."""

    def __init__(self, mean, std):
        self.normalize = _ImageNormalize(mean, std)

    def __call__(self, image, target):
        return self.normalize(image), target

    def __repr__(self):
        return f"Normalize(mean={self.normalize.mean}, std={self.normalize.std})"


# ------------------------------------------------------------------ geometry

class RandomHorizontalFlip:
    """Mirror the image, its boxes and masks left-right, with probability ``p``:
    ``x1' = W - x2``, ``x2' = W - x1``."""

    def __init__(self, p=0.5):
        self.p = _probability(p, "RandomHorizontalFlip")

    def __call__(self, image, target):
        if current_generator().random() < self.p:
            return horizontal_flip(image, target)
        return image, target

    def __repr__(self):
        return f"RandomHorizontalFlip(p={self.p})"


class Resize:
    """Resize to ``size``: ``(h, w)`` exactly, or an int for the shorter side keeping the
    aspect ratio (the longer side ``int(size * long / short)``, at most ``max_size``), as
    ``transforms.Resize``. Boxes are multiplied by ``(W'/W, H'/H, W'/W, H'/H)``; the image
    is resampled bilinearly (antialiased when shrinking), masks with nearest neighbour."""

    def __init__(self, size, max_size=None, antialias=True):
        if isinstance(size, numbers.Number):
            if size <= 0:
                raise ValueError(f"Resize: size must be positive, got {size}")
            self.size = int(size)
        else:
            self.size = _size_pair(size, "Resize")
        if max_size is not None and not isinstance(self.size, int):
            raise ValueError("Resize: max_size is only allowed when size is an int (the "
                             "shorter side)")
        self.max_size, self.antialias = max_size, antialias

    def output_size(self, height, width):
        """``(H', W')`` for an ``H x W`` image."""
        if not isinstance(self.size, int):
            return self.size
        short, long = (height, width) if height <= width else (width, height)
        new_short, new_long = self.size, int(self.size * long / short)
        if self.max_size is not None and new_long > self.max_size:
            new_short, new_long = int(self.max_size * new_short / new_long), self.max_size
        return (new_short, new_long) if height <= width else (new_long, new_short)

    def __call__(self, image, target):
        h, w = _image_size(image, "Resize")
        return resize(image, target, self.output_size(h, w), self.antialias)

    def __repr__(self):
        return f"Resize(size={self.size}, max_size={self.max_size})"


class RandomIoUCrop:
    """SSD's random crop (Liu et al. 2016, section 2.2; torchvision's ``v2.RandomIoUCrop``
    with its draws and tests).

    Repeatedly: pick a minimum IoU from ``sampler_options`` (a value >= 1 means "leave
    the sample as it is"); then up to ``trials`` times draw a crop whose sides are
    ``int(W * r1)``, ``int(H * r2)`` with ``r`` uniform in ``[min_scale, max_scale]``,
    whose aspect ratio (width / height) lies in ``[min_aspect_ratio,
    max_aspect_ratio]``, at ``left = int((W - w) * u1)``, ``top = int((H - h) * u2)``; the
    crop is taken when some box has its centre strictly inside it and the largest IoU of
    those boxes with the crop reaches the minimum.

    The crop keeps the boxes whose centre lies inside it, shifted and clamped to it, with
    their labels and masks. NOTE: torchvision zeroes the other boxes and leaves their
    removal to a later ``SanitizeBoundingBoxes``; here they are removed at once (a kept
    box clamped to a thin sliver still wants ``SanitizeBoundingBoxes``). A sample
    without boxes is left as it is; so is one for which ``max_rounds`` picks of the
    minimum IoU found no crop (torchvision would keep trying forever).
    """

    def __init__(self, min_scale=0.3, max_scale=1.0, min_aspect_ratio=0.5,
                 max_aspect_ratio=2.0, sampler_options=None, trials=40, max_rounds=1000):
        if not 0 < min_scale <= max_scale <= 1:
            raise ValueError(f"RandomIoUCrop: need 0 < min_scale <= max_scale <= 1, got "
                             f"min_scale={min_scale}, max_scale={max_scale}")
        if not 0 < min_aspect_ratio <= max_aspect_ratio:
            raise ValueError(f"RandomIoUCrop: need 0 < min_aspect_ratio <= max_aspect_ratio, "
                             f"got {min_aspect_ratio}, {max_aspect_ratio}")
        options = [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0] if sampler_options is None \
            else [float(o) for o in sampler_options]
        if not options:
            raise ValueError("RandomIoUCrop: sampler_options must not be empty")
        self.min_scale, self.max_scale = float(min_scale), float(max_scale)
        self.min_aspect_ratio, self.max_aspect_ratio = float(min_aspect_ratio), \
            float(max_aspect_ratio)
        self.options, self.trials, self.max_rounds = options, int(trials), int(max_rounds)

    def get_params(self, size, boxes):
        """``None`` (leave the sample as it is) or ``dict(top, left, height, width,
        keep)`` with ``keep`` the (K,) bool mask of the boxes whose centre is inside."""
        orig_h, orig_w = size
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if len(boxes) == 0:
            return None
        rng = current_generator()
        cx, cy = 0.5 * (boxes[:, 0] + boxes[:, 2]), 0.5 * (boxes[:, 1] + boxes[:, 3])
        for _ in range(self.max_rounds):
            min_iou = self.options[int(rng.integers(0, len(self.options)))]
            if min_iou >= 1.0:
                return None
            for _ in range(self.trials):
                r = self.min_scale + (self.max_scale - self.min_scale) * rng.random(2)
                new_w, new_h = int(orig_w * r[0]), int(orig_h * r[1])
                if new_h == 0 or not (self.min_aspect_ratio <= new_w / new_h
                                      <= self.max_aspect_ratio):
                    continue
                u = rng.random(2)
                left, top = int((orig_w - new_w) * u[0]), int((orig_h - new_h) * u[1])
                right, bottom = left + new_w, top + new_h
                if left == right or top == bottom:
                    continue
                keep = (left < cx) & (cx < right) & (top < cy) & (cy < bottom)
                if not keep.any():
                    continue
                if _iou_with(boxes[keep], (left, top, right, bottom)).max() < min_iou:
                    continue
                return dict(top=top, left=left, height=new_h, width=new_w, keep=keep)
        return None

    def __call__(self, image, target):
        size = _image_size(image, "RandomIoUCrop")
        target = _checked_target(target, size, "RandomIoUCrop")
        params = self.get_params(size, target["boxes"])
        if params is None:
            return image, target
        target = _select(target, params["keep"])
        return crop(image, target, params["top"], params["left"], params["height"],
                    params["width"])

    def __repr__(self):
        return (f"RandomIoUCrop(min_scale={self.min_scale}, max_scale={self.max_scale}, "
                f"sampler_options={self.options})")


class RandomZoomOut:
    """SSD's "zoom out" (torchvision's ``v2.RandomZoomOut``): with probability ``p``,
    place the image on a canvas ``r`` times its size, ``r`` uniform in ``side_range``
    (canvas ``int(W * r) x int(H * r)``), at ``left = int((W' - W) * u1)``, ``top =
    int((H' - H) * u2)``; the rest is ``fill`` (a number or one per channel, in the
    image's units). Boxes move by ``(left, top)``; masks are padded with 0."""

    def __init__(self, fill=0, side_range=(1.0, 4.0), p=0.5):
        side_range = tuple(float(s) for s in side_range)
        if len(side_range) != 2 or side_range[0] < 1.0 or side_range[0] > side_range[1]:
            raise ValueError(f"RandomZoomOut: side_range must be (min, max) with 1 <= min <= "
                             f"max, got {side_range!r}")
        self.fill, self.side_range = fill, side_range
        self.p = _probability(p, "RandomZoomOut")

    def get_params(self, size):
        """``None`` (no zoom this time) or the padding ``(left, top, right, bottom)``."""
        rng = current_generator()
        if rng.random() >= self.p:
            return None
        orig_h, orig_w = size
        r = self.side_range[0] + rng.random() * (self.side_range[1] - self.side_range[0])
        canvas_w, canvas_h = int(orig_w * r), int(orig_h * r)
        u = rng.random(2)
        left, top = int((canvas_w - orig_w) * u[0]), int((canvas_h - orig_h) * u[1])
        return left, top, canvas_w - (left + orig_w), canvas_h - (top + orig_h)

    def __call__(self, image, target):
        padding = self.get_params(_image_size(image, "RandomZoomOut"))
        if padding is None:
            return image, target
        return pad(image, target, padding, self.fill)

    def __repr__(self):
        return f"RandomZoomOut(fill={self.fill}, side_range={self.side_range}, p={self.p})"


class RandomScaleTranslate:
    """YOLO's augmentation (Redmon et al. 2016, section 2.2): "random scaling and
    translations of up to 20% of the original image size", keeping the image size.

    The image is scaled about its centre by ``s`` uniform in ``[1 - scale, 1 + scale]``
    and shifted by ``(tx, ty)``, integers drawn as ``round(uniform(-translate * W,
    translate * W))`` (and ``H``): torchvision's ``v2.RandomAffine(degrees=0,
    translate=(translate, translate), scale=(1 - scale, 1 + scale))`` with its draws. A
    point moves to ``x' = (x - W/2) s + W/2 + tx`` (the same in y). Boxes are moved,
    then clamped to the image; a box of which less than ``min_visible`` of its moved area
    is left inside (or nothing at all) is dropped with its label and mask. Uncovered area
    gets ``fill``.
    """

    def __init__(self, scale=0.2, translate=0.2, fill=0, min_visible=0.25):
        if not 0 <= scale < 1:
            raise ValueError(f"RandomScaleTranslate: scale must lie in [0, 1), got {scale!r}")
        if not 0 <= translate <= 1:
            raise ValueError(f"RandomScaleTranslate: translate must lie in [0, 1], got "
                             f"{translate!r}")
        if not 0 <= min_visible <= 1:
            raise ValueError(f"RandomScaleTranslate: min_visible must lie in [0, 1], got "
                             f"{min_visible!r}")
        self.scale, self.translate = float(scale), float(translate)
        self.fill, self.min_visible = fill, float(min_visible)

    def get_params(self, size):
        """``(s, (tx, ty))``."""
        height, width = size
        rng = current_generator()
        s = float(rng.uniform(1.0 - self.scale, 1.0 + self.scale))
        max_dx, max_dy = self.translate * width, self.translate * height
        tx = int(round(float(rng.uniform(-max_dx, max_dx))))
        ty = int(round(float(rng.uniform(-max_dy, max_dy))))
        return s, (tx, ty)

    def __call__(self, image, target):
        size = _image_size(image, "RandomScaleTranslate")
        target = _checked_target(target, size, "RandomScaleTranslate")
        s, shift = self.get_params(size)
        moved = _scale_translate_boxes(target["boxes"], size, s, shift)
        image, target = scale_translate(image, target, s, shift, self.fill)
        clipped = target["boxes"]
        visible = _area(clipped)
        keep = (visible > 0) & (visible >= self.min_visible * _area(moved))
        return image, _select(target, keep)

    def __repr__(self):
        return (f"RandomScaleTranslate(scale={self.scale}, translate={self.translate}, "
                f"min_visible={self.min_visible})")


class SanitizeBoundingBoxes:
    """Drop degenerate boxes with their labels, masks and other per-box rows
    (torchvision's ``v2.SanitizeBoundingBoxes``): a box stays when its width and height
    are at least ``min_size``, its area at least ``min_area``, and it lies within the
    image (coordinates >= 0, ``x1, x2 <= W``, ``y1, y2 <= H``)."""

    def __init__(self, min_size=1.0, min_area=1.0):
        if min_size < 1:
            raise ValueError(f"SanitizeBoundingBoxes: min_size should be >= 1, got "
                             f"{min_size}")
        if min_area < 1:
            raise ValueError(f"SanitizeBoundingBoxes: min_area should be >= 1, got "
                             f"{min_area}")
        self.min_size, self.min_area = float(min_size), float(min_area)

    def __call__(self, image, target):
        h, w = _image_size(image, "SanitizeBoundingBoxes")
        target = _checked_target(target, (h, w), "SanitizeBoundingBoxes")
        b = target["boxes"]
        ws, hs = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        keep = (ws >= self.min_size) & (hs >= self.min_size) & (ws * hs >= self.min_area) \
            & (b >= 0).all(axis=1) & (b[:, 0] <= w) & (b[:, 2] <= w) \
            & (b[:, 1] <= h) & (b[:, 3] <= h)
        return image, _select(target, keep)

    def __repr__(self):
        return f"SanitizeBoundingBoxes(min_size={self.min_size}, min_area={self.min_area})"


# ------------------------------------------------------------------ colour

class RandomPhotometricDistort:
    """SSD's photometric distortions (torchvision's ``v2.RandomPhotometricDistort``,
    with its draws and order): each of brightness, contrast, saturation and hue is
    applied with probability ``p``, its factor uniform in its range; contrast goes
    before or after saturation and hue (even odds); then, with probability ``p``, the
    channels are permuted at random. Boxes and masks are untouched. The colour
    operations are ``imageops.adjust_*`` on values in [0, 1] (a uint8 picture is
    converted and rounded back)."""

    def __init__(self, brightness=(0.875, 1.125), contrast=(0.5, 1.5),
                 saturation=(0.5, 1.5), hue=(-0.05, 0.05), p=0.5):
        self.brightness = _interval(brightness, "brightness", 0.0, math.inf)
        self.contrast = _interval(contrast, "contrast", 0.0, math.inf)
        self.saturation = _interval(saturation, "saturation", 0.0, math.inf)
        self.hue = _interval(hue, "hue", -0.5, 0.5)
        self.p = _probability(p, "RandomPhotometricDistort")

    def get_params(self, num_channels):
        """``dict(brightness, contrast, saturation, hue, contrast_before, permutation)``;
        a factor is ``None`` when that distortion is skipped."""
        rng = current_generator()
        params = {}
        for key, (low, high) in (("brightness", self.brightness), ("contrast", self.contrast),
                                 ("saturation", self.saturation), ("hue", self.hue)):
            params[key] = float(rng.uniform(low, high)) if rng.random() < self.p else None
        params["contrast_before"] = bool(rng.random() < 0.5)
        params["permutation"] = rng.permutation(num_channels) if rng.random() < self.p \
            else None
        return params

    def __call__(self, image, target):
        chw, back = _layout(image, "RandomPhotometricDistort")
        params = self.get_params(chw.shape[0])
        x = _unit_float(chw)
        if params["brightness"] is not None:
            x = imageops.adjust_brightness(x, params["brightness"])
        if params["contrast"] is not None and params["contrast_before"]:
            x = imageops.adjust_contrast(x, params["contrast"])
        if params["saturation"] is not None:
            x = imageops.adjust_saturation(x, params["saturation"])
        if params["hue"] is not None:
            x = imageops.adjust_hue(x, params["hue"])
        if params["contrast"] is not None and not params["contrast_before"]:
            x = imageops.adjust_contrast(x, params["contrast"])
        if params["permutation"] is not None:
            x = x[params["permutation"]]
        return back(_like(x, chw)), target

    def __repr__(self):
        return (f"RandomPhotometricDistort(brightness={self.brightness}, contrast="
                f"{self.contrast}, saturation={self.saturation}, hue={self.hue}, p={self.p})")


class RandomHSV:
    """YOLO's colour jitter (Redmon et al. 2016, section 2.2: "randomly adjust the
    exposure and saturation of the image by up to a factor of 1.5 in the HSV colour
    space"), drawn as Darknet's ``rand_scale``: a factor uniform in ``[1, s]``, inverted
    with probability 1/2, so it lies in ``[1/s, s]`` and a factor and its inverse are
    equally likely. ``hue``: a hue shift uniform in ``[-hue, hue]`` turns (Darknet's
    ``hue``; 0, the paper's, by default). Applied by :func:`adjust_hsv`; boxes and masks
    are untouched."""

    def __init__(self, saturation=1.5, exposure=1.5, hue=0.0):
        for name, value in (("saturation", saturation), ("exposure", exposure)):
            if not isinstance(value, numbers.Real) or value < 1:
                raise ValueError(f"RandomHSV: {name} must be a number >= 1 (factors are "
                                 f"drawn in [1/{name}, {name}]), got {value!r}")
        if not isinstance(hue, numbers.Real) or not 0 <= hue <= 0.5:
            raise ValueError(f"RandomHSV: hue must lie in [0, 0.5] turns, got {hue!r}")
        self.saturation, self.exposure, self.hue = float(saturation), float(exposure), \
            float(hue)

    def get_params(self):
        """``(hue_shift, saturation_factor, exposure_factor)``, drawn in Darknet's order."""
        rng = current_generator()
        shift = float(rng.uniform(-self.hue, self.hue))

        def rand_scale(s):
            factor = float(rng.uniform(1.0, s))
            return factor if rng.random() < 0.5 else 1.0 / factor
        saturation = rand_scale(self.saturation)
        return shift, saturation, rand_scale(self.exposure)

    def __call__(self, image, target):
        shift, saturation, exposure = self.get_params()
        return adjust_hsv(image, saturation, exposure, shift), target

    def __repr__(self):
        return (f"RandomHSV(saturation={self.saturation}, exposure={self.exposure}, "
                f"hue={self.hue})")


# ------------------------------------------------------- functional core

def horizontal_flip(image, target):
    """Mirror left-right: the image, the masks, and the boxes (``x -> W - x``)."""
    chw, back = _layout(image, "horizontal_flip")
    target = _checked_target(target, chw.shape[-2:], "horizontal_flip")
    width = chw.shape[-1]
    boxes = target["boxes"]
    target["boxes"] = np.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0],
                                boxes[:, 3]], axis=1).astype(boxes.dtype)
    if "masks" in target:
        target["masks"] = target["masks"][..., ::-1].copy()
    return back(chw[..., ::-1].copy()), target


def resize(image, target, size, antialias=True):
    """Resize to ``size = (H', W')``; boxes times ``(W'/W, H'/H, W'/W, H'/H)``."""
    chw, back = _layout(image, "resize")
    target = _checked_target(target, chw.shape[-2:], "resize")
    (h, w), (new_h, new_w) = chw.shape[-2:], (int(size[0]), int(size[1]))
    ratios = np.array([new_w / w, new_h / h, new_w / w, new_h / h])
    target["boxes"] = (target["boxes"] * ratios).astype(target["boxes"].dtype)
    if "masks" in target:
        target["masks"] = imageops.resize(target["masks"], (new_h, new_w), NEAREST)
    return back(imageops.resize(chw, (new_h, new_w), BILINEAR, antialias)), target


def crop(image, target, top, left, height, width):
    """The ``height x width`` window at ``(top, left)`` (zeros where it leaves the image);
    boxes shifted by ``(-left, -top)`` and clamped to ``[0, width] x [0, height]``. Boxes
    are kept even when the clamping leaves them empty (see
    :class:`SanitizeBoundingBoxes`)."""
    chw, back = _layout(image, "crop")
    target = _checked_target(target, chw.shape[-2:], "crop")
    boxes = target["boxes"] - np.array([left, top, left, top], dtype=target["boxes"].dtype)
    target["boxes"] = _clamp(boxes, (height, width))
    if "masks" in target:
        target["masks"] = imageops.crop(target["masks"], top, left, height, width)
    return back(imageops.crop(chw, top, left, height, width)), target


def pad(image, target, padding, fill=0):
    """Pad by ``padding`` (an int, ``(left/right, top/bottom)`` or ``(left, top, right,
    bottom)``) with ``fill`` (a number or one per channel); boxes move by ``(left, top)``,
    masks are padded with 0."""
    chw, back = _layout(image, "pad")
    target = _checked_target(target, chw.shape[-2:], "pad")
    left, top, right, bottom = imageops._four_sides(padding)
    c, h, w = chw.shape
    fill = np.broadcast_to(np.asarray(fill, dtype=chw.dtype).reshape(-1, 1, 1), (c, 1, 1))
    out = np.empty((c, top + h + bottom, left + w + right), dtype=chw.dtype)
    out[...] = fill
    out[:, top:top + h, left:left + w] = chw
    boxes = target["boxes"] + np.array([left, top, left, top], dtype=target["boxes"].dtype)
    target["boxes"] = _clamp(boxes, out.shape[-2:])
    if "masks" in target:
        target["masks"] = imageops.pad(target["masks"], (left, top, right, bottom), 0)
    return back(out), target


def scale_translate(image, target, scale, translate, fill=0):
    """Scale by ``scale`` about the image centre, then shift by ``translate = (tx,
    ty)`` pixels, keeping the size: a point moves to ``x' = (x - W/2) scale + W/2 + tx``.
    The image is resampled bilinearly, the masks with nearest neighbour; boxes are
    moved, then clamped to the image (none is dropped here).

    NOTE: each output pixel is ``sum(w v) + (1 - sum(w)) fill`` over its in-image
    neighbours ``v``; torchvision's tensor ``affine`` multiplies the first term once more
    by ``sum(w)``, which darkens the one-pixel border an affine map draws in."""
    chw, back = _layout(image, "scale_translate")
    size = chw.shape[-2:]
    target = _checked_target(target, size, "scale_translate")
    if scale <= 0:
        raise ValueError(f"scale_translate: scale must be positive, got {scale}")
    (h, w), (tx, ty) = size, translate
    rows, cols = _inverse_coordinates(h, scale, ty), _inverse_coordinates(w, scale, tx)
    ay, ax = _bilinear_matrix(rows, h), _bilinear_matrix(cols, w)      # (H, H), (W, W)
    work = chw.astype(np.float64)
    out = ay @ work @ ax.T                                                # (C, H, W)
    coverage = np.outer(ay.sum(axis=1), ax.sum(axis=1))                  # (H, W)
    fill = np.asarray(fill, dtype=np.float64).reshape(-1, 1, 1)
    out = out + (1.0 - coverage) * fill
    target["boxes"] = _clamp(_scale_translate_boxes(target["boxes"], size, scale,
                                                    translate), size)
    if "masks" in target:
        ny, nx = _nearest_matrix(rows, h), _nearest_matrix(cols, w)
        moved = ny @ target["masks"].astype(np.float64) @ nx.T            # (K, H, W)
        target["masks"] = moved.astype(target["masks"].dtype)
    if chw.dtype.kind != "f":           # a picture: round back to its integer range
        info = np.iinfo(chw.dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    return back(out.astype(chw.dtype)), target


def adjust_hsv(image, saturation=1.0, exposure=1.0, hue_shift=0.0):
    """Darknet's ``distort_image``: in HSV (``imageops.rgb_to_hsv``), saturation and value
    multiplied by ``saturation`` and ``exposure``, hue shifted by ``hue_shift`` turns
    (modulo 1); back to RGB, clamped to [0, 1] (uint8 pictures converted and rounded
    back). Factors 1 and shift 0 give the image back. A one-channel image has only a
    value: it is multiplied by ``exposure``."""
    chw, back = _layout(image, "adjust_hsv")
    x = _unit_float(chw)
    if x.shape[0] == 1:
        out = x * exposure
    elif x.shape[0] == 3:
        hsv = imageops.rgb_to_hsv(x)
        hsv[0] = (hsv[0] + hue_shift) % 1.0
        hsv[1] = hsv[1] * saturation
        hsv[2] = hsv[2] * exposure
        out = imageops.hsv_to_rgb(hsv)
    else:
        raise ValueError(f"adjust_hsv: expected an RGB (3 channels) or grey (1 channel) "
                         f"image, got {x.shape[0]} channels")
    return back(_like(np.clip(out, 0.0, 1.0), chw))


# ------------------------------------------------------------------ collate

def detection_collate(samples):
    """Batch detection samples ``(image, target)`` (torchvision's references batch them
    with ``tuple(zip(*batch))``; here the arrays become Tensors).

    Returns ``(images, targets)``: ``images`` a Tensor ``(N, C, H, W)`` when every image
    has one shape, else a list of ``(C, H, W)`` Tensors; ``targets`` a list of dicts
    whose arrays are Tensors (``boxes`` float32, ``labels`` int64, ``masks`` uint8,
    ``difficult`` bool; other arrays keep their dtype, other values pass unchanged).
    Images must be tensor images already (``ToTensor()`` in the data set's transforms).
    """
    if isinstance(samples, (str, bytes)) or not isinstance(samples, collections.abc.Sequence):
        raise TypeError(f"detection_collate: expected a list of (image, target) samples, got "
                        f"{type(samples).__name__}")
    if len(samples) == 0:
        raise ValueError("detection_collate: received an empty batch")
    images, targets = [], []
    for i, sample in enumerate(samples):
        if not isinstance(sample, (tuple, list)) or len(sample) != 2:
            raise TypeError(f"detection_collate: sample {i} should be a pair (image, target), "
                            f"got {type(sample).__name__}"
                            + (f" of length {len(sample)}" if hasattr(sample, "__len__")
                               else ""))
        image, target = sample
        array = image.numpy() if isinstance(image, Tensor) else image
        if not isinstance(array, np.ndarray) or array.ndim != 3 or array.dtype.kind != "f":
            raise TypeError(f"detection_collate: the image of sample {i} should be a "
                            f"(C, H, W) float array or Tensor, got "
                            + (f"{array.dtype} of shape {array.shape}"
                               if isinstance(array, np.ndarray) else type(image).__name__)
                            + " (end the data set's transforms with ToTensor())")
        if not isinstance(target, collections.abc.Mapping):
            raise TypeError(f"detection_collate: the target of sample {i} should be a dict, "
                            f"got {type(target).__name__}")
        images.append(array)
        targets.append(_target_tensors(target, i))
    if all(a.shape == images[0].shape for a in images):
        batch = Tensor._wrap(np.stack(images))
    else:
        batch = [Tensor._wrap(a) for a in images]
    return batch, targets


def _target_tensors(target, index):
    out = {}
    for key, value in target.items():
        if isinstance(value, Tensor):
            value = value.numpy()
        if isinstance(value, np.ndarray) and value.dtype.kind not in "OUSV":
            if key in _TARGET_DTYPES:
                value = value.astype(_TARGET_DTYPES[key], copy=False)
            if key == "boxes":
                value = value.reshape(-1, 4) if value.size == 0 else value
                if value.ndim != 2 or value.shape[1] != 4:
                    raise ValueError(f"detection_collate: the boxes of sample {index} should "
                                     f"have shape (K, 4), got {value.shape}")
            value = Tensor._wrap(value)
        out[key] = value
    return out


# ------------------------------------------------------------------- helpers

def _layout(image, name):
    """``(chw, back)``: the image as a ``(C, H, W)`` NumPy array (a view where possible)
    and a function giving a ``(C, H, W)`` result back in the caller's layout and type."""
    is_tensor = isinstance(image, Tensor)
    array = image.numpy() if is_tensor else image
    if imageops.is_pil(array):
        array = np.asarray(array)
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{name}: the image must be an array or Tensor, got "
                        f"{type(image).__name__}")
    if array.ndim not in (2, 3):
        raise ValueError(f"{name}: the image must be an (H, W, C) picture or a (C, H, W) "
                         f"tensor image, got shape {array.shape}")
    if array.dtype.kind not in "iuf":
        raise TypeError(f"{name}: the image must hold integers (a picture) or floats (a "
                        f"tensor image), got {array.dtype}")
    if array.ndim == 2:
        chw, restore = array[None], lambda out: out[0]
    elif array.dtype.kind in "iu":                         # a picture (H, W, C)
        chw = array.transpose(2, 0, 1)
        restore = lambda out: np.ascontiguousarray(out.transpose(1, 2, 0))  # noqa: E731
    else:
        chw, restore = array, lambda out: out                              # noqa: E731
    if is_tensor:
        return chw, lambda out: Tensor(restore(out))
    return chw, restore


def _image_size(image, name):
    return _layout(image, name)[0].shape[-2:]


def _checked_target(target, size, name):
    """A shallow copy of ``target`` with ``boxes`` a float ``(K, 4)`` array and every
    per-box key holding K rows (``masks`` the image's size)."""
    if not isinstance(target, collections.abc.Mapping):
        raise TypeError(f"{name}: the target must be a dict with 'boxes', got "
                        f"{type(target).__name__}")
    if "boxes" not in target:
        raise KeyError(f"{name}: the target has no 'boxes' (keys: {sorted(target)})")
    out = {key: (value.numpy() if isinstance(value, Tensor) else value)
           for key, value in target.items()}
    boxes = np.asarray(out["boxes"])
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name}: boxes must have shape (K, 4), got {boxes.shape}")
    out["boxes"] = boxes if boxes.dtype.kind == "f" else boxes.astype(np.float32)
    for key in PER_BOX_KEYS[1:]:
        if key in out:
            out[key] = np.asarray(out[key])
            if len(out[key]) != len(boxes):
                raise ValueError(f"{name}: the target has {len(boxes)} boxes but "
                                 f"{len(out[key])} {key}")
    if "masks" in out and tuple(out["masks"].shape[1:]) != tuple(size):
        raise ValueError(f"{name}: the masks are {out['masks'].shape[1:]} (H, W) but the "
                         f"image is {tuple(size)}")
    return out


def _select(target, keep):
    """The target with only the rows ``keep`` of every per-box key."""
    return {key: (value[keep] if key in PER_BOX_KEYS else value)
            for key, value in target.items()}


def _clamp(boxes, size):
    """Clamp x to [0, W] and y to [0, H] (torchvision's ``clamp_bounding_boxes``)."""
    h, w = size
    out = boxes.copy()
    out[:, 0::2] = np.clip(out[:, 0::2], 0, w)
    out[:, 1::2] = np.clip(out[:, 1::2], 0, h)
    return out


def _area(boxes):
    return np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0)


def _iou_with(boxes, window):
    """IoU of each of ``boxes`` (K, 4) with one box ``window``."""
    x1, y1, x2, y2 = window
    iw = np.clip(np.minimum(boxes[:, 2], x2) - np.maximum(boxes[:, 0], x1), 0, None)
    ih = np.clip(np.minimum(boxes[:, 3], y2) - np.maximum(boxes[:, 1], y1), 0, None)
    inter = iw * ih
    return inter / (_area(boxes) + (x2 - x1) * (y2 - y1) - inter)


def _scale_translate_boxes(boxes, size, scale, translate):
    """``x' = (x - W/2) scale + W/2 + tx``, the same in y; not clamped."""
    h, w = size
    centre = np.array([w / 2, h / 2, w / 2, h / 2])
    shift = np.array([translate[0], translate[1], translate[0], translate[1]])
    return ((boxes - centre) * scale + centre + shift).astype(boxes.dtype)


def _inverse_coordinates(n, scale, shift):
    """For each output pixel along an axis of length ``n``, the input coordinate it
    samples, in pixel-index units (pixel ``j``'s centre at ``j``): output centre ``u +
    0.5`` came from ``(u + 0.5 - n/2 - shift) / scale + n/2``."""
    return (np.arange(n) + 0.5 - n / 2 - shift) / scale + n / 2 - 0.5


def _bilinear_matrix(coords, n):
    """``(len(coords), n)`` linear-interpolation weights; neighbours outside get none."""
    m = np.zeros((len(coords), n))
    low = np.floor(coords).astype(np.int64)
    frac = coords - low
    for index, weight in ((low, 1.0 - frac), (low + 1, frac)):
        inside = (index >= 0) & (index < n)
        np.add.at(m, (np.flatnonzero(inside), index[inside]), weight[inside])
    return m


def _nearest_matrix(coords, n):
    """``(len(coords), n)`` selection of the nearest input pixel (none when outside)."""
    m = np.zeros((len(coords), n))
    index = np.floor(coords + 0.5).astype(np.int64)
    inside = (index >= 0) & (index < n)
    m[np.flatnonzero(inside), index[inside]] = 1.0
    return m


def _unit_float(chw):
    """The image as float in [0, 1]: uint8 divided by 255, other integers by their
    maximum, floats as they are."""
    if chw.dtype.kind == "f":
        return chw
    return chw.astype(np.float32) / np.float32(np.iinfo(chw.dtype).max)


def _like(values, reference):
    """``values`` (floats, [0, 1] for integer references) in ``reference``'s dtype: an
    integer picture rounded and clipped back to its range."""
    if reference.dtype.kind == "f":
        return values.astype(reference.dtype, copy=False)
    top = np.iinfo(reference.dtype).max
    return np.clip(np.rint(values * top), 0, top).astype(reference.dtype)


def _probability(p, name):
    if not isinstance(p, numbers.Real) or isinstance(p, bool) or not 0 <= p <= 1:
        raise ValueError(f"{name}: p must be a probability in [0, 1], got {p!r}")
    return float(p)


def _interval(value, name, low, high):
    """A ``(min, max)`` pair within ``[low, high]``."""
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"RandomPhotometricDistort: {name} must be a pair (min, max), got "
                         f"{value!r}") from None
    if not low <= lo <= hi <= high:
        raise ValueError(f"RandomPhotometricDistort: {name} must satisfy {low} <= min <= max "
                         f"<= {high}, got {value!r}")
    return lo, hi
