"""Pictures of what a network holds: a grid of images (``make_grid``, torchvision's
semantics), written as a PNG (``save_image``), and the filters of a model's first
convolution (``show_filters``, the picture of AlexNet's conv1 every course shows).

The grid keeps the array module of its input (NumPy or CuPy); only ``save_image`` brings
the picture to the host, to write it with Pillow.
"""
from __future__ import annotations

import math
import os

import numpy as np

from .. import backend
from ..autograd import Tensor

__all__ = ["make_grid", "save_image", "first_conv_weight", "show_filters"]


def make_grid(tensor, nrow=8, padding=2, normalize=False, value_range=None,
              scale_each=False, pad_value=0.0):
    """Tile a batch of images into one image, as ``torchvision.utils.make_grid``.

    ``tensor``: ``(B, C, H, W)``, one image ``(C, H, W)`` or ``(H, W)``, or a list of
    same-sized ``(C, H, W)`` images (Tensors or arrays). One-channel images become
    three-channel (grey). ``nrow`` images per row, ``ceil(B / nrow)`` rows, ``padding``
    pixels of ``pad_value`` around and between them::

        out: (C, (H + padding) * rows + padding, (W + padding) * min(nrow, B) + padding)

    96 filters of 3x11x11 with nrow 8 and padding 2 give (3, 158, 106).

    ``normalize``: clamp to ``value_range = (low, high)`` (default: the minimum and the
    maximum of the values) and map it to [0, 1] (``high - low`` at least 1e-5);
    ``scale_each`` does so per image. A batch of one is returned without padding, as
    torchvision does. Returns a Tensor for Tensor input, an array otherwise; the input is
    never modified.
    """
    op = "make_grid"
    images, as_tensor = _batch(tensor, op)
    if not (isinstance(nrow, (int, np.integer)) and nrow >= 1):
        raise ValueError(f"{op}: nrow must be a positive int, got {nrow!r}")
    if not (isinstance(padding, (int, np.integer)) and padding >= 0):
        raise ValueError(f"{op}: padding must be an int >= 0, got {padding!r}")
    if value_range is not None and (not isinstance(value_range, tuple) or len(value_range) != 2):
        raise ValueError(f"{op}: value_range must be a tuple (min, max), got {value_range!r}")
    xp = backend.get_array_module(images)
    if images.shape[1] == 1:                              # grey -> RGB, as torchvision
        images = xp.concatenate([images] * 3, axis=1)
    if normalize:
        images = images.astype(np.result_type(images.dtype, np.float32), copy=True)
        for image in (images if scale_each else [images]):
            _normalize_(image, value_range, xp)
    if images.shape[0] == 1:
        return _wrap(images[0], as_tensor)

    count, channels, height, width = images.shape
    cols = min(nrow, count)
    rows = math.ceil(count / cols)
    cell_h, cell_w = height + padding, width + padding
    grid = xp.full((channels, cell_h * rows + padding, cell_w * cols + padding), pad_value,
                   dtype=images.dtype)
    for k in range(count):
        top, left = (k // cols) * cell_h + padding, (k % cols) * cell_w + padding
        grid[:, top:top + height, left:left + width] = images[k]
    return _wrap(grid, as_tensor)


def save_image(tensor, path, **grid_kwargs):
    """Write ``make_grid(tensor, **grid_kwargs)`` as an 8-bit image (PNG by the file's
    extension): values in [0, 1] become round(255 v), clamped, as torchvision's
    ``save_image``. Written atomically (a temporary file, then a rename)."""
    from PIL import Image
    grid = make_grid(tensor, **grid_kwargs)
    grid = grid.numpy() if isinstance(grid, Tensor) else backend.to_device(grid, "cpu")
    pixels = np.clip(grid * 255 + 0.5, 0, 255).astype(np.uint8).transpose(1, 2, 0)
    root, ext = os.path.splitext(os.fspath(path))
    tmp = f"{root}.tmp{ext or '.png'}"
    Image.fromarray(pixels).save(tmp)
    os.replace(tmp, path)


def first_conv_weight(model):
    """The weight ``(out, in, KH, KW)`` of the first ``Conv2d`` in ``model.modules()``
    order (AlexNet's ``features.0``, ResNet's ``conv1``), as a host array."""
    from .. import nn
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module.weight.numpy()
    raise ValueError(f"show_filters: {type(model).__name__} has no Conv2d layer")


def show_filters(model, path, nrow=8, padding=1, scale=4, scale_each=True):
    """Save the filters of ``model``'s first convolution as one picture: each filter an
    RGB tile when it reads 3 channels (AlexNet's conv1: colour blobs and oriented edges),
    else one grey tile per (filter, input channel), ``nrow`` tiles a row, each scaled to
    [0, 1] on its own (``scale_each``) and magnified ``scale`` times (nearest) so an
    11x11 filter is visible. Returns the grid ``(3, H, W)`` that was written."""
    if not (isinstance(scale, (int, np.integer)) and scale >= 1):
        raise ValueError(f"show_filters: scale must be a positive int, got {scale!r}")
    weight = first_conv_weight(model)
    out_channels, in_channels, kh, kw = weight.shape
    if in_channels != 3:
        weight = weight.reshape(out_channels * in_channels, 1, kh, kw)
    weight = weight.repeat(scale, axis=2).repeat(scale, axis=3)
    grid = make_grid(weight, nrow=nrow * (1 if in_channels == 3 else in_channels),
                     padding=padding, normalize=True, scale_each=scale_each, pad_value=1.0)
    save_image(grid, path, padding=0)
    return grid


def _batch(tensor, op):
    """``tensor`` as one ``(B, C, H, W)`` backend array, and whether a Tensor came in."""
    if isinstance(tensor, (list, tuple)):
        if not tensor:
            raise ValueError(f"{op}: expected at least one image, got an empty list")
        parts = [_array(t, op) for t in tensor]
        shapes = {p.shape for p in parts}
        if len(shapes) != 1 or parts[0].ndim != 3:
            raise ValueError(f"{op}: a list must hold (C, H, W) images of one shape, got "
                             f"shapes {sorted(shapes)}")
        xp = backend.get_array_module(*parts)
        return xp.stack(parts), any(isinstance(t, Tensor) for t in tensor)
    array = _array(tensor, op)
    if array.ndim == 2:                                   # one (H, W) image
        array = array[None]
    if array.ndim == 3:                                   # one (C, H, W) image
        array = array[None]
    if array.ndim != 4:
        raise ValueError(f"{op}: expected (B, C, H, W), (C, H, W) or (H, W) images, got "
                         f"shape {tuple(array.shape)}")
    return array, isinstance(tensor, Tensor)


def _array(value, op):
    if isinstance(value, Tensor):
        return value.detach().array
    xp = backend.get_array_module(value)
    if isinstance(value, xp.ndarray):
        return value
    raise TypeError(f"{op}: expected a Tensor, an array or a list of them, got "
                    f"{type(value).__name__}")


def _normalize_(image, value_range, xp):
    """Clamp to [low, high] and map it to [0, 1], in place (torchvision's ``norm_ip``)."""
    low, high = value_range if value_range is not None else (float(image.min()),
                                                             float(image.max()))
    xp.clip(image, low, high, out=image)
    image -= low
    image /= max(high - low, 1e-5)


def _wrap(array, as_tensor):
    return Tensor._wrap(array) if as_tensor else array
