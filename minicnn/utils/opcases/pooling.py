"""Cases for pooling: max_pool2d, avg_pool2d, adaptive_avg_pool2d, adaptive_max_pool2d and
max_unpool2d (padding, ceil_mode, dilation, overlapping windows, unbatched input).

NOTE: max pooling inputs are tie-free (a shuffled grid of distinct values 0.01 apart):
with a tie, or two values closer than the finite-difference step, the winner of a window
flips under perturbation and the numeric gradient is meaningless. The values are mostly
negative, so a max pool that padded with zeros instead of -inf would fail.
"""
import numpy as np

from minicnn import functional as F
from ..opcheck import register


def _distinct(*shape):
    """A random arrangement of distinct values, 0.01 apart, in [-1.5, ...)."""
    def make(rng):
        n = int(np.prod(shape))
        return [rng.permutation(n).reshape(shape) * 0.01 - 1.5]
    return make


def _n(*shape):
    return lambda rng: [rng.standard_normal(shape)]


def _tf():
    import torch
    return torch.nn.functional


def _pair(name, **kw):
    """(minicnn call, torch call) of one function with the same keyword arguments."""
    return (lambda x: getattr(F, name)(x, **kw), lambda x: getattr(_tf(), name)(x, **kw))


register("max_pool2d", "k=2 (stride defaults to k)", _distinct(2, 3, 6, 7),
         *_pair("max_pool2d", kernel_size=2))
register("max_pool2d", "k=3 s=2 p=1 ceil_mode, negative input", _distinct(2, 2, 6, 5),
         *_pair("max_pool2d", kernel_size=3, stride=2, padding=1, ceil_mode=True))
register("max_pool2d", "k=(3,2) s=(2,1) p=(1,0) dilation=(1,2)", _distinct(1, 2, 7, 6),
         *_pair("max_pool2d", kernel_size=(3, 2), stride=(2, 1), padding=(1, 0),
                dilation=(1, 2)))
register("max_pool2d", "overlapping k=3 s=1 return_indices", _distinct(2, 2, 5, 5),
         *_pair("max_pool2d", kernel_size=3, stride=1, return_indices=True))
register("max_pool2d", "unbatched (C,H,W) k=2 p=1", _distinct(3, 5, 4),
         *_pair("max_pool2d", kernel_size=2, padding=1))

register("avg_pool2d", "k=3 s=2 p=1", _n(2, 3, 7, 6),
         *_pair("avg_pool2d", kernel_size=3, stride=2, padding=1))
register("avg_pool2d", "ceil_mode count_include_pad=False", _n(2, 2, 6, 5),
         *_pair("avg_pool2d", kernel_size=3, stride=2, padding=1, ceil_mode=True,
                count_include_pad=False))
register("avg_pool2d", "ceil_mode count_include_pad clipped window", _n(1, 2, 5, 6),
         *_pair("avg_pool2d", kernel_size=(2, 3), stride=2, padding=1, ceil_mode=True))
register("avg_pool2d", "divisor_override=3 k=(2,3) s=1", _n(2, 1, 4, 5),
         *_pair("avg_pool2d", kernel_size=(2, 3), stride=1, divisor_override=3))
register("avg_pool2d", "unbatched (C,H,W) k=2", _n(3, 4, 6), *_pair("avg_pool2d", kernel_size=2))

register("adaptive_avg_pool2d", "7x9 -> (3,4) overlapping windows", _n(2, 3, 7, 9),
         *_pair("adaptive_avg_pool2d", output_size=(3, 4)))
register("adaptive_avg_pool2d", "global (output 1)", _n(2, 4, 5, 3),
         *_pair("adaptive_avg_pool2d", output_size=1))
register("adaptive_avg_pool2d", "(None, 2) keeps H", _n(1, 2, 3, 5),
         *_pair("adaptive_avg_pool2d", output_size=(None, 2)))
register("adaptive_avg_pool2d", "3x4 -> 5 (larger than input), unbatched", _n(2, 3, 4),
         *_pair("adaptive_avg_pool2d", output_size=5))

register("adaptive_max_pool2d", "7x9 -> (3,4) return_indices", _distinct(2, 2, 7, 9),
         *_pair("adaptive_max_pool2d", output_size=(3, 4), return_indices=True))
register("adaptive_max_pool2d", "global (output 1)", _distinct(2, 3, 4, 5),
         *_pair("adaptive_max_pool2d", output_size=1))
register("adaptive_max_pool2d", "3x4 -> (5, None), unbatched", _distinct(2, 3, 4),
         *_pair("adaptive_max_pool2d", output_size=(5, None)))


def _unpool_inputs(shape, window):
    """Values and the indices a k=s=window max pool of an (H*window, W*window) plane could
    have returned: one position per window."""
    def make(rng):
        N, C, H, W = shape
        rows = np.arange(H)[:, None] * window + rng.integers(0, window, shape)
        cols = np.arange(W) * window + rng.integers(0, window, shape)
        return [rng.standard_normal(shape), rows * (W * window) + cols]
    return make


register("max_unpool2d", "k=2 from a 2x2 pool", _unpool_inputs((2, 3, 3, 4), 2),
         lambda x, i: F.max_unpool2d(x, i, 2), lambda x, i: _tf().max_unpool2d(x, i, 2))
register("max_unpool2d", "k=3 s=2 p=1 output_size=(6, 8)", _unpool_inputs((1, 2, 3, 4), 2),
         lambda x, i: F.max_unpool2d(x, i, 3, 2, 1, output_size=(6, 8)),
         lambda x, i: _tf().max_unpool2d(x, i, 3, 2, 1, output_size=(6, 8)))
