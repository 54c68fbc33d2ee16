"""Transforms and data augmentation, with torchvision's names and parameter names.

A *tensor image* here is a NumPy array ``(C, H, W)``, float in [0, 1] after
:class:`ToTensor` (a minicnn Tensor is accepted too and given back as one). Geometric
transforms also accept PIL images. The usual pipeline::

    transform = Compose([RandomCrop(28, padding=2), ToTensor(), Normalize((0.5,), (0.5,))])

Random transforms draw from ``minicnn.data._random.current_generator()``: minicnn's seeded
generator (``minicnn.manual_seed``), or inside a DataLoader a generator of the batch's own
(see ``dataloader.py``), so augmentation is reproducible.

:class:`MixUp` and :class:`CutMix` work on a whole batch ``(images, labels)`` and return
soft targets ``(N, num_classes)`` for ``cross_entropy`` with class-probability targets.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .. import backend
from ..autograd import Tensor
from . import imageops
from ._random import current_generator
from .imageops import BILINEAR, NEAREST

__all__ = ["Compose", "Lambda", "ToTensor", "Normalize", "Resize", "CenterCrop", "RandomCrop",
           "RandomHorizontalFlip", "RandomRotation", "RandomResizedCrop", "ColorJitter",
           "Lighting", "RandomErasing", "MixUp", "CutMix", "InterpolationMode",
           "IMAGENET_PCA"]


class InterpolationMode:
    """torchvision's interpolation names (plain strings here)."""
    NEAREST = NEAREST
    BILINEAR = BILINEAR


# ------------------------------------------------------------------- helpers

def _as_array(img, name):
    """``(array, give_back)``: the image as a NumPy array and a function that returns a
    result in the caller's type (Tensor in, Tensor out)."""
    if isinstance(img, Tensor):
        return img.numpy(), Tensor
    if isinstance(img, np.ndarray):
        _refuse_hwc(img, name)
        return img, lambda a: a
    if imageops.is_pil(img):
        raise TypeError(f"{name}: expects a tensor image (a (C, H, W) array); got a PIL "
                        "image -- put ToTensor() before it")
    raise TypeError(f"{name}: expects a tensor image (a (C, H, W) array), got "
                    f"{type(img).__name__}")


def _geometric_input(img, name):
    """Like :func:`_as_array`, but a PIL image passes through unchanged."""
    if imageops.is_pil(img):
        return img, lambda a: a
    array, back = _as_array(img, name)
    if array.ndim < 2:
        raise ValueError(f"{name}: expected an image of shape (C, H, W), got {array.shape}")
    return array, back


def _refuse_hwc(array, name):
    # NOTE: data sets give raw pictures as (H, W, C) uint8, like PIL; cropping or flipping
    # those as (C, H, W) would silently act on the wrong axes.
    if array.dtype == np.uint8 and array.ndim == 3 and array.shape[-1] in (1, 3, 4) \
            and array.shape[0] not in (1, 3, 4):
        raise TypeError(f"{name}: got a {array.shape} uint8 array, which looks like an "
                        "(H, W, C) picture; transforms work on (C, H, W) tensor images -- "
                        "put ToTensor() first")


def _pair(value, name, what="size"):
    """An int or a 1- or 2-sequence -> ``(h, w)``."""
    if isinstance(value, numbers.Number):
        value = (int(value), int(value))
    value = tuple(int(v) for v in value)
    if len(value) == 1:
        value = value * 2
    if len(value) != 2 or min(value) <= 0:
        raise ValueError(f"{name}: {what} must be a positive int or a sequence (h, w), got "
                         f"{value!r}")
    return value


def _range(value, name, center=1.0, bound=(0.0, math.inf)):
    """ColorJitter's parameter form: ``v`` -> ``[center - v, center + v]`` clipped to
    ``bound``, or an explicit ``(min, max)``. ``None`` when the range is a single point."""
    if isinstance(value, numbers.Number):
        if value < 0:
            raise ValueError(f"ColorJitter: if {name} is a single number, it must be "
                             f"non-negative, got {value}")
        value = (max(center - value, bound[0]), center + value)
    else:
        value = tuple(float(v) for v in value)
        if len(value) != 2 or not bound[0] <= value[0] <= value[1] <= bound[1]:
            raise ValueError(f"ColorJitter: {name} values should be between {bound}, got "
                             f"{value!r}")
    return None if value[0] == value[1] == center else value


def _uniform(low, high):
    return float(current_generator().uniform(low, high))


def _randint(low, high):
    """An integer in ``[low, high)``."""
    return int(current_generator().integers(low, high))


# ---------------------------------------------------------------- containers

class Compose:
    """Apply transforms one after the other."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, img):
        for t in self.transforms:
            img = t(img)
        return img

    def __repr__(self):
        inner = "".join(f"\n    {t!r}" for t in self.transforms)
        return f"Compose({inner}\n)"


class Lambda:
    """A user function as a transform."""

    def __init__(self, lambd):
        if not callable(lambd):
            raise TypeError(f"Lambda: argument should be callable, got {type(lambd).__name__}")
        self.lambd = lambd

    def __call__(self, img):
        return self.lambd(img)


# ---------------------------------------------------------------- conversion

class ToTensor:
    """PIL image or ``(H, W[, C])`` uint8 array -> ``(C, H, W)`` float32 array in [0, 1].

    Integer images are divided by 255 (uint8) or by their dtype's maximum; float arrays
    are only transposed, as in torchvision. The result is a NumPy array; the DataLoader's
    collate stacks a batch of them into one minicnn Tensor.
    """

    def __call__(self, pic):
        if imageops.is_pil(pic):
            if pic.mode not in ("L", "RGB", "RGBA", "I;16", "I", "F", "1"):
                pic = pic.convert("RGB")
            array = np.asarray(pic)
            if pic.mode == "1":
                array = array.astype(np.uint8) * 255
        elif isinstance(pic, np.ndarray):
            array = pic
        else:
            raise TypeError(f"ToTensor: pic should be a PIL image or an ndarray, got "
                            f"{type(pic).__name__}")
        if array.ndim == 2:
            array = array[:, :, None]                    # (H, W) -> (H, W, 1)
        if array.ndim != 3:
            raise ValueError(f"ToTensor: expected an image of shape (H, W) or (H, W, C), got "
                             f"{array.shape}")
        chw = np.ascontiguousarray(array.transpose(2, 0, 1))     # (C, H, W)
        if chw.dtype == np.uint8:
            return chw.astype(np.float32) / np.float32(255)
        if chw.dtype.kind in "iu":
            return (chw.astype(np.float64) / np.iinfo(chw.dtype).max).astype(np.float32)
        if chw.dtype == np.bool_:
            return chw.astype(np.float32)
        return chw

    def __repr__(self):
        return "ToTensor()"


class Normalize:
    """``(img[c] - mean[c]) / std[c]`` for each channel ``c``."""

    def __init__(self, mean, std, inplace=False):
        self.mean = tuple(float(m) for m in np.atleast_1d(mean))
        self.std = tuple(float(s) for s in np.atleast_1d(std))
        if any(s == 0 for s in self.std):
            raise ValueError(f"Normalize: std evaluated to zero after conversion to float "
                             f"({self.std}), leading to division by zero")
        self.inplace = inplace

    def __call__(self, img):
        array, back = _as_array(img, "Normalize")
        if array.dtype.kind != "f":
            raise TypeError(f"Normalize: input should be a float image, got {array.dtype} "
                            "(apply ToTensor() first)")
        channels = array.shape[-3] if array.ndim >= 3 else None
        for name, values in (("mean", self.mean), ("std", self.std)):
            if len(values) not in (1, channels):
                raise ValueError(f"Normalize: {name} has {len(values)} values but the image "
                                 f"has {channels} channels (shape {array.shape})")
        mean = np.asarray(self.mean, dtype=array.dtype).reshape(-1, 1, 1)
        std = np.asarray(self.std, dtype=array.dtype).reshape(-1, 1, 1)
        if self.inplace:
            array -= mean
            array /= std
            return back(array)
        return back((array - mean) / std)

    def __repr__(self):
        return f"Normalize(mean={self.mean}, std={self.std})"


# ----------------------------------------------------------------- geometry

class Resize:
    """Resize to ``size``: an int scales the *shorter* side to it keeping the aspect
    ratio; ``(h, w)`` is exact. Bilinear with antialiasing, as torchvision's default."""

    def __init__(self, size, interpolation=BILINEAR, max_size=None, antialias=True):
        if isinstance(size, numbers.Number):
            if size <= 0:
                raise ValueError(f"Resize: size must be positive, got {size}")
            self.size = int(size)
        else:
            self.size = _pair(size, "Resize")
        self.interpolation, self.max_size, self.antialias = interpolation, max_size, antialias

    def __call__(self, img):
        img, back = _geometric_input(img, "Resize")
        h, w = imageops.image_size(img)
        if isinstance(self.size, int):
            short, long = (h, w) if h <= w else (w, h)
            new_short, new_long = self.size, int(self.size * long / short)
            if self.max_size is not None and new_long > self.max_size:
                new_short, new_long = int(self.max_size * new_short / new_long), self.max_size
            size = (new_short, new_long) if h <= w else (new_long, new_short)
        else:
            size = self.size
        return back(imageops.resize(img, size, self.interpolation, self.antialias))

    def __repr__(self):
        return f"Resize(size={self.size}, interpolation={self.interpolation})"


class CenterCrop:
    """The central ``size`` window (zero-padded if the image is smaller)."""

    def __init__(self, size):
        self.size = _pair(size, "CenterCrop")

    def __call__(self, img):
        img, back = _geometric_input(img, "CenterCrop")
        return back(imageops.center_crop(img, self.size))

    def __repr__(self):
        return f"CenterCrop(size={self.size})"


class RandomCrop:
    """Pad by ``padding`` (``(left, top, right, bottom)`` order for 4 values), then cut a
    ``size`` window at a uniformly random position. ``pad_if_needed`` pads an image
    smaller than ``size`` first."""

    def __init__(self, size, padding=None, pad_if_needed=False, fill=0,
                 padding_mode="constant"):
        self.size = _pair(size, "RandomCrop")
        self.padding, self.pad_if_needed = padding, pad_if_needed
        self.fill, self.padding_mode = fill, padding_mode

    def __call__(self, img):
        img, back = _geometric_input(img, "RandomCrop")
        if self.padding is not None:
            img = imageops.pad(img, self.padding, self.fill, self.padding_mode)
        th, tw = self.size
        h, w = imageops.image_size(img)
        if self.pad_if_needed and (h < th or w < tw):
            img = imageops.pad(img, (max(0, tw - w), max(0, th - h)), self.fill,
                               self.padding_mode)
            h, w = imageops.image_size(img)
        if h < th or w < tw:
            raise ValueError(f"RandomCrop: required crop size {(th, tw)} is larger than the "
                             f"(padded) image size {(h, w)}")
        top, left = _randint(0, h - th + 1), _randint(0, w - tw + 1)
        return back(imageops.crop(img, top, left, th, tw))

    def __repr__(self):
        return f"RandomCrop(size={self.size}, padding={self.padding})"


class RandomHorizontalFlip:
    """Mirror left-right with probability ``p``."""

    def __init__(self, p=0.5):
        self.p = p

    def __call__(self, img):
        img, back = _geometric_input(img, "RandomHorizontalFlip")
        if current_generator().random() < self.p:
            return back(imageops.hflip(img))
        return back(img)

    def __repr__(self):
        return f"RandomHorizontalFlip(p={self.p})"


class RandomRotation:
    """Rotate by an angle drawn uniformly from ``degrees`` (``d`` means ``(-d, d)``),
    counter-clockwise for positive angles, keeping the size; corners get ``fill``."""

    def __init__(self, degrees, interpolation=NEAREST, expand=False, center=None, fill=0):
        if isinstance(degrees, numbers.Number):
            if degrees < 0:
                raise ValueError(f"RandomRotation: if degrees is a single number, it must be "
                                 f"positive, got {degrees}")
            degrees = (-degrees, degrees)
        self.degrees = tuple(float(d) for d in degrees)
        if len(self.degrees) != 2:
            raise ValueError(f"RandomRotation: degrees should be a number or a pair, got "
                             f"{degrees!r}")
        if expand:
            raise ValueError("RandomRotation: expand=True is not supported (the image keeps "
                             "its size)")
        self.interpolation, self.expand, self.center, self.fill = \
            interpolation, expand, center, fill

    def __call__(self, img):
        img, back = _geometric_input(img, "RandomRotation")
        angle = _uniform(*self.degrees)
        return back(imageops.rotate(img, angle, self.interpolation, self.center, self.fill))

    def __repr__(self):
        return f"RandomRotation(degrees={self.degrees}, interpolation={self.interpolation})"


class RandomResizedCrop:
    """Cut a random window covering a ``scale`` fraction of the area with an aspect ratio
    (width / height) in ``ratio`` (log-uniform), and resize it to ``size`` (the
    Inception-style crop). After 10 failed draws, falls back to a central crop."""

    def __init__(self, size, scale=(0.08, 1.0), ratio=(3.0 / 4.0, 4.0 / 3.0),
                 interpolation=BILINEAR, antialias=True):
        self.size = _pair(size, "RandomResizedCrop")
        if scale[0] > scale[1] or ratio[0] > ratio[1]:
            raise ValueError(f"RandomResizedCrop: scale and ratio should be of kind (min, max), "
                             f"got scale={scale}, ratio={ratio}")
        self.scale, self.ratio = tuple(scale), tuple(ratio)
        self.interpolation, self.antialias = interpolation, antialias

    def get_params(self, img):
        """``(top, left, height, width)`` of the window to cut."""
        h, w = imageops.image_size(img)
        area = h * w
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target_area = area * _uniform(*self.scale)
            aspect = math.exp(_uniform(*log_ratio))
            cw = int(round(math.sqrt(target_area * aspect)))
            ch = int(round(math.sqrt(target_area / aspect)))
            if 0 < cw <= w and 0 < ch <= h:
                return _randint(0, h - ch + 1), _randint(0, w - cw + 1), ch, cw
        # fallback: the largest central window whose aspect ratio is within bounds
        aspect = w / h
        if aspect < self.ratio[0]:
            cw, ch = w, int(round(w / self.ratio[0]))
        elif aspect > self.ratio[1]:
            ch, cw = h, int(round(h * self.ratio[1]))
        else:
            ch, cw = h, w
        return (h - ch) // 2, (w - cw) // 2, ch, cw

    def __call__(self, img):
        img, back = _geometric_input(img, "RandomResizedCrop")
        top, left, ch, cw = self.get_params(img)
        window = imageops.crop(img, top, left, ch, cw)
        return back(imageops.resize(window, self.size, self.interpolation, self.antialias))

    def __repr__(self):
        return f"RandomResizedCrop(size={self.size}, scale={self.scale}, ratio={self.ratio})"


# ------------------------------------------------------------------ colour

class ColorJitter:
    """Random brightness, contrast, saturation and hue changes, in a random order.

    A number ``b`` for brightness/contrast/saturation means a factor drawn uniformly from
    ``[max(0, 1 - b), 1 + b]``; ``hue = h`` means a hue shift in ``[-h, h]`` turns
    (``0 <= h <= 0.5``). A ``(min, max)`` pair gives the range directly. Input: a
    ``(C, H, W)`` float image in [0, 1] with 1 or 3 channels (saturation and hue leave a
    one-channel image unchanged).
    """

    def __init__(self, brightness=0, contrast=0, saturation=0, hue=0):
        self.brightness = _range(brightness, "brightness")
        self.contrast = _range(contrast, "contrast")
        self.saturation = _range(saturation, "saturation")
        self.hue = _range(hue, "hue", center=0.0, bound=(-0.5, 0.5))

    def __call__(self, img):
        array, back = _as_array(img, "ColorJitter")
        if array.dtype.kind != "f" or array.ndim < 3 or array.shape[-3] not in (1, 3):
            raise TypeError(f"ColorJitter: expects a float (C, H, W) image with 1 or 3 "
                            f"channels (apply ToTensor() first), got {array.dtype} "
                            f"{array.shape}")
        rng = current_generator()
        order = rng.permutation(4)
        factors = [None if r is None else float(rng.uniform(*r))
                   for r in (self.brightness, self.contrast, self.saturation, self.hue)]
        ops = (imageops.adjust_brightness, imageops.adjust_contrast,
               imageops.adjust_saturation, imageops.adjust_hue)
        for k in order:
            if factors[k] is not None:
                array = ops[k](array, factors[k])
        return back(array)

    def __repr__(self):
        return (f"ColorJitter(brightness={self.brightness}, contrast={self.contrast}, "
                f"saturation={self.saturation}, hue={self.hue})")


# The eigen-decomposition of the RGB pixel covariance of ImageNet (pixels in [0, 1]),
# as used for AlexNet-style lighting noise by fb.resnet.torch and many others since.
IMAGENET_PCA = {
    "eigval": (0.2175, 0.0188, 0.0045),
    "eigvec": ((-0.5675, 0.7192, 0.4009),
               (-0.5808, -0.0045, -0.8140),
               (-0.5836, -0.6948, 0.4203)),
}


class Lighting:
    """AlexNet's PCA lighting noise (Krizhevsky et al. 2012, section 4.1).

    To every pixel of an RGB image add the same colour ``eigvec @ (alpha * eigval)``,
    with ``alpha ~ N(0, alphastd^2)`` drawn per image (three values): an intensity and
    colour shift along the principal components of natural pixel colours. ``eigvec``
    columns are the eigenvectors (``(3, 3)``), ``eigval`` their eigenvalues; by default
    ImageNet's (:data:`IMAGENET_PCA`). The paper used ``alphastd = 0.1``.
    """

    def __init__(self, alphastd, eigval=None, eigvec=None):
        self.alphastd = float(alphastd)
        self.eigval = np.asarray(IMAGENET_PCA["eigval"] if eigval is None else eigval,
                                 dtype=np.float64)
        self.eigvec = np.asarray(IMAGENET_PCA["eigvec"] if eigvec is None else eigvec,
                                 dtype=np.float64)
        k = self.eigval.shape[0]
        if self.eigval.ndim != 1 or self.eigvec.shape != (k, k):
            raise ValueError(f"Lighting: eigval must have shape (C,) and eigvec (C, C), got "
                             f"{self.eigval.shape} and {self.eigvec.shape}")

    def __call__(self, img):
        array, back = _as_array(img, "Lighting")
        if array.ndim < 3 or array.shape[-3] != self.eigval.shape[0]:
            raise ValueError(f"Lighting: expects a ({self.eigval.shape[0]}, H, W) image, got "
                             f"shape {array.shape}")
        if self.alphastd == 0:
            return back(array.copy())
        alpha = current_generator().normal(0.0, self.alphastd, size=self.eigval.shape)
        shift = self.eigvec @ (alpha * self.eigval)              # (C,)
        return back((array + shift.reshape(-1, 1, 1)).astype(array.dtype))

    def __repr__(self):
        return f"Lighting(alphastd={self.alphastd})"


# ------------------------------------------------------------------- erasing

class RandomErasing:
    """With probability ``p``, overwrite a random rectangle covering a ``scale`` fraction of
    the image with aspect ratio (height / width) in ``ratio`` (Zhong et al. 2017).

    ``value``: a number, one number per channel, or ``"random"`` (standard normal noise).
    Works on tensor images (after ToTensor/Normalize).
    """

    def __init__(self, p=0.5, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0, inplace=False):
        if not 0 <= p <= 1:
            raise ValueError(f"RandomErasing: probability p should be in [0, 1], got {p}")
        if scale[0] > scale[1] or ratio[0] > ratio[1]:
            raise ValueError(f"RandomErasing: scale and ratio should be of kind (min, max), "
                             f"got scale={scale}, ratio={ratio}")
        if scale[0] < 0 or scale[1] > 1:
            raise ValueError(f"RandomErasing: scale should be between 0 and 1, got {scale}")
        if isinstance(value, str) and value != "random":
            raise ValueError(f"RandomErasing: value should be a number, a sequence or "
                             f"'random', got {value!r}")
        self.p, self.scale, self.ratio = p, tuple(scale), tuple(ratio)
        self.value, self.inplace = value, inplace

    def get_params(self, img):
        """``(top, left, height, width)`` of the rectangle, or None to leave the image."""
        c, h, w = img.shape[-3:]
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            erase_area = h * w * _uniform(*self.scale)
            aspect = math.exp(_uniform(*log_ratio))
            eh = int(round(math.sqrt(erase_area * aspect)))
            ew = int(round(math.sqrt(erase_area / aspect)))
            if 0 < eh < h and 0 < ew < w:
                return _randint(0, h - eh + 1), _randint(0, w - ew + 1), eh, ew
        return None

    def __call__(self, img):
        array, back = _as_array(img, "RandomErasing")
        if array.ndim < 3:
            raise ValueError(f"RandomErasing: expects a (C, H, W) image, got {array.shape}")
        if current_generator().random() >= self.p:
            return back(array)
        box = self.get_params(array)
        if box is None:
            return back(array)
        top, left, eh, ew = box
        out = array if self.inplace else array.copy()
        region = out[..., top:top + eh, left:left + ew]            # (C, eh, ew) view
        if isinstance(self.value, str):
            region[...] = current_generator().standard_normal(region.shape)
        else:
            value = np.asarray(self.value, dtype=out.dtype)
            region[...] = value.reshape(-1, 1, 1) if value.ndim == 1 else value
        return back(out)

    def __repr__(self):
        return f"RandomErasing(p={self.p}, scale={self.scale}, ratio={self.ratio})"


# ------------------------------------------------------- batch-level mixing

class _BatchMix:
    """Shared part of MixUp and CutMix: checks, one-hot targets, the partner batch."""

    name = ""

    def __init__(self, alpha=1.0, num_classes=None):
        if alpha <= 0:
            raise ValueError(f"{self.name}: alpha should be positive, got {alpha}")
        self.alpha, self.num_classes = float(alpha), num_classes

    def __call__(self, images, labels):
        """``(images (N, C, H, W), labels (N,) int or (N, K) soft)`` -> mixed images and
        soft targets ``(N, K)`` (rows sum to 1), in the type given (array or Tensor).

        The batch stays on its device (a GPU batch is mixed by CuPy); only the random
        numbers (the Beta sample, the CutMix box) are drawn on the host.
        """
        x, back = self._batch(images)
        xp = backend.get_array_module(x)
        if x.ndim != 4:
            raise ValueError(f"{self.name}: expects a batch of images (N, C, H, W), got shape "
                             f"{x.shape}")
        y = labels.array if isinstance(labels, Tensor) else labels
        y = backend.to_device(y, backend.device_of(x))    # the targets live with the images
        targets = self._soft_targets(xp, y, len(x), x.dtype)
        lam = float(current_generator().beta(self.alpha, self.alpha))
        # each sample is mixed with its neighbour in the batch (the batch rolled by one)
        partner_x, partner_t = xp.roll(x, 1, axis=0), xp.roll(targets, 1, axis=0)
        mixed, lam = self._mix(x, partner_x, lam)
        soft = (lam * targets + (1.0 - lam) * partner_t).astype(targets.dtype)
        return back(mixed), (Tensor._wrap(soft) if isinstance(labels, Tensor) else soft)

    def _batch(self, images):
        """The batch's array where it lives, and how to give a result back in its type."""
        if isinstance(images, Tensor):
            return images.array, Tensor._wrap
        if backend._is_cupy_array(images):
            return images, lambda a: a
        return _as_array(images, self.name)

    def _soft_targets(self, xp, y, n, dtype):
        if y.ndim == 2:
            if y.shape[0] != n:
                raise ValueError(f"{self.name}: {n} images but {y.shape[0]} label rows")
            return y.astype(dtype if dtype.kind == "f" else np.float32)
        if y.ndim != 1 or y.shape[0] != n or y.dtype.kind not in "iu":
            raise ValueError(f"{self.name}: labels should be (N,) class indices or (N, K) "
                             f"probabilities for {n} images, got {y.dtype} {y.shape}")
        k = self.num_classes
        if k is None:
            raise ValueError(f"{self.name}: num_classes is required with integer labels")
        if y.size:
            low, high = int(y.min()), int(y.max())
            if low < 0 or high >= k:
                raise ValueError(f"{self.name}: labels must lie in [0, {k}), got range "
                                 f"[{low}, {high}]")
        targets = xp.zeros((n, k), dtype=dtype if dtype.kind == "f" else np.float32)
        targets[xp.arange(n), y] = 1.0
        return targets

    def _mix(self, x, partner, lam):
        raise NotImplementedError


class MixUp(_BatchMix):
    """mixup (Zhang et al. 2018): ``lam * x + (1 - lam) * x_partner``, targets likewise,
    ``lam ~ Beta(alpha, alpha)``."""

    name = "MixUp"

    def _mix(self, x, partner, lam):
        return (lam * x + (1.0 - lam) * partner).astype(x.dtype), lam

    def __repr__(self):
        return f"MixUp(alpha={self.alpha}, num_classes={self.num_classes})"


class CutMix(_BatchMix):
    """CutMix (Yun et al. 2019): paste a rectangle from the partner image. Its area is
    about ``(1 - lam)`` of the image, ``lam ~ Beta(alpha, alpha)``, centred uniformly at
    random and clipped at the border; the targets use the exact pasted fraction."""

    name = "CutMix"

    def _mix(self, x, partner, lam):
        h, w = x.shape[-2:]
        cy, cx = _randint(0, h), _randint(0, w)
        half = 0.5 * math.sqrt(1.0 - lam)
        half_h, half_w = int(half * h), int(half * w)
        y1, y2 = max(cy - half_h, 0), min(cy + half_h, h)
        x1, x2 = max(cx - half_w, 0), min(cx + half_w, w)
        out = x.copy()
        out[..., y1:y2, x1:x2] = partner[..., y1:y2, x1:x2]
        return out, 1.0 - (y2 - y1) * (x2 - x1) / (h * w)

    def __repr__(self):
        return f"CutMix(alpha={self.alpha}, num_classes={self.num_classes})"


# ----------------------------------------------------------- test-time crops

class FiveCrop:
    """The four corner crops and the central crop of ``size``, as torchvision's
    ``FiveCrop``: a tuple ``(top-left, top-right, bottom-left, bottom-right, centre)``.
    For test-time averaging (stack the crops, average the predictions): see
    ``minicnn.utils.tta``."""

    def __init__(self, size):
        self.size = _pair(size, "FiveCrop")

    def __call__(self, img):
        img, back = _geometric_input(img, "FiveCrop")
        return tuple(back(c) for c in _five_crops(img, self.size, "FiveCrop"))

    def __repr__(self):
        return f"FiveCrop(size={self.size})"


class TenCrop:
    """:class:`FiveCrop`'s five crops, then the same five of the mirrored image
    (left-right, or top-bottom with ``vertical_flip``), as torchvision's ``TenCrop``: the
    ten fixed patches over which AlexNet averages its test predictions (Krizhevsky et al.
    2012 §4.1; seed 002 L351 says "five random crops", the paper's are these)."""

    def __init__(self, size, vertical_flip=False):
        self.size, self.vertical_flip = _pair(size, "TenCrop"), vertical_flip

    def __call__(self, img):
        img, back = _geometric_input(img, "TenCrop")
        if self.vertical_flip:
            mirrored = (img.transpose(imageops._pil().FLIP_TOP_BOTTOM) if imageops.is_pil(img)
                        else img[..., ::-1, :].copy())
        else:
            mirrored = imageops.hflip(img)
        crops = _five_crops(img, self.size, "TenCrop") + _five_crops(mirrored, self.size,
                                                                     "TenCrop")
        return tuple(back(c) for c in crops)

    def __repr__(self):
        return f"TenCrop(size={self.size}, vertical_flip={self.vertical_flip})"


def _five_crops(img, size, name):
    th, tw = size
    h, w = imageops.image_size(img)
    if th > h or tw > w:
        raise ValueError(f"{name}: requested crop size {(th, tw)} is bigger than the image "
                         f"size {(h, w)}")
    return (imageops.crop(img, 0, 0, th, tw), imageops.crop(img, 0, w - tw, th, tw),
            imageops.crop(img, h - th, 0, th, tw), imageops.crop(img, h - th, w - tw, th, tw),
            imageops.center_crop(img, size))


__all__ += ["FiveCrop", "TenCrop"]
