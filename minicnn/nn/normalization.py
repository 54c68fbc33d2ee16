"""Normalization layers: BatchNorm1d/2d, LayerNorm, GroupNorm, LocalResponseNorm (across
channels, in PyTorch's or the AlexNet paper's convention) and LocalResponseNormSpatial
(within each channel).
"""
from __future__ import annotations

import numbers

import numpy as np

from .. import backend
from .. import functional as F
from ..autograd import as_tensor
from . import init
from ._utils import check_channels, check_ndim, describe, empty_parameter
from .module import Module

__all__ = ["BatchNorm1d", "BatchNorm2d", "LayerNorm", "GroupNorm", "LocalResponseNorm",
           "LocalResponseNormSpatial"]


# -------------------------------------------------------------------------- BatchNorm

class _BatchNorm(Module):
    """y = (x - E[x]) / √(Var[x] + eps) · weight + bias, per channel (Ioffe & Szegedy, 2015).

    Training: E and Var are the batch's (over N and the spatial dims), Var the *biased*
    one (divided by the count m). The running statistics then move towards them:
        running_mean ← (1 - momentum)·running_mean + momentum·mean
        running_var  ← (1 - momentum)·running_var  + momentum·var·m/(m - 1)   (unbiased)
    and ``num_batches_tracked`` counts the batches. ``momentum=None`` uses the cumulative
    average instead (factor 1/num_batches_tracked), as torch.
    Evaluation: the running statistics replace the batch's (unless
    ``track_running_stats=False``, which keeps using batch statistics).

    Parameters: ``weight`` (C,) = 1 and ``bias`` (C,) = 0 when ``affine``.
    Buffers: ``running_mean`` (C,) = 0, ``running_var`` (C,) = 1, ``num_batches_tracked``
    (int64 scalar) = 0 when ``track_running_stats``.
    """

    _ndims, _layout = (), ""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, device=None, dtype=None, *, bias=True):
        super().__init__()
        self.num_features = int(num_features)
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        _make_affine(self, (num_features,), affine, bias, device, dtype)
        if track_running_stats:
            dt = backend.get_default_dtype() if dtype is None else np.dtype(dtype)
            self.register_buffer("running_mean", _on(np.zeros(num_features, dt), device))
            self.register_buffer("running_var", _on(np.ones(num_features, dt), device))
            self.register_buffer("num_batches_tracked", _on(np.zeros((), np.int64), device))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1)
            self.num_batches_tracked.zero_()

    def reset_parameters(self):
        self.reset_running_stats()
        _reset_affine(self)

    def forward(self, input):
        return self._normalize(input, F.batch_norm)

    def _normalize(self, input, op):
        """``op(input, ...)`` with this layer's statistics and parameters, the running
        statistics' bookkeeping done first: ``op`` is ``F.batch_norm``, or
        ``F.batch_norm_relu`` when ``nn.activation`` fuses this layer with a ReLU."""
        x = as_tensor(input)
        check_ndim(self, x, self._ndims, self._layout)
        check_channels(self, x, 1, self.num_features)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.array += 1
            if self.momentum is None:       # cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked.item())
        # In eval mode, batch statistics are used only when there are no running ones.
        use_batch_stats = self.training or (self.running_mean is None
                                            and self.running_var is None)
        keep = not self.training or self.track_running_stats
        return op(x, self.running_mean if keep else None,
                  self.running_var if keep else None, self.weight, self.bias,
                  use_batch_stats, factor, self.eps)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, bias={self.bias is not None}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch normalization of (N, C) or (N, C, L) input, statistics per C (over N and L).
    See ``_BatchNorm`` for the formulas."""

    _ndims, _layout = (2, 3), "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """Batch normalization of (N, C, H, W) input, statistics per C (over N, H, W).
    See ``_BatchNorm`` for the formulas."""

    _ndims, _layout = (4,), "(N, C, H, W)"


def _on(array, device):
    return array if device is None else backend.to_device(array, device)


# ------------------------------- weight and bias of BatchNorm, LayerNorm and GroupNorm

def _make_affine(module, shape, affine, bias, device, dtype):
    """Register the learnable ``weight`` and ``bias`` of ``shape`` on ``module``, or None
    in their place (both when not ``affine``, ``bias`` alone when not ``bias``), so that
    the attributes exist either way, as in torch."""
    if affine:
        module.weight = empty_parameter(shape, device, dtype)
        if bias:
            module.bias = empty_parameter(shape, device, dtype)
        else:
            module.register_parameter("bias", None)
    else:
        module.register_parameter("weight", None)
        module.register_parameter("bias", None)


def _reset_affine(module):
    """weight = 1 and bias = 0: a fresh layer only normalises."""
    if module.weight is not None:
        init.ones_(module.weight)
    if module.bias is not None:
        init.zeros_(module.bias)


# ------------------------------------------------------------- LayerNorm, GroupNorm

class LayerNorm(Module):
    """Normalise over the trailing ``normalized_shape`` dimensions of each sample
    (Ba et al., 2016): y = (x - mean) / √(var + eps) · weight + bias, biased var.

    Parameters (if ``elementwise_affine``): ``weight`` = 1 and ``bias`` = 0, both of
    shape ``normalized_shape``.
    """

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True,
                 device=None, dtype=None):
        super().__init__()
        if isinstance(normalized_shape, numbers.Integral):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = tuple(int(n) for n in normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        _make_affine(self, self.normalized_shape, elementwise_affine, bias, device, dtype)
        self.reset_parameters()

    def reset_parameters(self):
        _reset_affine(self)

    def forward(self, input):
        x = as_tensor(input)
        n = len(self.normalized_shape)
        if x.ndim < n or tuple(x.shape[x.ndim - n:]) != self.normalized_shape:
            raise ValueError(f"{describe(self)}: expected input whose last {n} dimension(s) "
                             f"are {self.normalized_shape}, got shape {tuple(x.shape)}")
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}, bias={self.bias is not None}")


class GroupNorm(Module):
    """Split the C channels into ``num_groups`` groups and normalise each group of each
    sample over its channels and spatial positions (Wu & He, 2018); then a per-channel
    ``weight`` (C,) = 1 and ``bias`` (C,) = 0 when ``affine``."""

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True, device=None,
                 dtype=None, *, bias=True):
        super().__init__()
        if num_groups <= 0 or num_channels % num_groups:
            raise ValueError(f"GroupNorm: num_channels ({num_channels}) must be divisible by "
                             f"num_groups ({num_groups})")
        self.num_groups = int(num_groups)
        self.num_channels = int(num_channels)
        self.eps = eps
        self.affine = affine
        _make_affine(self, (num_channels,), affine, bias, device, dtype)
        self.reset_parameters()

    def reset_parameters(self):
        _reset_affine(self)

    def forward(self, input):
        x = as_tensor(input)
        if x.ndim < 2:
            raise ValueError(f"{describe(self)}: expected an input of shape (N, C, *), got "
                             f"shape {tuple(x.shape)}")
        check_channels(self, x, 1, self.num_channels)
        return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return (f"{self.num_groups}, {self.num_channels}, eps={self.eps}, "
                f"affine={self.affine}, bias={self.bias is not None}")


# ------------------------------------------------------------ local response norm

_ALPHA_SCALINGS = ("torch", "paper")


class LocalResponseNorm(Module):
    """Local response normalization across channels (Krizhevsky et al., 2012):

        b[c] = a[c] / (k + α' · Σ_{c' near c} a[c']²) ** β

    where the sum runs over ``size`` neighbouring channels (c - ⌊size/2⌋ .. c + ⌈size/2⌉ - 1,
    clipped at the edges).

    NOTE: the two conventions for α' differ.
    * ``alpha_scaling="torch"`` (default, = ``torch.nn.LocalResponseNorm``): α' = α / size,
      i.e. α multiplies the *average* of the squares.
    * ``alpha_scaling="paper"``: α' = α, as written in the AlexNet paper (α = 1e-4,
      β = 0.75, k = 2, size = 5 there); α·size is passed to the functional op so that its
      division by size cancels.
    """

    def __init__(self, size, alpha=1e-4, beta=0.75, k=1.0, alpha_scaling="torch"):
        super().__init__()
        if alpha_scaling not in _ALPHA_SCALINGS:
            raise ValueError(f"LocalResponseNorm: alpha_scaling must be 'torch' or 'paper', "
                             f"got {alpha_scaling!r}")
        if size < 1:
            raise ValueError(f"LocalResponseNorm: size must be >= 1, got {size}")
        self.size = int(size)
        self.alpha = alpha
        self.beta = beta
        self.k = k
        self.alpha_scaling = alpha_scaling

    def _functional_alpha(self):
        return self.alpha * self.size if self.alpha_scaling == "paper" else self.alpha

    def forward(self, input):
        x = as_tensor(input)
        if x.ndim < 3:
            raise ValueError(f"{describe(self)}: expected an input of shape (N, C, *) with "
                             f"at least 3 dimensions, got shape {tuple(x.shape)}")
        return F.local_response_norm(x, self.size, self._functional_alpha(), self.beta,
                                     self.k)

    def extra_repr(self):
        s = f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"
        if self.alpha_scaling != "torch":
            s += f", alpha_scaling={self.alpha_scaling!r}"
        return s


class LocalResponseNormSpatial(LocalResponseNorm):
    """Local response normalization *within* each channel, over a size×size spatial
    window (cuda-convnet's "rnorm" layer, Caffe's ``WITHIN_CHANNEL`` LRN):

        b = a / (k + α' · Σ_{size×size window} a²) ** β

    Same arguments and ``alpha_scaling`` switch as ``LocalResponseNorm``: with "torch"
    (default) α' = α / size² (α scales the *mean* square of the window, the functional
    op's convention); with "paper" α' = α. No torch twin exists.
    Shape: (N, C, H, W) (or (N, C, L): then the window is size long).
    """

    def forward(self, input):
        x = as_tensor(input)
        if x.ndim < 3:
            raise ValueError(f"{describe(self)}: expected an input of shape (N, C, H, W) or "
                             f"(N, C, L), got shape {tuple(x.shape)}")
        alpha = self.alpha
        if self.alpha_scaling == "paper":
            alpha = alpha * self.size ** (x.ndim - 2)      # the op divides by size^dims
        return F.local_response_norm_spatial(x, self.size, alpha, self.beta, self.k)
