"""Normalisation: batch_norm (and batch_norm_relu, relu(batch_norm(x)) in one op),
layer_norm, group_norm, local_response_norm (across channels, as torch) and
local_response_norm_spatial (within a channel, as cuda-convnet/Caffe).

The three statistics-based norms share one forward and one backward. Over a set of M
values (a channel across the batch, a sample's last dimensions, a group of channels)

    μ = mean(x),  σ² = mean((x - μ)²)  (biased),  x̂ = (x - μ) / sqrt(σ² + eps),
    y = γ x̂ + β                      (γ, β per channel or per normalised element)

and, writing dx̂ = γ ⊙ dy, the gradient through μ and σ is one closed form

    dx = 1/(M σ) · (M dx̂ - Σ dx̂ - x̂ Σ(dx̂ ⊙ x̂)),   σ = sqrt(σ² + eps),
    dγ = Σ dy ⊙ x̂,   dβ = Σ dy    (summed over everything that shares a γ).

(It follows from dμ/dx_i = 1/M and dσ/dx_i = x̂_i / M: the two sums are the parts of the
gradient that flow through the mean and through the variance.)

LRN has no statistics: each activation is divided by a power of the sum of squares over a
window of neighbours (``kernels/lrn.py`` does the window sums).

normalize (at the end of the file) divides each vector along a dimension by its p-norm
(SSD's L2 normalisation of conv4_3).

On the CPU, batch_norm of float32/float64 NumPy arrays runs the same formulas in compiled
loops (``kernels/numba_norm.py``, chosen by ``kernels/dispatch.py``; off with
``MINICNN_KERNELS=reference``); batch_norm_relu applies the relu inside those loops.
"""
from __future__ import annotations

import math
import numbers

from kernels import cuda_lrn, cuda_norm, dispatch, numba_norm
from kernels import lrn as _lrn

from .. import backend
from ..autograd import Function, Tensor, as_tensor
from ._checks import float_input, positive_int

__all__ = ["batch_norm", "batch_norm_relu", "layer_norm", "group_norm", "local_response_norm",
           "local_response_norm_spatial", "normalize"]


# ===================================================================== batch_norm

def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """Batch normalisation (Ioffe & Szegedy 2015), as ``torch.nn.functional.batch_norm``.

    Each channel c is normalised over the batch and every spatial position:

        y[n, c, ...] = γ_c (x[n, c, ...] - μ_c) / sqrt(σ²_c + eps) + β_c

    Shapes: input (N, C), (N, C, L), (N, C, H, W) or (N, C, D, H, W); running_mean,
    running_var, weight, bias (C,); output as input. M = N·L (or N·H·W, ...) values per
    channel.

    ``training=True``: μ_c and σ²_c are the batch's mean and *biased* variance (divide
    by M), and, when running statistics are given, they are updated **in place**
    (their ``.array``) with the *unbiased* variance (divide by M - 1), as torch does:

        running_mean ← (1 - momentum) running_mean + momentum μ
        running_var  ← (1 - momentum) running_var  + momentum σ² M / (M - 1)

    ``running_mean``/``running_var`` may be None in training (no tracking).
    ``training=False``: the running statistics are used and nothing is updated.

    ``momentum`` must be a number. NOTE: ``momentum=None`` (a cumulative average) is a
    BatchNorm *module* setting: the module turns it into the number 1/num_batches_tracked
    before calling this function, and torch's functional raises TypeError for None, as
    this one does.

    Gradients: training, the closed form of the module docstring with M values per
    channel; eval, the statistics are constants so dx = γ dy / sqrt(running_var + eps).
    In both, dγ = Σ dy x̂ and dβ = Σ dy over (N, spatial). The running statistics
    receive no gradient.
    """
    return _batch_norm("batch_norm", BatchNorm, input, running_mean, running_var, weight,
                       bias, training, momentum, eps)


def batch_norm_relu(input, running_mean, running_var, weight=None, bias=None,
                    training=False, momentum=0.1, eps=1e-5):
    """``relu(batch_norm(input, ...))`` as one op: the same values, gradients and running
    statistics (updated in place in training, exactly as :func:`batch_norm` does), with
    the relu applied as the normalised values are written and its mask applied as the
    gradient is read, instead of passes of its own.

    Arguments, shapes and errors as :func:`batch_norm`. Gradient: batch norm's, of the
    upstream gradient kept only where the output is > 0 (relu' = [y > 0]: 0 at exactly
    0, as torch, and 0 at NaN, as minicnn's relu). minicnn only: torch has no such
    function; ``nn.Sequential`` and the ResNets reach it through
    ``nn.activation.norm_then_act`` / ``fused_pair``.
    """
    return _batch_norm("batch_norm_relu", BatchNormReLU, input, running_mean, running_var,
                       weight, bias, training, momentum, eps)


def _batch_norm(op, function, input, running_mean, running_var, weight, bias, training,
                momentum, eps):
    """Check batch_norm's arguments (errors name ``op``), then apply ``function``."""
    x = float_input(op, input)
    if x.ndim < 2:
        raise ValueError(f"{op}: expected input of shape (N, C) or (N, C, *), got "
                         f"shape {tuple(x.shape)} ({x.ndim} dimension(s))")
    channels = x.shape[1]
    rm = _buffer(op, "running_mean", running_mean, channels, x.shape)
    rv = _buffer(op, "running_var", running_var, channels, x.shape)
    if (rm is None) != (rv is None):
        raise ValueError(f"{op}: give both running_mean and running_var, or neither")
    if not training and rm is None:
        raise RuntimeError(f"{op}: running_mean and running_var must be given in "
                           f"evaluation mode (training=False)")
    if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real):
        raise TypeError(f"{op}: momentum must be a number, got {momentum!r} (for a "
                        f"cumulative average pass 1 / num_batches_tracked, as "
                        f"nn.BatchNorm does)")
    weight, bias = _affine(op, x, weight, bias, (channels,), "one per channel")
    if training:
        per_channel = x.shape[0] * math.prod(x.shape[2:])
        if per_channel == 1:
            raise ValueError(f"{op}: Expected more than 1 value per channel when "
                             f"training, got input size {tuple(x.shape)}")
    return function(None if rm is None else rm.array, None if rv is None else rv.array,
                    bool(training), float(momentum), float(eps))(x, weight, bias)


class BatchNorm(Function):
    relu = False        # BatchNormReLU: relu(batch_norm(x)) in the same passes

    def __init__(self, running_mean, running_var, training, momentum, eps):
        # raw arrays, updated in place; they are state, not differentiable inputs
        self.running_mean, self.running_var = running_mean, running_var
        self.training, self.momentum, self.eps = training, momentum, eps

    def forward(self, x, weight, bias):
        self.empty = self.training and x.size == 0
        if self.empty:
            # NOTE: an empty batch has no statistics. As torch: the output is empty, the
            # running statistics are left as they are, and the gradients of weight and
            # bias are zeros.
            self.fast, self.channels = False, x.shape[1]
            self.relu_out = None
            return x.copy()
        self.fast = (dispatch.use_fast(x, weight, bias)
                     and dispatch.on_host(self.running_mean, self.running_var))
        if self.fast:
            # the same formulas in a few compiled passes; keeps the input and the (C,)
            # float64 statistics instead of x̂
            if self.training:
                out, mean, inv_std, var = numba_norm.batch_norm_train(x, weight, bias,
                                                                      self.eps, self.relu)
                if self.running_mean is not None:
                    self._update_running(mean, var, x.size // x.shape[1])
            else:
                mean = self.running_mean.astype(float)
                inv_std = 1 / (self.running_var.astype(float) + self.eps) ** 0.5
                out = numba_norm.batch_norm_eval(x, mean, inv_std, weight, bias, self.relu)
            if any(self.needs_input_grad):
                self.x, self.mean, self.inv_std, self.weight = x, mean, inv_std, weight
                # relu's mask is read from the output (which the next layer keeps anyway)
                self.relu_out = out if self.relu else None
            return out
        xp = backend.get_array_module(x)
        axes = (0,) + tuple(range(2, x.ndim))           # all but the channel axis
        per_channel = (1, x.shape[1]) + (1,) * (x.ndim - 2)   # (1, C, 1, ...) broadcasts
        if self.training:
            if dispatch.use_cuda(x):
                # the statistics in one GPU launch (kernels/cuda_norm.py)
                inv_std, mean, var = cuda_norm.batch_norm_statistics(x, self.eps)
                xhat = (x - mean) * inv_std
            else:
                xhat, inv_std, mean, var = _standardize(x, axes, self.eps)
            if self.running_mean is not None:
                self._update_running(mean.reshape(-1), var.reshape(-1), x.size // x.shape[1])
        else:
            mean = self.running_mean.reshape(per_channel).astype(x.dtype, copy=False)
            var = self.running_var.reshape(per_channel).astype(x.dtype, copy=False)
            inv_std = 1 / xp.sqrt(var + self.eps)
            xhat = (x - mean) * inv_std
        out = xhat if weight is None else xhat * weight.reshape(per_channel)
        if bias is not None:
            out = out + bias.reshape(per_channel)
        if self.relu:
            # relu as minicnn's ReLU computes it; its mask is read from the output
            out = xp.maximum(out, 0, dtype=out.dtype)
        if any(self.needs_input_grad):
            self.axes, self.per_channel = axes, per_channel
            self.xhat, self.inv_std, self.weight = xhat, inv_std, weight
            self.relu_out = out if self.relu else None
        return out

    def backward(self, g):
        if self.empty:
            xp = backend.get_array_module(g)
            zeros = [xp.zeros(self.channels, dtype=g.dtype) if need else None
                     for need in self.needs_input_grad[1:]]
            return (g.copy() if self.needs_input_grad[0] else None, *zeros)
        if self.fast:
            return numba_norm.batch_norm_backward(g, self.x, self.mean, self.inv_std,
                                                  self.weight, self.training,
                                                  *self.needs_input_grad,
                                                  relu_out=self.relu_out)
        if self.relu:
            g = g * (self.relu_out > 0)             # relu's backward, as ReLU does it
        gx = gw = gb = None
        if self.needs_input_grad[0]:
            gxhat = g if self.weight is None else g * self.weight.reshape(self.per_channel)
            if self.training:
                gx = _standardize_backward(gxhat, self.xhat, self.inv_std, self.axes)
            else:
                gx = gxhat * self.inv_std
        if self.needs_input_grad[1]:
            gw = (g * self.xhat).sum(axis=self.axes)
        if self.needs_input_grad[2]:
            gb = g.sum(axis=self.axes)
        return gx, gw, gb

    def _update_running(self, mean, var, count):
        m = self.momentum
        # NOTE: normalise with the biased variance, track the unbiased one
        unbiased = var * (count / (count - 1))
        self.running_mean[...] = (1 - m) * self.running_mean + m * mean
        self.running_var[...] = (1 - m) * self.running_var + m * unbiased


class BatchNormReLU(BatchNorm):
    relu = True


# ===================================================================== layer_norm

def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Layer normalisation (Ba, Kiros & Hinton 2016), as ``torch.nn.functional.layer_norm``.

    Each sample is normalised over its last ``len(normalized_shape)`` dimensions, which
    must equal ``normalized_shape``; γ and β have that shape (one per normalised element):

        y = γ (x - μ) / sqrt(σ² + eps) + β,   μ, σ² over the M = prod(normalized_shape)
                                              trailing values (biased variance)

    Shapes: input (*, *normalized_shape), weight and bias normalized_shape, output as
    input. ``normalized_shape`` may be an int (as for ``nn.LayerNorm``).
    Gradients: the closed form of the module docstring over the M trailing values;
    dγ = Σ dy x̂ and dβ = Σ dy over the leading dimensions. Training and evaluation are
    the same computation.
    """
    x = float_input("layer_norm", input)
    shape = (normalized_shape,) if isinstance(normalized_shape, numbers.Integral) \
        else tuple(normalized_shape)
    if not shape or not all(isinstance(s, numbers.Integral) and s > 0 for s in shape):
        raise RuntimeError(f"layer_norm: normalized_shape must be a non-empty sequence of "
                           f"positive integers, got {normalized_shape!r}")
    shape = tuple(int(s) for s in shape)
    if x.ndim < len(shape) or tuple(x.shape[x.ndim - len(shape):]) != shape:
        raise RuntimeError(f"layer_norm: given normalized_shape={list(shape)}, expected "
                           f"input with shape [*, {', '.join(map(str, shape))}], but got "
                           f"input of shape {tuple(x.shape)}")
    weight, bias = _affine("layer_norm", x, weight, bias, shape, "normalized_shape")
    return LayerNorm(len(shape), float(eps))(x, weight, bias)


class LayerNorm(Function):
    def __init__(self, num_dims, eps):
        self.num_dims, self.eps = num_dims, eps

    def forward(self, x, weight, bias):
        lead = x.ndim - self.num_dims
        axes = tuple(range(lead, x.ndim))            # the normalised (trailing) axes
        xhat, inv_std, _, _ = _standardize(x, axes, self.eps)
        out = xhat if weight is None else xhat * weight    # weight broadcasts from the right
        if bias is not None:
            out = out + bias
        if any(self.needs_input_grad):
            self.axes, self.lead_axes = axes, tuple(range(lead))
            self.xhat, self.inv_std, self.weight = xhat, inv_std, weight
        return out

    def backward(self, g):
        gx = gw = gb = None
        if self.needs_input_grad[0]:
            gxhat = g if self.weight is None else g * self.weight
            gx = _standardize_backward(gxhat, self.xhat, self.inv_std, self.axes)
        if self.needs_input_grad[1]:
            gw = (g * self.xhat).sum(axis=self.lead_axes)
        if self.needs_input_grad[2]:
            gb = g.sum(axis=self.lead_axes)
        return gx, gw, gb


# ===================================================================== group_norm

def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5):
    """Group normalisation (Wu & He 2018), as ``torch.nn.functional.group_norm``.

    The C channels of each sample are split into ``num_groups`` consecutive groups of
    C/G channels; each group is normalised over its channels and all spatial positions
    (M = C/G · H · W values), then scaled and shifted per *channel*:

        y[n, c, ...] = γ_c (x[n, c, ...] - μ_{n,g}) / sqrt(σ²_{n,g} + eps) + β_c

    G = 1 is layer norm over (C, H, W) with per-channel γ; G = C is instance norm.
    Shapes: input (N, C, *), weight and bias (C,), output as input.
    Gradients: the closed form of the module docstring over each group's M values;
    dγ_c = Σ dy x̂ and dβ_c = Σ dy over N and the spatial positions.
    """
    x = float_input("group_norm", input)
    if x.ndim < 2:
        raise RuntimeError(f"group_norm: expected input of shape (N, C, *) with at least 2 "
                           f"dimensions, got shape {tuple(x.shape)}")
    num_groups = positive_int("group_norm", "num_groups", num_groups)
    channels = x.shape[1]
    if channels % num_groups:
        raise RuntimeError(f"group_norm: expected the number of channels in input to be "
                           f"divisible by num_groups, but got input of shape "
                           f"{tuple(x.shape)} and num_groups={num_groups}")
    weight, bias = _affine("group_norm", x, weight, bias, (channels,), "one per channel")
    # torch refuses a group of a single value (its variance is 0 and x̂ is 0)
    if x.shape[0] * (channels // num_groups) * math.prod(x.shape[2:]) == 1:
        raise ValueError(f"group_norm: Expected more than 1 value per channel when "
                         f"training, got input size {tuple(x.shape)} with "
                         f"num_groups={num_groups}")
    return GroupNorm(int(num_groups), float(eps))(x, weight, bias)


class GroupNorm(Function):
    def __init__(self, num_groups, eps):
        self.num_groups, self.eps = num_groups, eps

    def forward(self, x, weight, bias):
        n = x.shape[0]
        grouped = x.reshape(n, self.num_groups, -1)      # (N, G, C/G · spatial)
        xhat_g, inv_std, _, _ = _standardize(grouped, (2,), self.eps)
        xhat = xhat_g.reshape(x.shape)                   # back to (N, C, *)
        per_channel = (1, x.shape[1]) + (1,) * (x.ndim - 2)
        out = xhat if weight is None else xhat * weight.reshape(per_channel)
        if bias is not None:
            out = out + bias.reshape(per_channel)
        if any(self.needs_input_grad):
            self.per_channel = per_channel
            self.axes = (0,) + tuple(range(2, x.ndim))   # what shares a γ_c
            self.xhat_g, self.inv_std, self.weight = xhat_g, inv_std, weight
        return out

    def backward(self, g):
        gx = gw = gb = None
        xhat = self.xhat_g.reshape(g.shape)
        if self.needs_input_grad[0]:
            gxhat = g if self.weight is None else g * self.weight.reshape(self.per_channel)
            gxhat_g = gxhat.reshape(self.xhat_g.shape)   # (N, G, C/G · spatial)
            gx = _standardize_backward(gxhat_g, self.xhat_g, self.inv_std, (2,))
            gx = gx.reshape(g.shape)
        if self.needs_input_grad[1]:
            gw = (g * xhat).sum(axis=self.axes)
        if self.needs_input_grad[2]:
            gb = g.sum(axis=self.axes)
        return gx, gw, gb


# ============================================================ local_response_norm

def local_response_norm(input, size, alpha=1e-4, beta=0.75, k=1.0):
    """Local response normalisation across channels (Krizhevsky, Sutskever & Hinton 2012,
    §3.3), as ``torch.nn.functional.local_response_norm``:

        b[n, c, ...] = a[n, c, ...] / d[n, c, ...]^β,
        d[n, c, ...] = k + α/n · Σ_{c' = c - n//2}^{c + (n-1)//2} a[n, c', ...]²

    with n = ``size`` and channels outside 0..C-1 counting as zeros. NOTE: α is divided by
    n (torch's convention; the paper's α is not), and for an even n the window has one
    more channel before c than after it, as torch's padding puts it.

    Shapes: input (N, C, *) with at least 3 dimensions, output as input.
    Gradient, with window(j) the channels in the window of channel j (the sum runs over
    the channels j whose window holds i, the window mirrored):

        dx_i = g_i d_i^-β - 2αβ/n · a_i · Σ_{j : i ∈ window(j)} g_j a_j d_j^(-β-1)
    """
    x = _lrn_input("local_response_norm", input, size)
    if x.numel() == 0:
        return x
    return LocalResponseNorm(int(size), float(alpha), float(beta), float(k), spatial=False)(x)


class LocalResponseNorm(Function):
    def __init__(self, size, alpha, beta, k, spatial):
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k
        self.spatial = spatial

    def _window_sum(self, a, before):
        if self.spatial:
            return _lrn.spatial_window_sum(a, self.size, before)
        if dispatch.use_cuda(a):
            return cuda_lrn.channel_window_sum(a, self.size, before)
        return _lrn.channel_window_sum(a, self.size, before)

    def forward(self, x):
        window = self.size ** (x.ndim - 2) if self.spatial else self.size
        self.scale = self.alpha / window                 # α/n: α times the mean square
        before = self.size // 2                          # torch's centring
        d = self.k + self.scale * self._window_sum(x * x, before)
        d_pow = d ** self.beta
        if self.needs_input_grad[0]:
            self.x, self.d, self.d_pow, self.before = x, d, d_pow, before
        return x / d_pow

    def backward(self, g):
        # t_j = g_j a_j d_j^(-β-1), summed back over the windows that hold each i
        t = g * self.x / (self.d_pow * self.d)
        back = self._window_sum(t, _lrn.transposed_before(self.size, self.before))
        return g / self.d_pow - (2 * self.beta * self.scale) * self.x * back


def local_response_norm_spatial(input, size, alpha=1e-4, beta=0.75, k=1.0):
    """Local response normalisation *within* each channel, over a spatial neighbourhood:
    the "rnorm" layer of cuda-convnet and Caffe's ``WITHIN_CHANNEL`` LRN, as used by
    AlexNet-era CIFAR-10 nets (e.g. Caffe's cifar10_full: size 3, α = 5e-5, β = 0.75).
    Krizhevsky et al. 2012 use the cross-channel form. torch has no counterpart.

        b[n, c, h, w] = a[n, c, h, w] / d[n, c, h, w]^β,
        d[n, c, h, w] = k + α/n² · Σ_{(h', w') ∈ window(h, w)} a[n, c, h', w']²

    The window is n × n (n = ``size``), zero-padded, placed along each spatial axis as
    torch places its channel window (n//2 before, (n-1)//2 after). NOTE: α is divided by
    the number of window elements, n² here (n for (N, C, L) input, n³ for (N, C, D, H, W)):
    α scales the *mean* square over the window, the same convention as torch's α/n
    across channels, and Caffe's.

    Shapes: input (N, C, *) with at least 3 dimensions, output as input.
    Gradient, with s = α/n² and window(j) the window of position j:

        dx_i = g_i d_i^-β - 2βs · a_i · Σ_{j : i ∈ window(j)} g_j a_j d_j^(-β-1)
    """
    x = _lrn_input("local_response_norm_spatial", input, size)
    if x.numel() == 0:
        return x
    return LocalResponseNorm(int(size), float(alpha), float(beta), float(k), spatial=True)(x)


# ======================================================================== helpers

def _standardize(x, axes, eps):
    """x̂ = (x - μ) / sqrt(σ² + eps) over ``axes`` with the biased σ².

    Returns x̂, 1/sqrt(σ² + eps), μ and σ² (the last three with the reduced axes kept
    as size 1, so they broadcast against x).
    """
    xp = backend.get_array_module(x)
    mean = x.mean(axis=axes, keepdims=True)
    centred = x - mean
    var = (centred * centred).mean(axis=axes, keepdims=True)   # two passes: no cancellation
    inv_std = 1 / xp.sqrt(var + eps)
    return centred * inv_std, inv_std, mean, var


def _standardize_backward(gxhat, xhat, inv_std, axes):
    """dx = 1/(Mσ) (M dx̂ - Σ dx̂ - x̂ Σ dx̂x̂), written with means instead of sums
    (``gxhat`` is dx̂ = dL/dx̂)."""
    mean_g = gxhat.mean(axis=axes, keepdims=True)
    mean_gx = (gxhat * xhat).mean(axis=axes, keepdims=True)
    return inv_std * (gxhat - mean_g - xhat * mean_gx)


def _lrn_input(op, input, size):
    x = float_input(op, input)
    if x.ndim < 3:
        raise ValueError(f"{op}: expected 3D or higher dimensionality input (N, C, *), got "
                         f"{x.ndim} dimensions (shape {tuple(x.shape)})")
    positive_int(op, "size", size)
    return x


def _buffer(op, name, value, channels, input_shape):
    """A running-statistics buffer as a Tensor sharing the caller's array (or None)."""
    if value is None:
        return None
    if not isinstance(value, Tensor):
        if not (hasattr(value, "shape") and hasattr(value, "dtype")):
            # NOTE: a list would be copied, and the in-place update silently lost
            raise TypeError(f"{op}: {name} must be a Tensor (or an array), got "
                            f"{type(value).__name__}")
        value = Tensor._wrap(value)
    if value.dtype.kind != "f":
        raise TypeError(f"{op}: {name} must be floating point, got {value.dtype}")
    if tuple(value.shape) != (channels,):
        raise RuntimeError(f"{op}: {name} should contain {channels} elements (one per "
                           f"channel of input shape {tuple(input_shape)}), got shape "
                           f"{tuple(value.shape)}")
    return value


def _affine(op, x, weight, bias, shape, what):
    """Check γ and β: shape ``shape`` and the input's dtype; return them as Tensors."""
    out = []
    for name, value in (("weight", weight), ("bias", bias)):
        if value is None:
            out.append(None)
            continue
        value = as_tensor(value)
        if tuple(value.shape) != tuple(shape):
            raise RuntimeError(f"{op}: expected {name} of shape {tuple(shape)} ({what}), got "
                               f"{name} of shape {tuple(value.shape)} for input of shape "
                               f"{tuple(x.shape)}")
        if value.dtype != x.dtype:
            raise TypeError(f"{op}: {name} dtype {value.dtype} does not match input dtype "
                            f"{x.dtype}")
        out.append(value)
    return out


# ====================================================================== normalize

def normalize(input, p=2.0, dim=1, eps=1e-12):
    """Scale each vector along ``dim`` to unit p-norm, as ``torch.nn.functional.normalize``:

        y = x / max(‖x‖_p, eps),   ‖x‖_p = (Σ_j |x_j|^p)^(1/p) over ``dim``  (max |x_j| for
                                                                          p = inf)

    ``eps`` keeps an all-zero vector at zero instead of dividing by 0. SSD rescales VGG's
    conv4_3 map this way per position (across channels, ``dim=1``) before a learned
    per-channel scale (Liu et al. 2016, §3.1; ParseNet, Liu, Rabinovich & Berg 2015).

    Shapes: input of any shape with at least one dimension; output as input.
    ``p`` a positive number or ``inf`` (torch also takes p <= 0, which minicnn refuses).

    Gradient, with d = max(n, eps), n = ‖x‖_p and s = Σ_j g_j x_j along ``dim``:

        dx_i = g_i / d - s / d² · ∂n/∂x_i · [n >= eps],
        ∂n/∂x_i = sign(x_i) |x_i|^(p-1) / n^(p-1)    (x_i / n for p = 2, sign(x_i) for p = 1)

    taken as 0 where n = 0 or x_i = 0, and for p = inf sign(x_i) shared equally among the
    entries with |x_i| = n (torch's conventions; its clamp passes the gradient at n = eps).
    """
    x = float_input("normalize", input)
    if x.ndim == 0:
        raise ValueError("normalize: expected an input with at least one dimension, got a "
                         "0-d tensor")
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not p > 0:
        raise ValueError(f"normalize: p must be a positive number or inf, got {p!r}")
    if isinstance(dim, bool) or not isinstance(dim, numbers.Integral):
        raise TypeError(f"normalize: dim must be an int, got {dim!r}")
    if not -x.ndim <= dim < x.ndim:
        raise IndexError(f"normalize: dim {dim} is out of range for an input of shape "
                         f"{tuple(x.shape)} (expected in [{-x.ndim}, {x.ndim - 1}])")
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or eps < 0:
        raise ValueError(f"normalize: eps must be a non-negative number, got {eps!r}")
    return Normalize(float(p), int(dim) % x.ndim, float(eps))(x)


class Normalize(Function):
    def __init__(self, p, dim, eps):
        self.p, self.dim, self.eps = p, dim, eps

    def forward(self, x):
        xp = backend.get_array_module(x)
        norm = _vector_norm(xp, x, self.p, self.dim)           # (.., 1, ..): kept dim
        denom = xp.maximum(norm, xp.asarray(self.eps, dtype=x.dtype))
        if self.needs_input_grad[0]:
            self.x, self.norm, self.denom = x, norm, denom
        return x / denom

    def backward(self, g):
        xp = backend.get_array_module(g)
        x, norm, denom = self.x, self.norm, self.denom
        # through the division by d, then through d = max(n, eps) into n = ‖x‖_p
        gnorm = -(g * x).sum(axis=self.dim, keepdims=True) / (denom * denom)
        gnorm = xp.where(norm >= self.eps, gnorm, 0)
        return g / denom + gnorm * _vector_norm_grad(xp, x, norm, self.p, self.dim)


def _vector_norm(xp, x, p, dim):
    """‖x‖_p along ``dim`` with that dimension kept (size 1)."""
    a = xp.abs(x)
    if math.isinf(p):
        return a.max(axis=dim, keepdims=True) if x.shape[dim] else \
            xp.zeros_like(a.sum(axis=dim, keepdims=True))
    if p == 2:
        return xp.sqrt((x * x).sum(axis=dim, keepdims=True))
    if p == 1:
        return a.sum(axis=dim, keepdims=True)
    return (a ** p).sum(axis=dim, keepdims=True) ** (1 / p)


def _vector_norm_grad(xp, x, norm, p, dim):
    """∂‖x‖_p/∂x (same shape as x), 0 where the norm is 0 (torch's choice there)."""
    safe = xp.where(norm == 0, 1, norm)                  # no 0/0; masked below
    if math.isinf(p):
        # the maximum's gradient, shared equally among tied entries (as torch)
        at_max = (xp.abs(x) == norm).astype(x.dtype)
        grad = xp.sign(x) * at_max / xp.maximum(at_max.sum(axis=dim, keepdims=True), 1)
    elif p == 2:
        grad = x / safe
    elif p == 1:
        grad = xp.sign(x)
    else:
        a = xp.abs(x)
        # |x|^(p-1) is taken as 0 at x = 0 (for p < 1 it would be infinite)
        powered = xp.where(a == 0, 0, xp.where(a == 0, 1, a) ** (p - 1))
        grad = xp.sign(x) * powered / safe ** (p - 1)
    return xp.where(norm == 0, 0, grad)
