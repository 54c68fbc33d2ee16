"""Image operations behind the transforms: resize, crop, pad, flip, rotate, colour.

Each function takes a *tensor image* -- a NumPy array of shape ``(..., H, W)``, usually
``(C, H, W)`` float in [0, 1] -- and the geometric ones also take a PIL image (handled with
PIL's own methods, as torchvision does). Randomness never happens here: the transforms
draw the parameters and call these.
"""
from __future__ import annotations

import numpy as np

__all__ = ["is_pil", "image_size", "resize", "resize_matrix", "crop", "center_crop", "pad",
           "hflip", "rotate", "rgb_to_grayscale", "rgb_to_hsv", "hsv_to_rgb",
           "adjust_brightness", "adjust_contrast", "adjust_saturation", "adjust_hue",
           "NEAREST", "BILINEAR"]

NEAREST, BILINEAR = "nearest", "bilinear"


def is_pil(img):
    return type(img).__module__.startswith("PIL.")


def image_size(img):
    """``(H, W)`` of a PIL image or of an array ``(..., H, W)``."""
    if is_pil(img):
        return img.height, img.width
    if img.ndim < 2:
        raise ValueError(f"expected an image array of shape (..., H, W), got shape {img.shape}")
    return tuple(img.shape[-2:])


def _pil():
    from PIL import Image   # Pillow is optional ("train" extra); only PIL inputs need it
    return Image


# -------------------------------------------------------------------- resize

def resize_matrix(in_size, out_size, interpolation=BILINEAR, antialias=True):
    """The ``(out_size, in_size)`` matrix ``M`` with ``resized = M @ signal`` along one axis.

    Bilinear resampling is a triangle filter: output pixel ``i`` has its centre at input
    coordinate ``(i + 0.5) * scale`` (``scale = in_size / out_size``, coordinates measured
    from the left edge, so pixel ``j`` has its centre at ``j + 0.5``), and takes input
    pixel ``j`` with weight ``max(0, 1 - |j + 0.5 - centre| / support)``, weights
    normalised to sum to 1. Upsampling uses ``support = 1`` (ordinary bilinear
    interpolation: ``torch.nn.functional.interpolate(..., mode="bilinear",
    align_corners=False)``); downsampling with ``antialias`` widens the filter to
    ``support = scale`` so every input pixel contributes (PIL's and torch's
    ``antialias=True``), instead of skipping pixels and aliasing.
    Nearest takes input pixel ``floor((i + 0.5) * scale)`` (PIL's rule, torch's
    ``"nearest-exact"``).
    """
    scale = in_size / out_size
    centres = (np.arange(out_size) + 0.5) * scale
    if interpolation == NEAREST:
        source = np.minimum(np.floor(centres).astype(np.int64), in_size - 1)
        m = np.zeros((out_size, in_size))
        m[np.arange(out_size), source] = 1.0
        return m
    if interpolation != BILINEAR:
        raise ValueError(f"resize: interpolation must be 'bilinear' or 'nearest', got "
                         f"{interpolation!r}")
    support = max(scale, 1.0) if antialias else 1.0
    distance = np.abs((np.arange(in_size) + 0.5)[None, :] - centres[:, None])  # (out, in)
    weights = np.maximum(0.0, 1.0 - distance / support)
    return weights / weights.sum(axis=1, keepdims=True)


def resize(img, size, interpolation=BILINEAR, antialias=True):
    """Resize to ``size = (OH, OW)``: separable, ``M_h @ img @ M_w.T`` on the last two axes.

    Integer arrays are resampled in float and rounded back to their dtype.
    """
    oh, ow = size
    if is_pil(img):
        Image = _pil()
        method = Image.NEAREST if interpolation == NEAREST else Image.BILINEAR
        return img.resize((ow, oh), method)
    h, w = image_size(img)
    if (h, w) == (oh, ow):
        return img.copy()
    work = img if img.dtype.kind == "f" else img.astype(np.float32)
    mh = resize_matrix(h, oh, interpolation, antialias).astype(work.dtype)  # (OH, H)
    mw = resize_matrix(w, ow, interpolation, antialias).astype(work.dtype)  # (OW, W)
    out = mh @ work @ mw.T                                                  # (..., OH, OW)
    if img.dtype.kind != "f":
        info = np.iinfo(img.dtype) if img.dtype.kind in "iu" else None
        out = np.rint(out)
        if info is not None:
            out = np.clip(out, info.min, info.max)
        out = out.astype(img.dtype)
    return out


# ------------------------------------------------------------ crop, pad, flip

def crop(img, top, left, height, width):
    """The ``height x width`` window whose top-left pixel is ``(top, left)``; the part
    outside the image is filled with zeros (as torchvision's ``crop``)."""
    if is_pil(img):
        return img.crop((left, top, left + width, top + height))
    h, w = image_size(img)
    if top < 0 or left < 0 or top + height > h or left + width > w:
        pads = (max(0, -left), max(0, -top), max(0, left + width - w), max(0, top + height - h))
        img = pad(img, pads)
        top, left = top + pads[1], left + pads[0]
    return img[..., top:top + height, left:left + width].copy()


def center_crop(img, size):
    """The central ``size = (OH, OW)`` window; torchvision's rounding of the offsets."""
    th, tw = size
    h, w = image_size(img)
    # NOTE: Python's round() (half to even) is what torchvision uses, so an odd margin
    # splits the same way in both.
    top, left = int(round((h - th) / 2.0)), int(round((w - tw) / 2.0))
    return crop(img, top, left, th, tw)


_NUMPY_PAD_MODES = {"constant": "constant", "edge": "edge", "reflect": "reflect",
                    "symmetric": "symmetric"}


def pad(img, padding, fill=0, padding_mode="constant"):
    """Pad the last two axes. ``padding``: an int (all sides), ``(left/right, top/bottom)``
    or ``(left, top, right, bottom)`` -- torchvision's order. Modes: ``constant`` (with
    ``fill``), ``edge``, ``reflect`` (mirror without repeating the edge), ``symmetric``
    (mirror repeating it)."""
    left, top, right, bottom = _four_sides(padding)
    if padding_mode not in _NUMPY_PAD_MODES:
        raise ValueError(f"pad: padding_mode must be one of {sorted(_NUMPY_PAD_MODES)}, got "
                         f"{padding_mode!r}")
    if is_pil(img):
        Image = _pil()
        array = np.asarray(img)
        widths = [(top, bottom), (left, right)] + [(0, 0)] * (array.ndim - 2)
        out = _np_pad(array, widths, fill, padding_mode)
        return Image.fromarray(out, mode=img.mode) if img.mode in ("L", "RGB", "RGBA") \
            else Image.fromarray(out)
    widths = [(0, 0)] * (img.ndim - 2) + [(top, bottom), (left, right)]
    return _np_pad(img, widths, fill, padding_mode)


def _np_pad(array, widths, fill, padding_mode):
    if padding_mode == "constant":
        return np.pad(array, widths, mode="constant", constant_values=fill)
    return np.pad(array, widths, mode=_NUMPY_PAD_MODES[padding_mode])


def _four_sides(padding):
    if isinstance(padding, (int, np.integer)):
        sides = (int(padding),) * 4
    else:
        padding = tuple(int(p) for p in padding)
        if len(padding) == 2:
            sides = (padding[0], padding[1], padding[0], padding[1])
        elif len(padding) == 4:
            sides = padding
        else:
            raise ValueError(f"pad: padding must be an int or a sequence of 2 or 4 ints, "
                             f"got {padding!r}")
    if any(p < 0 for p in sides):
        raise ValueError(f"pad: padding must be non-negative, got {padding!r}")
    return sides


def hflip(img):
    """Mirror left-right."""
    if is_pil(img):
        return img.transpose(_pil().FLIP_LEFT_RIGHT)
    return img[..., ::-1].copy()


# -------------------------------------------------------------------- rotate

def rotate(img, angle, interpolation=NEAREST, center=None, fill=0):
    """Rotate by ``angle`` degrees counter-clockwise about ``center`` (``(x, y)`` in pixel
    units from the top-left corner; default the image centre), same size, corners filled.

    Each output pixel samples the input at its own position rotated back by ``angle``
    (inverse mapping, so no output pixel is left empty). With the y axis pointing down,
    a counter-clockwise turn by ``a`` maps a point's offset from the centre ``(dx, dy)``
    to ``(dx cos a + dy sin a, -dx sin a + dy cos a)``; the inverse used here is
    ``(dx' cos a - dy' sin a, dx' sin a + dy' cos a)``.
    """
    if is_pil(img):
        Image = _pil()
        method = Image.NEAREST if interpolation == NEAREST else Image.BILINEAR
        return img.rotate(angle, resample=method, expand=False, center=center, fillcolor=fill)
    h, w = image_size(img)
    cx, cy = (w / 2.0, h / 2.0) if center is None else (float(center[0]), float(center[1]))
    a = np.deg2rad(angle)
    cos, sin = np.cos(a), np.sin(a)
    # offsets of every output pixel centre from the rotation centre, shape (H, W)
    dy, dx = np.meshgrid(np.arange(h) + 0.5 - cy, np.arange(w) + 0.5 - cx, indexing="ij")
    src_x = dx * cos - dy * sin + cx - 0.5          # input column coordinate (pixel index)
    src_y = dx * sin + dy * cos + cy - 0.5
    work = img if img.dtype.kind == "f" else img.astype(np.float32)
    fill = np.asarray(fill, dtype=work.dtype)
    if fill.ndim == 1:                      # one value per channel
        fill = fill[:, None, None]
    if interpolation == NEAREST:
        out = _sample(work, np.floor(src_y + 0.5).astype(np.int64),
                      np.floor(src_x + 0.5).astype(np.int64), fill)
    elif interpolation == BILINEAR:
        y0, x0 = np.floor(src_y).astype(np.int64), np.floor(src_x).astype(np.int64)
        fy, fx = src_y - y0, src_x - x0
        out = ((1 - fy) * (1 - fx) * _sample(work, y0, x0, fill)
               + (1 - fy) * fx * _sample(work, y0, x0 + 1, fill)
               + fy * (1 - fx) * _sample(work, y0 + 1, x0, fill)
               + fy * fx * _sample(work, y0 + 1, x0 + 1, fill))
    else:
        raise ValueError(f"rotate: interpolation must be 'nearest' or 'bilinear', got "
                         f"{interpolation!r}")
    return out.astype(img.dtype) if img.dtype.kind == "f" else np.rint(out).astype(img.dtype)


def _sample(img, rows, cols, fill):
    """``img[..., rows, cols]`` with ``fill`` wherever the index falls outside."""
    h, w = img.shape[-2:]
    inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    values = img[..., np.clip(rows, 0, h - 1), np.clip(cols, 0, w - 1)]
    return np.where(inside, values, fill)


# -------------------------------------------------------------------- colour
#
# Colour operations take a (C, H, W) float image in [0, 1] with C = 1 or 3 and follow
# torchvision's definitions: each is a blend ``clamp(f * img + (1 - f) * other, 0, 1)``
# with a different ``other``.

def rgb_to_grayscale(img):
    """ITU-R 601-2 luma: ``0.299 R + 0.587 G + 0.114 B``, shape ``(1, H, W)``."""
    if img.shape[-3] == 1:
        return img.copy()
    r, g, b = img[..., 0, :, :], img[..., 1, :, :], img[..., 2, :, :]
    return (0.299 * r + 0.587 * g + 0.114 * b)[..., None, :, :].astype(img.dtype)


def _blend(img, other, factor):
    return np.clip(factor * img + (1.0 - factor) * other, 0.0, 1.0).astype(img.dtype)


def adjust_brightness(img, factor):
    """Blend with black: ``clamp(f * img, 0, 1)``."""
    return _blend(img, 0.0, factor)


def adjust_contrast(img, factor):
    """Blend with the mean grey level of the image."""
    mean = rgb_to_grayscale(img).mean(axis=(-3, -2, -1), keepdims=True)
    return _blend(img, mean, factor)


def adjust_saturation(img, factor):
    """Blend with the image's own greyscale version (no effect on one channel)."""
    if img.shape[-3] == 1:
        return img.copy()
    return _blend(img, rgb_to_grayscale(img), factor)


def adjust_hue(img, hue_factor):
    """Rotate the hue by ``hue_factor`` turns (in [-0.5, 0.5]); no effect on one channel."""
    if not -0.5 <= hue_factor <= 0.5:
        raise ValueError(f"adjust_hue: hue_factor must lie in [-0.5, 0.5], got {hue_factor}")
    if img.shape[-3] == 1:
        return img.copy()
    hsv = rgb_to_hsv(img)
    hsv[..., 0, :, :] = (hsv[..., 0, :, :] + hue_factor) % 1.0
    return hsv_to_rgb(hsv).astype(img.dtype)


def rgb_to_hsv(img):
    """``(..., 3, H, W)`` RGB in [0, 1] -> HSV with hue in [0, 1) turns."""
    r, g, b = img[..., 0, :, :], img[..., 1, :, :], img[..., 2, :, :]
    maxc, minc = img.max(axis=-3), img.min(axis=-3)
    delta = maxc - minc
    safe = np.where(delta > 0, delta, 1.0)          # grey pixels: hue 0, no division by 0
    # hue sector by which channel is the largest (red, then green, then blue wins ties)
    hue = np.where(maxc == r, ((g - b) / safe) % 6.0,
                   np.where(maxc == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0))
    hue = np.where(delta > 0, hue / 6.0, 0.0) % 1.0
    saturation = np.where(maxc > 0, delta / np.where(maxc > 0, maxc, 1.0), 0.0)
    return np.stack([hue, saturation, maxc], axis=-3)


def hsv_to_rgb(img):
    """Inverse of :func:`rgb_to_hsv`."""
    h, s, v = img[..., 0, :, :], img[..., 1, :, :], img[..., 2, :, :]
    sector = np.floor(h * 6.0)
    f = h * 6.0 - sector
    sector = sector.astype(np.int64) % 6
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    # per sector, which of (v, q, p, t) goes to red, green, blue
    r = np.choose(sector, [v, q, p, p, t, v])
    g = np.choose(sector, [t, v, v, q, p, p])
    b = np.choose(sector, [p, p, t, v, v, q])
    return np.stack([r, g, b], axis=-3)
