"""Cases for resampling and rearranging: interpolate, center_crop, pixel_shuffle,
pixel_unshuffle, and pad's reflect / replicate / circular modes."""
import numpy as np

from minicnn import functional as F
from ..opcheck import register


def _tf():
    import torch.nn.functional as tf
    return tf


def _n(*shape):
    return lambda r: [r.standard_normal(shape)]


def _interp(label, shape, **kw):
    register("interpolate", label, _n(*shape), lambda a: F.interpolate(a, **kw),
             lambda a: _tf().interpolate(a, **kw))


_interp("nearest size=(5,7)", (2, 3, 3, 4), size=(5, 7))
_interp("nearest scale_factor=1.7 (scale 1/1.7, not in/out)", (1, 2, 5, 3), scale_factor=1.7)
_interp("nearest downsample scale_factor=0.6", (1, 2, 7, 6), scale_factor=0.6)
_interp("nearest-exact size=(4,9)", (2, 1, 6, 4), size=(4, 9), mode="nearest-exact")
_interp("bilinear x2 align_corners=False", (2, 2, 3, 4), scale_factor=2, mode="bilinear",
        align_corners=False)
_interp("bilinear size=(7,5) align_corners=True", (1, 3, 4, 3), size=(7, 5), mode="bilinear",
        align_corners=True)
_interp("bilinear downsample scale_factor=(0.6,0.75)", (1, 2, 7, 8),
        scale_factor=(0.6, 0.75), mode="bilinear")


def _center_crop_reference(x, size):
    """torchvision's rule on a NumPy array: pad with zeros if needed, then crop from
    int(round((H - h) / 2)), int(round((W - w) / 2))."""
    h, w = size
    H, W = x.shape[-2:]
    pads = [(0, 0)] * (x.ndim - 2)
    pads += [((h - H) // 2, (h - H + 1) // 2) if h > H else (0, 0),
             ((w - W) // 2, (w - W + 1) // 2) if w > W else (0, 0)]
    x = np.pad(x, pads)
    H, W = x.shape[-2:]
    top, left = int(round((H - h) / 2.0)), int(round((W - w) / 2.0))
    return x[..., top:top + h, left:left + w]


register("center_crop", "(2,3,9,8) -> (4,5), halves round to even", _n(2, 3, 9, 8),
         lambda a: F.center_crop(a, (4, 5)), torch_fn=None,
         reference=lambda a: _center_crop_reference(a, (4, 5)))
register("center_crop", "crop larger than image pads with zeros", _n(2, 5, 4),
         lambda a: F.center_crop(a, (3, 7)), torch_fn=None,
         reference=lambda a: _center_crop_reference(a, (3, 7)))
register("pixel_shuffle", "(2,8,3,2) r=2", _n(2, 8, 3, 2), lambda a: F.pixel_shuffle(a, 2),
         lambda a: _tf().pixel_shuffle(a, 2))
register("pixel_shuffle", "(2,1,9,2,3) r=3, extra batch dim", _n(2, 1, 9, 2, 3),
         lambda a: F.pixel_shuffle(a, 3), lambda a: _tf().pixel_shuffle(a, 3))
register("pixel_unshuffle", "(2,3,4,6) r=2", _n(2, 3, 4, 6), lambda a: F.pixel_unshuffle(a, 2),
         lambda a: _tf().pixel_unshuffle(a, 2))


def _pad(label, shape, amounts, mode):
    register("pad", f"{mode} {amounts}{' ' + label if label else ''}", _n(*shape),
             lambda a: F.pad(a, amounts, mode=mode),
             lambda a: _tf().pad(a, amounts, mode=mode))


_pad("", (2, 3, 4, 5), (2, 1, 3, 0), "reflect")
_pad("crop one side", (2, 6), (-1, 4), "reflect")
_pad("", (1, 2, 3, 4), (3, 1, 0, 4), "replicate")
_pad("3 dims", (1, 2, 2, 3, 4), (1, 2, 0, 1, 2, 1), "replicate")
_pad("", (2, 3, 4, 5), (5, 2, 1, 4), "circular")
