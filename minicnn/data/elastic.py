"""Elastic deformation: every output pixel samples the input at its own position plus a
smooth random displacement.

Two ways to draw the displacement field, one way to apply it:

* :func:`random_displacement` -- torchvision's ``v2.ElasticTransform`` (after Simard et al.
  2003): uniform noise in [-1, 1] per pixel, blurred with a Gaussian of standard deviation
  ``sigma`` pixels, scaled by ``alpha``.
* :func:`unet_displacement` -- the U-Net form (Ronneberger et al. 2015, section 3.1):
  "random displacement vectors on a coarse 3 by 3 grid", drawn from a Gaussian with
  10 pixels standard deviation, then "per-pixel displacements are computed using bicubic
  interpolation".
* :func:`elastic_transform` -- samples an image along the displaced grid, as
  ``torch.nn.functional.grid_sample(..., align_corners=False)`` does.

The displacement convention is torchvision's (``v2.functional.elastic_transform``): an
array of shape ``(1, H, W, 2)`` in *normalised* grid units, ``[..., 0]`` along x (width)
and ``[..., 1]`` along y (height). The image spans [-1, 1] edge to edge, so a displacement
of ``2 / W`` moves one pixel to the right: output pixel ``(i, j)`` reads the input at
column ``j + displacement[0, i, j, 0] * W / 2`` and row ``i + displacement[0, i, j, 1] * H / 2``.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from ..autograd import Tensor
from . import imageops
from ._random import current_generator
from .imageops import BILINEAR, NEAREST

__all__ = ["elastic_transform", "random_displacement", "unet_displacement",
           "gaussian_blur", "ElasticTransform"]


# ------------------------------------------------------------------ functional

def elastic_transform(image, displacement, interpolation=BILINEAR, fill=0):
    """Warp ``image`` (``(..., H, W)`` array or Tensor) by ``displacement`` (``(1, H, W, 2)``,
    normalised units, see the module docstring).

    ``interpolation``: ``"bilinear"`` or ``"nearest"`` (use nearest for label masks).
    ``fill``: the value (one number, or one per channel) the image is taken to have
    outside its borders; ``None`` means 0.

    Equals ``grid_sample(image - fill, identity_grid + displacement, mode,
    padding_mode="zeros", align_corners=False) + fill``.

    NOTE: torchvision blends the fill in as ``coverage * sampled + (1 - coverage) * fill``,
    with ``sampled`` already zero-padded, so a pixel half outside is darkened twice;
    here the image is sampled as if surrounded by ``fill``. The two agree wherever all
    four neighbours are inside, and everywhere when ``fill`` is 0.

    Integer images (masks) keep their dtype: nearest reads a value that was there, or
    ``fill``; bilinear rounds.
    """
    array, back = _image_array(image, "elastic_transform")
    h, w = array.shape[-2:]
    disp = displacement.numpy() if isinstance(displacement, Tensor) else np.asarray(displacement)
    if disp.shape != (1, h, w, 2):
        raise ValueError(f"elastic_transform: displacement must have shape (1, H, W, 2) = "
                         f"{(1, h, w, 2)} for an image of shape {array.shape}, got "
                         f"{disp.shape}")
    if interpolation not in (NEAREST, BILINEAR):
        raise ValueError(f"elastic_transform: interpolation must be 'nearest' or 'bilinear', "
                         f"got {interpolation!r}")
    # normalised grid point -> input pixel coordinate (align_corners=False): the identity
    # grid's x_j = (2j + 1) / W - 1 maps back to j, so pixel (i, j) reads
    # column j + dx * W / 2 and row i + dy * H / 2
    rows = np.arange(h, dtype=np.float64)[:, None] + disp[0, :, :, 1] * (h / 2.0)  # (H, W)
    cols = np.arange(w, dtype=np.float64)[None, :] + disp[0, :, :, 0] * (w / 2.0)  # (H, W)
    return back(_sample(array, rows, cols, interpolation, fill))


def _sample(array, rows, cols, interpolation=BILINEAR, fill=0):
    """``array[..., rows, cols]`` at fractional pixel coordinates ``rows``, ``cols``
    (``(OH, OW)`` each; pixel ``k`` has its centre at ``k``), reading ``fill`` outside.
    Nearest rounds half to even, as ``grid_sample`` does."""
    work = array if array.dtype.kind == "f" else array.astype(np.float64)
    fill_value = _fill_array(fill, work, "elastic_transform")
    if interpolation == NEAREST:
        out = _take(work, np.rint(rows).astype(np.int64), np.rint(cols).astype(np.int64),
                    fill_value)
    else:
        r0, c0 = np.floor(rows), np.floor(cols)
        fr, fc = (rows - r0).astype(work.dtype), (cols - c0).astype(work.dtype)
        r0, c0 = r0.astype(np.int64), c0.astype(np.int64)
        out = ((1 - fr) * (1 - fc) * _take(work, r0, c0, fill_value)
               + (1 - fr) * fc * _take(work, r0, c0 + 1, fill_value)
               + fr * (1 - fc) * _take(work, r0 + 1, c0, fill_value)
               + fr * fc * _take(work, r0 + 1, c0 + 1, fill_value))
    if array.dtype.kind == "f":
        return out.astype(array.dtype)
    if array.dtype == np.bool_:
        return out >= 0.5
    info = np.iinfo(array.dtype)
    return np.clip(np.rint(out), info.min, info.max).astype(array.dtype)


def random_displacement(size, alpha=50.0, sigma=5.0, rng=None):
    """torchvision's random field for an image of ``size = (H, W)``: per pixel and axis a
    uniform number in [-1, 1], blurred by a Gaussian of ``sigma`` pixels (kernel size
    ``int(8 sigma + 1)`` made odd, reflected borders), times ``alpha / W`` along x and
    ``alpha / H`` along y. ``alpha`` and ``sigma`` may be one number or an ``(x, y)`` pair.

    In pixels the displacement is ``alpha / 2`` times the blurred noise. Returns
    ``(1, H, W, 2)`` float32.

    NOTE: torchvision <= 0.24 divides the x field by H and the y field by W (pytorch/vision
    issue 9299); the two agree on square images.
    """
    h, w = _size(size, "random_displacement")
    ax, ay = _two(alpha, "random_displacement", "alpha")
    sx, sy = _two(sigma, "random_displacement", "sigma")
    if sx < 0 or sy < 0:
        raise ValueError(f"random_displacement: sigma must be non-negative, got {sigma!r}")
    rng = current_generator() if rng is None else rng
    dx = rng.uniform(-1.0, 1.0, (h, w))
    dy = rng.uniform(-1.0, 1.0, (h, w))
    if sx > 0 or sy > 0:
        dx = gaussian_blur(dx, _kernel_size(sx), (sx, sy))
        dy = gaussian_blur(dy, _kernel_size(sy), (sx, sy))
    field = np.stack([dx * (ax / w), dy * (ay / h)], axis=-1)           # (H, W, 2)
    return field[None].astype(np.float32)


def unet_displacement(size, sigma=10.0, grid_size=3, rng=None):
    """The U-Net field for an image of ``size = (H, W)``: a displacement vector per node of
    a ``grid_size x grid_size`` grid spanning the image corner to corner (nodes on the
    first and last pixel centres), each component ~ N(0, ``sigma``^2) pixels, spread to
    every pixel by bicubic interpolation (cubic convolution, Catmull-Rom ``a = -0.5``, see
    :func:`cubic_matrix`).

    The paper used ``sigma = 10`` pixels on 572 x 572 tiles; scale it with the image.
    Returns ``(1, H, W, 2)`` float32 in normalised units.
    """
    h, w = _size(size, "unet_displacement")
    if not isinstance(grid_size, numbers.Integral) or grid_size < 2:
        raise ValueError(f"unet_displacement: grid_size must be an integer >= 2, got "
                         f"{grid_size!r}")
    if sigma < 0:
        raise ValueError(f"unet_displacement: sigma must be non-negative, got {sigma}")
    rng = current_generator() if rng is None else rng
    coarse = rng.normal(0.0, sigma, (2, grid_size, grid_size))          # pixels, (x, y)
    mh = cubic_matrix(grid_size, h)                                       # (H, G)
    mw = cubic_matrix(grid_size, w)                                       # (W, G)
    dense = mh @ coarse @ mw.T                                            # (2, H, W)
    field = np.stack([dense[0] * (2.0 / w), dense[1] * (2.0 / h)], axis=-1)
    return field[None].astype(np.float32)


def cubic_matrix(in_size, out_size, a=-0.5):
    """The ``(out_size, in_size)`` matrix that spreads ``in_size`` node values, nodes at
    ``0 .. out_size - 1`` evenly spaced (first and last on the end pixels), to every pixel
    by cubic convolution (Keys 1981) with parameter ``a``. The missing neighbour beyond
    each end node is extrapolated linearly (``f(-1) = 2 f(0) - f(1)``), so constants and
    straight lines are reproduced up to the borders."""
    if in_size == 1:
        return np.ones((out_size, 1))
    # position of every output pixel in node units: 0 at the first node, in_size-1 at the last
    t = np.arange(out_size) * ((in_size - 1) / max(out_size - 1, 1))
    base = np.minimum(np.floor(t).astype(np.int64), in_size - 2)     # t - base in [0, 1]
    rows = np.arange(out_size)
    m = np.zeros((out_size, in_size))
    for offset in (-1, 0, 1, 2):
        node = base + offset
        weight = _cubic(t - node, a)
        before, after = node < 0, node > in_size - 1          # one ghost node at most
        inside = ~(before | after)
        np.add.at(m, (rows[inside], node[inside]), weight[inside])
        np.add.at(m, (rows[before], 0), 2 * weight[before])
        np.add.at(m, (rows[before], 1), -weight[before])
        np.add.at(m, (rows[after], in_size - 1), 2 * weight[after])
        np.add.at(m, (rows[after], in_size - 2), -weight[after])
    return m


def _cubic(x, a):
    """Keys' cubic convolution kernel: 1 at 0, 0 at the other integers, C1-smooth."""
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1                     # |x| <= 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a                # 1 < |x| < 2
    return np.where(x <= 1, near, np.where(x < 2, far, 0.0))


def gaussian_blur(img, kernel_size, sigma):
    """Blur the last two axes with a separable Gaussian (torchvision's
    ``gaussian_blur``): ``kernel_size`` (odd) taps at offsets ``-(k-1)/2 .. (k-1)/2``,
    weights ``exp(-x^2 / (2 sigma^2))`` normalised to sum 1, borders reflected (without
    repeating the edge pixel). ``kernel_size`` and ``sigma`` may be ``(x, y)`` pairs."""
    kx, ky = _two(kernel_size, "gaussian_blur", "kernel_size")
    sx, sy = _two(sigma, "gaussian_blur", "sigma")
    if kx % 2 == 0 or ky % 2 == 0 or kx < 1 or ky < 1:
        raise ValueError(f"gaussian_blur: kernel_size must be odd and positive, got "
                         f"{kernel_size!r}")
    if sx <= 0 or sy <= 0:
        raise ValueError(f"gaussian_blur: sigma must be positive, got {sigma!r}")
    out = np.asarray(img, dtype=np.float64)
    for axis, k, s in ((-1, int(kx), sx), (-2, int(ky), sy)):
        half = k // 2
        taps = np.exp(-0.5 * (np.arange(-half, half + 1) / s) ** 2)
        taps /= taps.sum()
        n = out.shape[axis]
        # reflect padding, folded back as often as needed for kernels wider than the image
        index = np.arange(-half, n + half)
        period = 2 * (n - 1) if n > 1 else 1
        index = np.abs(index) % period if n > 1 else np.zeros_like(index)
        index = np.where(index >= n, period - index, index)
        padded = np.take(out, index, axis=axis)
        out = sum(taps[t] * np.take(padded, np.arange(t, t + n), axis=axis)
                  for t in range(k))
    return out


# ------------------------------------------------------------------- transform

class ElasticTransform:
    """Elastic deformation of a tensor image (``(C, H, W)`` array or Tensor).

    ``mode="torchvision"`` (default): :func:`random_displacement` with ``alpha``
    (strength; ``alpha / 2`` pixels per unit of blurred noise) and ``sigma`` (smoothness,
    pixels), as ``torchvision.transforms.v2.ElasticTransform(alpha=50.0, sigma=5.0)``.
    ``mode="unet"``: :func:`unet_displacement`, displacements of standard deviation
    ``sigma`` pixels on a ``grid_size x grid_size`` grid (the paper: ``sigma=10``,
    ``grid_size=3``); ``alpha`` is not used.

    ``interpolation`` and ``fill`` as in :func:`elastic_transform`. For an image and its
    label mask together use ``joint_transforms.JointElasticTransform``.
    """

    def __init__(self, alpha=50.0, sigma=5.0, interpolation=BILINEAR, fill=0,
                 mode="torchvision", grid_size=3):
        if mode not in ("torchvision", "unet"):
            raise ValueError(f"ElasticTransform: mode must be 'torchvision' or 'unet', got "
                             f"{mode!r}")
        if interpolation not in (NEAREST, BILINEAR):
            raise ValueError(f"ElasticTransform: interpolation must be 'nearest' or "
                             f"'bilinear', got {interpolation!r}")
        self.alpha = _two(alpha, "ElasticTransform", "alpha")
        self.sigma = _two(sigma, "ElasticTransform", "sigma")
        if min(self.sigma) < 0:
            raise ValueError(f"ElasticTransform: sigma must be non-negative, got {sigma!r}")
        self.interpolation, self.fill, self.mode = interpolation, fill, mode
        self.grid_size = grid_size

    def get_params(self, size):
        """A displacement field ``(1, H, W, 2)`` for an image of ``size = (H, W)``."""
        if self.mode == "unet":
            return unet_displacement(size, self.sigma[0], self.grid_size)
        return random_displacement(size, self.alpha, self.sigma)

    def __call__(self, img):
        array, _ = _image_array(img, "ElasticTransform")
        displacement = self.get_params(imageops.image_size(array))
        return elastic_transform(img, displacement, self.interpolation, self.fill)

    def __repr__(self):
        if self.mode == "unet":
            return f"ElasticTransform(mode='unet', sigma={self.sigma[0]}, " \
                   f"grid_size={self.grid_size})"
        return f"ElasticTransform(alpha={self.alpha}, sigma={self.sigma})"


# --------------------------------------------------------------------- helpers

def _image_array(img, name):
    """``(array, give_back)`` for a ``(..., H, W)`` array or Tensor."""
    if isinstance(img, Tensor):
        return img.numpy(), Tensor
    if isinstance(img, np.ndarray):
        if img.ndim < 2:
            raise ValueError(f"{name}: expected an image of shape (..., H, W), got shape "
                             f"{img.shape}")
        return img, lambda a: a
    raise TypeError(f"{name}: expects a (C, H, W) or (H, W) array or Tensor, got "
                    f"{type(img).__name__}" + (" -- convert it with ToTensor() first"
                                               if imageops.is_pil(img) else ""))


def _fill_array(fill, work, name):
    """``fill`` as an array that broadcasts against ``work[..., H, W]``."""
    value = np.asarray(0.0 if fill is None else fill, dtype=work.dtype)
    if value.ndim == 0:
        return value
    if value.ndim == 1 and work.ndim >= 3 and len(value) in (1, work.shape[-3]):
        return value[:, None, None]
    raise ValueError(f"{name}: fill must be a number or one number per channel, got "
                     f"{fill!r} for an image of shape {work.shape}")


def _take(img, rows, cols, fill):
    h, w = img.shape[-2:]
    inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    values = img[..., np.clip(rows, 0, h - 1), np.clip(cols, 0, w - 1)]
    return np.where(inside, values, fill)


def _kernel_size(sigma):
    k = int(8 * sigma + 1)
    return k + 1 if k % 2 == 0 else k


def _two(value, name, what):
    """A number or an ``(x, y)`` pair -> a pair of floats."""
    if isinstance(value, numbers.Number):
        return float(value), float(value)
    value = tuple(float(v) for v in value)
    if len(value) == 1:
        return value * 2
    if len(value) != 2:
        raise ValueError(f"{name}: {what} must be a number or a pair (x, y), got {value!r}")
    return value


def _size(size, name):
    if isinstance(size, numbers.Integral):
        size = (size, size)
    size = tuple(int(s) for s in size)
    if len(size) != 2 or min(size) < 1 or not all(math.isfinite(s) for s in size):
        raise ValueError(f"{name}: size must be (H, W) with positive sides, got {size!r}")
    return size
