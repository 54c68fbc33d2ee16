"""Transforms for segmentation: an image and its label mask moved together.

Every transform here is called as ``image, mask = t(image, mask)`` (torchvision's
``transforms=`` argument of a data set, and ``transforms.v2`` applied to an image and a
``tv_tensors.Mask``). One random draw serves both, so the mask stays aligned with the
image. Geometry is resampled bilinearly on the image and with nearest neighbour on the
mask (labels are never averaged); pixels that come from outside the image get ``fill``
in the image and ``mask_fill`` (255 by default, the ``ignore_index`` of VOC and
Cityscapes) in the mask. A typical pipeline::

    JointCompose([ToTensorPair(),                         # (H, W, C) uint8 -> (C, H, W) float
                  JointRandomCrop(64, padding=4),
                  JointRandomHorizontalFlip(),
                  JointNormalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])

``image`` is a tensor image: a ``(C, H, W)`` float array (or minicnn Tensor, given back as
one); ``mask`` an ``(H, W)`` integer array (or Tensor). :class:`ToTensorPair` makes them
from what the data sets read (``(H, W, C)`` uint8 arrays or PIL images).
"""
from __future__ import annotations

import numbers

import numpy as np

from ..autograd import Tensor
from . import imageops
from ._random import current_generator
from .elastic import ElasticTransform, elastic_transform
from .imageops import BILINEAR, NEAREST
from .transforms import Normalize, ToTensor
from .transforms import _pair as _size_pair    # int or (h, w) -> (h, w), both > 0

__all__ = ["JointCompose", "ToTensorPair", "JointNormalize", "ImageOnly",
           "JointRandomHorizontalFlip", "JointRandomVerticalFlip", "JointRandomCrop",
           "JointCenterCrop", "JointResize", "JointRandomRotation", "JointElasticTransform"]


# ---------------------------------------------------------------- containers

class JointCompose:
    """Apply joint transforms one after the other to ``(image, mask)``."""

    def __init__(self, transforms):
        self.transforms = list(transforms)
        for t in self.transforms:
            if not callable(t):
                raise TypeError(f"JointCompose: every transform must be callable, got "
                                f"{type(t).__name__}")

    def __call__(self, image, mask):
        for t in self.transforms:
            image, mask = t(image, mask)
        return image, mask

    def __repr__(self):
        inner = "".join(f"\n    {t!r}" for t in self.transforms)
        return f"JointCompose({inner}\n)"


class ImageOnly:
    """Apply an image transform (``ColorJitter``, ``Normalize``, ...) to the image of the
    pair and pass the mask through: photometric changes do not move labels."""

    def __init__(self, transform):
        if not callable(transform):
            raise TypeError(f"ImageOnly: transform must be callable, got "
                            f"{type(transform).__name__}")
        self.transform = transform

    def __call__(self, image, mask):
        return self.transform(image), mask

    def __repr__(self):
        return f"ImageOnly({self.transform!r})"


# ---------------------------------------------------------------- conversion

class ToTensorPair:
    """``(picture, mask)`` -> ``((C, H, W) float32 in [0, 1], (H, W) int64)``.

    The picture goes through ``transforms.ToTensor`` (a PIL image or an ``(H, W[, C])``
    array; uint8 divided by 255). The mask is a PIL image (palette or greyscale: its
    pixel values are the labels, never its colours) or an ``(H, W)`` integer array.
    """

    def __init__(self):
        self._to_tensor = ToTensor()

    def __call__(self, image, mask):
        tensor = self._to_tensor(image)
        labels = _mask_to_array(mask)
        if tensor.shape[-2:] != labels.shape:
            raise ValueError(f"ToTensorPair: the image is {tensor.shape[-2]}x"
                             f"{tensor.shape[-1]} (H x W) but the mask is {labels.shape[0]}x"
                             f"{labels.shape[1]}")
        return tensor, labels

    def __repr__(self):
        return "ToTensorPair()"


class JointNormalize:
    """``transforms.Normalize(mean, std)`` on the image; the mask is left as it is."""

    def __init__(self, mean, std):
        self.normalize = Normalize(mean, std)

    def __call__(self, image, mask):
        return self.normalize(image), mask

    def __repr__(self):
        return f"JointNormalize(mean={self.normalize.mean}, std={self.normalize.std})"


# ------------------------------------------------------------------ geometry

class JointRandomHorizontalFlip:
    """Mirror image and mask left-right together, with probability ``p``."""

    def __init__(self, p=0.5):
        self.p = _probability(p, "JointRandomHorizontalFlip")

    def __call__(self, image, mask):
        (img, mk), back = _pair(image, mask, "JointRandomHorizontalFlip")
        if current_generator().random() < self.p:
            img, mk = imageops.hflip(img), imageops.hflip(mk)
        return back(img, mk)

    def __repr__(self):
        return f"JointRandomHorizontalFlip(p={self.p})"


class JointRandomVerticalFlip:
    """Mirror image and mask top-bottom together, with probability ``p``."""

    def __init__(self, p=0.5):
        self.p = _probability(p, "JointRandomVerticalFlip")

    def __call__(self, image, mask):
        (img, mk), back = _pair(image, mask, "JointRandomVerticalFlip")
        if current_generator().random() < self.p:
            img, mk = img[..., ::-1, :].copy(), mk[..., ::-1, :].copy()
        return back(img, mk)

    def __repr__(self):
        return f"JointRandomVerticalFlip(p={self.p})"


class JointRandomCrop:
    """Pad both by ``padding`` (an int, ``(left/right, top/bottom)`` or ``(left, top,
    right, bottom)``), the image with ``fill`` and the mask with ``mask_fill``; then cut
    the same ``size`` window from both at a uniformly random position.
    ``pad_if_needed`` pads an image smaller than ``size`` on both sides by the shortfall
    first (as ``transforms.RandomCrop``)."""

    def __init__(self, size, padding=None, pad_if_needed=False, fill=0, mask_fill=255):
        self.size = _size_pair(size, "JointRandomCrop")
        self.padding, self.pad_if_needed = padding, pad_if_needed
        self.fill, self.mask_fill = fill, mask_fill
        if padding is not None:
            try:                                   # refuse a bad padding now, not per sample
                imageops._four_sides(padding)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"JointRandomCrop: {exc}") from None

    def __call__(self, image, mask):
        (img, mk), back = _pair(image, mask, "JointRandomCrop")
        if self.padding is not None:
            img = imageops.pad(img, self.padding, self.fill)
            mk = imageops.pad(mk, self.padding, self.mask_fill)
        th, tw = self.size
        h, w = mk.shape
        if self.pad_if_needed and (h < th or w < tw):
            grow = (max(0, tw - w), max(0, th - h))
            img, mk = imageops.pad(img, grow, self.fill), imageops.pad(mk, grow, self.mask_fill)
            h, w = mk.shape
        if h < th or w < tw:
            raise ValueError(f"JointRandomCrop: required crop size {(th, tw)} is larger than "
                             f"the (padded) image size {(h, w)}")
        rng = current_generator()
        top, left = int(rng.integers(0, h - th + 1)), int(rng.integers(0, w - tw + 1))
        return back(img[..., top:top + th, left:left + tw].copy(),
                    mk[top:top + th, left:left + tw].copy())

    def __repr__(self):
        return f"JointRandomCrop(size={self.size}, padding={self.padding})"


class JointCenterCrop:
    """The central ``size`` window of both (zero-padded image, ``mask_fill``-padded mask
    where the crop is larger than the image)."""

    def __init__(self, size, mask_fill=255):
        self.size, self.mask_fill = _size_pair(size, "JointCenterCrop"), mask_fill

    def __call__(self, image, mask):
        (img, mk), back = _pair(image, mask, "JointCenterCrop")
        th, tw = self.size
        h, w = mk.shape
        # torchvision's offsets (Python round, half to even), as imageops.center_crop
        top, left = int(round((h - th) / 2.0)), int(round((w - tw) / 2.0))
        return back(_crop(img, top, left, th, tw, 0), _crop(mk, top, left, th, tw,
                                                             self.mask_fill))

    def __repr__(self):
        return f"JointCenterCrop(size={self.size})"


class JointResize:
    """Resize both to ``size``: ``(h, w)`` exactly, or an int for the shorter side keeping
    the aspect ratio (as ``transforms.Resize``). The image bilinearly (antialiased when
    shrinking), the mask with nearest neighbour (PIL's pixel choice), so it keeps its
    labels."""

    def __init__(self, size, antialias=True):
        if isinstance(size, numbers.Number):
            if size <= 0:
                raise ValueError(f"JointResize: size must be positive, got {size}")
            self.size = int(size)
        else:
            self.size = _size_pair(size, "JointResize")
        self.antialias = antialias

    def __call__(self, image, mask):
        (img, mk), back = _pair(image, mask, "JointResize")
        h, w = mk.shape
        if isinstance(self.size, int):
            if h <= w:
                size = (self.size, int(self.size * w / h))
            else:
                size = (int(self.size * h / w), self.size)
        else:
            size = self.size
        return back(imageops.resize(img, size, BILINEAR, self.antialias),
                    imageops.resize(mk, size, NEAREST))

    def __repr__(self):
        return f"JointResize(size={self.size})"


class JointRandomRotation:
    """Rotate both by one angle drawn uniformly from ``degrees`` (``d`` means ``(-d, d)``),
    counter-clockwise for positive angles, about the centre, keeping the size: the image
    bilinearly with ``fill`` in the corners, the mask with nearest neighbour and
    ``mask_fill``."""

    def __init__(self, degrees, fill=0, mask_fill=255):
        if isinstance(degrees, numbers.Number):
            if degrees < 0:
                raise ValueError(f"JointRandomRotation: if degrees is a single number, it "
                                 f"must be non-negative, got {degrees}")
            degrees = (-degrees, degrees)
        self.degrees = tuple(float(d) for d in degrees)
        if len(self.degrees) != 2 or self.degrees[0] > self.degrees[1]:
            raise ValueError(f"JointRandomRotation: degrees must be a number or a pair "
                             f"(min, max), got {degrees!r}")
        self.fill, self.mask_fill = fill, mask_fill

    def __call__(self, image, mask):
        (img, mk), back = _pair(image, mask, "JointRandomRotation")
        angle = float(current_generator().uniform(*self.degrees))
        return back(imageops.rotate(img, angle, BILINEAR, fill=self.fill),
                    imageops.rotate(mk, angle, NEAREST, fill=self.mask_fill))

    def __repr__(self):
        return f"JointRandomRotation(degrees={self.degrees})"


class JointElasticTransform:
    """One elastic deformation for both (see ``elastic.ElasticTransform``): the image
    bilinearly with ``fill`` outside, the mask with nearest neighbour and ``mask_fill``.
    ``mode="torchvision"`` uses ``alpha`` and ``sigma`` as torchvision's
    ``ElasticTransform``; ``mode="unet"`` draws the U-Net paper's coarse-grid field
    (``sigma`` pixels on a ``grid_size x grid_size`` grid, bicubic)."""

    def __init__(self, alpha=50.0, sigma=5.0, fill=0, mask_fill=255, mode="torchvision",
                 grid_size=3):
        self.elastic = ElasticTransform(alpha, sigma, BILINEAR, fill, mode, grid_size)
        self.fill, self.mask_fill = fill, mask_fill

    def __call__(self, image, mask):
        (img, mk), back = _pair(image, mask, "JointElasticTransform")
        displacement = self.elastic.get_params(mk.shape)
        return back(elastic_transform(img, displacement, BILINEAR, self.fill),
                    elastic_transform(mk, displacement, NEAREST, self.mask_fill))

    def __repr__(self):
        return f"Joint{self.elastic!r}"


# ------------------------------------------------------------------- helpers

def _pair(image, mask, name):
    """``((image array, mask array), give_back)``: NumPy views of the pair, checked to be a
    ``(C, H, W)`` / ``(H, W)`` tensor image and an integer mask of the same size, and a
    function returning results in the types given (Tensor in, Tensor out)."""
    image_is_tensor, mask_is_tensor = isinstance(image, Tensor), isinstance(mask, Tensor)
    img = image.numpy() if image_is_tensor else image
    mk = mask.numpy() if mask_is_tensor else mask
    for what, value in (("image", img), ("mask", mk)):
        if imageops.is_pil(value):
            raise TypeError(f"{name}: got a PIL {what}; joint transforms work on arrays -- "
                            "put ToTensorPair() first")
        if not isinstance(value, np.ndarray):
            raise TypeError(f"{name}: the {what} must be an array or Tensor, got "
                            f"{type(value).__name__}")
    if img.ndim not in (2, 3):
        raise ValueError(f"{name}: the image must be (C, H, W) or (H, W), got shape "
                         f"{img.shape}")
    if img.dtype == np.uint8 and img.ndim == 3 and img.shape[-1] in (1, 3, 4) \
            and img.shape[0] not in (1, 3, 4):
        raise TypeError(f"{name}: got a {img.shape} uint8 image, which looks like an "
                        "(H, W, C) picture; joint transforms work on (C, H, W) tensor "
                        "images -- put ToTensorPair() first")
    if mk.ndim != 2 or mk.dtype.kind not in "iub":
        raise ValueError(f"{name}: the mask must be an (H, W) integer array, got "
                         f"{mk.dtype} of shape {mk.shape}")
    if img.shape[-2:] != mk.shape:
        raise ValueError(f"{name}: the image is {img.shape[-2]}x{img.shape[-1]} (H x W) but "
                         f"the mask is {mk.shape[0]}x{mk.shape[1]}")

    def back(new_img, new_mask):
        return (Tensor(new_img) if image_is_tensor else new_img,
                Tensor(new_mask) if mask_is_tensor else new_mask)
    return (img, mk), back


def _crop(array, top, left, height, width, fill):
    """The ``height x width`` window at ``(top, left)``, ``fill`` where it leaves the array."""
    h, w = array.shape[-2:]
    sides = (max(0, -left), max(0, -top), max(0, left + width - w), max(0, top + height - h))
    if any(sides):
        array = imageops.pad(array, sides, fill)
        top, left = top + sides[1], left + sides[0]
    return array[..., top:top + height, left:left + width].copy()


def _mask_to_array(mask):
    if imageops.is_pil(mask):
        if mask.mode not in ("P", "L", "I", "I;16", "1"):
            raise ValueError(f"ToTensorPair: a mask image must hold labels (mode 'P', 'L', "
                             f"'I' or 'I;16'), got mode {mask.mode!r}: an RGB mask holds "
                             "colours, not class indices")
        return np.asarray(mask).astype(np.int64)
    if isinstance(mask, Tensor):
        mask = mask.numpy()
    if not isinstance(mask, np.ndarray):
        raise TypeError(f"ToTensorPair: mask must be a PIL image or an (H, W) integer array, "
                        f"got {type(mask).__name__}")
    if mask.ndim != 2 or mask.dtype.kind not in "iub":
        raise ValueError(f"ToTensorPair: mask must be an (H, W) integer array, got "
                         f"{mask.dtype} of shape {mask.shape}")
    return mask.astype(np.int64)


def _probability(p, name):
    if not isinstance(p, numbers.Real) or not 0 <= p <= 1:
        raise ValueError(f"{name}: p must be a probability in [0, 1], got {p!r}")
    return float(p)

