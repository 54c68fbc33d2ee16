"""Weight initializers, as ``torch.nn.init``: same names, arguments and distributions.

Every function fills a tensor *in place* (outside the graph, as under ``no_grad``) with
numbers drawn from minicnn's seeded generator (``backend.get_rng``), and returns it.

The scale rules, for a weight with ``fan_in`` inputs and ``fan_out`` outputs per unit
(for a conv weight (C_out, C_in, KH, KW): fan_in = C_in·KH·KW, fan_out = C_out·KH·KW):

* Xavier/Glorot (Glorot & Bengio, 2010): std = gain · √(2 / (fan_in + fan_out)), chosen so
  that activations and gradients keep their variance through a linear layer.
* Kaiming/He (He et al., 2015): std = gain / √fan, with gain = √2 for ReLU, so that the
  variance survives a ReLU (which zeroes half of it).
* A uniform distribution U(-b, b) has std b / √3, so the uniform variants use b = √3 · std.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from .. import backend
from ..autograd import Tensor

__all__ = ["calculate_gain", "uniform_", "normal_", "trunc_normal_", "constant_", "ones_",
           "zeros_", "eye_", "dirac_", "xavier_uniform_", "xavier_normal_",
           "kaiming_uniform_", "kaiming_normal_", "orthogonal_", "bilinear_"]

_LINEAR_LIKE = ("linear", "identity", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                "conv_transpose2d", "conv_transpose3d", "sigmoid")


def calculate_gain(nonlinearity, param=None):
    """The factor by which a nonlinearity shrinks the standard deviation, to undo in init.

    =================  ==========================================
    linear, conv*,     1
    sigmoid
    tanh               5/3
    relu               √2
    leaky_relu         √(2 / (1 + negative_slope²)), slope = param or 0.01
    selu               3/4
    =================  ==========================================
    """
    if nonlinearity in _LINEAR_LIKE:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, (int, float)) and not isinstance(param, bool):
            slope = param
        else:
            raise ValueError(f"calculate_gain: negative_slope {param!r} is not a valid number")
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def _calculate_fan_in_and_fan_out(tensor):
    """(fan_in, fan_out) of a weight: dim 1 and dim 0 sizes, times the kernel's area.

    NOTE: for a ConvTranspose weight (in, out/groups, KH, KW) this gives fan_in =
    out/groups·KH·KW, which is what PyTorch uses too (its default init inherits the quirk).
    """
    shape = tuple(tensor.shape)
    if len(shape) < 2:
        raise ValueError(f"fan in and fan out can not be computed for a tensor with fewer "
                         f"than 2 dimensions (got shape {shape})")
    receptive_field = math.prod(shape[2:])
    return shape[1] * receptive_field, shape[0] * receptive_field


def _calculate_correct_fan(tensor, mode):
    mode = mode.lower()
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode {mode!r} is not supported, use 'fan_in' or 'fan_out'")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


# ---------------------------------------------------------------- the primitives
#
# Draws happen in float64 for a float64 tensor and float32 otherwise, then are written
# into the tensor's own array, so the tensor keeps its dtype and identity.

def _target(name, tensor):
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{name}: expected a minicnn Tensor or Parameter, got "
                        f"{type(tensor).__name__}")
    if tensor.dtype.kind != "f":
        raise TypeError(f"{name}: can only fill floating-point tensors, got {tensor.dtype}")
    xp = backend.get_array_module(tensor.array)
    draw_dtype = np.float64 if tensor.dtype == np.float64 else np.float32
    return xp, backend.get_rng(xp), draw_dtype


def _store(tensor, values):
    tensor.array[...] = values.astype(tensor.dtype, copy=False)
    return tensor


def uniform_(tensor, a=0.0, b=1.0, generator=None):
    """Fill with U(a, b)."""
    xp, rng, dt = _target("uniform_", tensor)
    rng = generator or rng
    u = rng.random(tensor.shape, dtype=dt)
    u *= b - a                      # in place: a + (b - a)·u, without whole-size temporaries
    u += a                          # (a 25088x4096 classifier weight is 411 MB in float32)
    return _store(tensor, u)


def normal_(tensor, mean=0.0, std=1.0, generator=None):
    """Fill with N(mean, std²)."""
    xp, rng, dt = _target("normal_", tensor)
    rng = generator or rng
    z = rng.standard_normal(tensor.shape, dtype=dt)
    z *= std                        # in place: mean + std·z
    z += mean
    return _store(tensor, z)


def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0, generator=None):
    """Fill with N(mean, std²) restricted to [a, b] (absolute bounds, as in torch).

    Values falling outside are redrawn until all lie inside (rejection sampling), which
    gives exactly the truncated distribution.
    """
    xp, rng, dt = _target("trunc_normal_", tensor)
    rng = generator or rng
    if not a < b:
        raise ValueError(f"trunc_normal_: expected a < b, got a={a}, b={b}")
    if mean < a - 2 * std or mean > b + 2 * std:
        warnings.warn("trunc_normal_: mean is more than 2 std from [a, b]; the values may "
                      "be far from the intended distribution", stacklevel=2)
    values = mean + std * rng.standard_normal(tensor.shape, dtype=dt)
    outside = (values < a) | (values > b)
    for _ in range(1000):
        count = int(outside.sum())
        if count == 0:
            break
        values[outside] = mean + std * rng.standard_normal(count, dtype=dt)
        outside = (values < a) | (values > b)
    else:   # only with a window far in the tail; clip the few stragglers
        values = xp.clip(values, a, b)
    return _store(tensor, values)


def constant_(tensor, val):
    """Fill with ``val``."""
    _target("constant_", tensor)
    tensor.array[...] = val
    return tensor


def ones_(tensor):
    return constant_(tensor, 1.0)


def zeros_(tensor):
    return constant_(tensor, 0.0)


def eye_(tensor):
    """A 2-D tensor becomes the identity (ones on the main diagonal)."""
    xp, _, _ = _target("eye_", tensor)
    if tensor.ndim != 2:
        raise ValueError(f"eye_: only 2-D tensors are supported, got shape {tensor.shape}")
    tensor.array[...] = xp.eye(*tensor.shape, dtype=tensor.dtype)
    return tensor


def dirac_(tensor, groups=1):
    """A conv weight (C_out, C_in, KH, KW) that passes channel i through unchanged (a one
    at the kernel centre of weight[i, i]), per group; channels beyond C_in stay zero."""
    _target("dirac_", tensor)
    if tensor.ndim not in (3, 4, 5):
        raise ValueError(f"dirac_: only 3-, 4- and 5-D tensors are supported, got shape "
                         f"{tensor.shape}")
    if tensor.shape[0] % groups:
        raise ValueError(f"dirac_: dim 0 ({tensor.shape[0]}) must be divisible by groups "
                         f"({groups})")
    out_per_group = tensor.shape[0] // groups
    tensor.array[...] = 0
    centre = tuple(k // 2 for k in tensor.shape[2:])
    for g in range(groups):
        for i in range(min(out_per_group, tensor.shape[1])):
            tensor.array[(g * out_per_group + i, i) + centre] = 1
    return tensor


def xavier_uniform_(tensor, gain=1.0, generator=None):
    """U(-b, b) with b = gain · √(6 / (fan_in + fan_out))  (Glorot & Bengio, 2010)."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound, generator)


def xavier_normal_(tensor, gain=1.0, generator=None):
    """N(0, std²) with std = gain · √(2 / (fan_in + fan_out))."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    return normal_(tensor, 0.0, std, generator)


def kaiming_uniform_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """U(-b, b) with b = √3 · gain / √fan  (He et al., 2015).

    ``a`` is the negative slope of the leaky ReLU that follows (0 for a ReLU); ``mode``
    picks fan_in (keep forward variance) or fan_out (keep backward variance).
    NOTE: PyTorch's Linear/Conv default is ``kaiming_uniform_(w, a=√5)``, which works out
    to b = 1/√fan_in.
    """
    if 0 in tuple(tensor.shape):
        warnings.warn("kaiming_uniform_: initializing a zero-element tensor is a no-op",
                      stacklevel=2)
        return tensor
    fan = _calculate_correct_fan(tensor, mode)
    std = calculate_gain(nonlinearity, a) / math.sqrt(fan)
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """N(0, std²) with std = gain / √fan  (He et al., 2015)."""
    if 0 in tuple(tensor.shape):
        warnings.warn("kaiming_normal_: initializing a zero-element tensor is a no-op",
                      stacklevel=2)
        return tensor
    fan = _calculate_correct_fan(tensor, mode)
    std = calculate_gain(nonlinearity, a) / math.sqrt(fan)
    return normal_(tensor, 0.0, std, generator)


def orthogonal_(tensor, gain=1.0, generator=None):
    """A (semi-)orthogonal matrix (Saxe et al., 2013), scaled by ``gain``.

    The tensor is viewed as rows = shape[0] by cols = the rest. Q of the QR decomposition
    of a Gaussian matrix is orthogonal; multiplying its columns by the signs of R's
    diagonal makes the result uniformly distributed over orthogonal matrices.
    """
    xp, rng, dt = _target("orthogonal_", tensor)
    rng = generator or rng
    if tensor.ndim < 2:
        raise ValueError(f"orthogonal_: only tensors with 2 or more dimensions are "
                         f"supported, got shape {tensor.shape}")
    if tensor.array.size == 0:
        return tensor
    rows = tensor.shape[0]
    cols = tensor.array.size // rows
    flat = rng.standard_normal((rows, cols), dtype=dt)
    if rows < cols:
        flat = flat.T                       # QR wants a tall matrix
    q, r = xp.linalg.qr(flat)
    q = q * xp.sign(xp.diagonal(r))         # sign fix: uniform (Haar) distribution
    if rows < cols:
        q = q.T                             # (rows, cols)
    return _store(tensor, gain * q.reshape(tensor.shape))


def bilinear_(tensor):
    """A transposed-convolution weight that upsamples each channel by bilinear interpolation
    (FCN's "deconvolution initialised to bilinear", Long, Shelhamer & Darrell, 2015).

    ``tensor`` is a ConvTranspose2d weight (C_in, C_out/groups, KH, KW). Along one axis of
    size k the kernel is

        w[i] = 1 - |i - c| / f,   f = ceil(k / 2),   c = f - 1 (k odd) or f - 0.5 (k even),

    a tent f wide centred on the kernel; the 2-D kernel is the outer product of the two
    axes' tents. Input channel i feeds output channel i only: ``weight[i, i % (C_out/groups)]``
    holds the kernel and every other entry is 0, so a (C, C, k, k) weight (groups=1) is the
    identity across channels and a grouped (C, C/g, k, k) one, depthwise (C, 1, k, k)
    included, gives each channel its own copy. NOTE: the rule is meant for C_in = C_out;
    a weight whose C_in is not a multiple of its dim 1 is refused, as no groups make it so.

    Why it interpolates: ConvTranspose2d(C, C, 2f, stride=f, padding=f/2) with this weight
    scatters each input pixel as a tent 2f wide at stride f, so every output pixel is a
    convex combination of its two nearest inputs along each axis, with the same weights as
    ``F.interpolate(scale_factor=f, mode="bilinear", align_corners=False)``; the two agree
    except within f pixels of the border, where interpolate clamps and the deconvolution
    sees zeros.

    Example, k = 4 (f = 2, c = 1.5): w = [0.25, 0.75, 0.75, 0.25]; k = 3 (f = 2, c = 1):
    w = [0.5, 1, 0.5]. Returns ``tensor``, filled in place (outside the graph).
    """
    xp, _, _ = _target("bilinear_", tensor)
    if tensor.ndim != 4:
        raise ValueError(f"bilinear_: expected a 4-D ConvTranspose2d weight (C_in, "
                         f"C_out/groups, KH, KW), got shape {tuple(tensor.shape)}")
    c_in, c_out_per_group, kh, kw = tensor.shape
    if c_in > c_out_per_group and c_in % c_out_per_group:
        raise ValueError(f"bilinear_: C_in ({c_in}) must be a multiple of dim 1 "
                         f"({c_out_per_group}) so that channel i can feed channel i; got "
                         f"shape {tuple(tensor.shape)}")
    kernel = np.outer(_tent(kh), _tent(kw))                               # (KH, KW)
    channels = xp.arange(c_in)
    tensor.array[...] = 0
    tensor.array[channels, channels % c_out_per_group] = xp.asarray(kernel, dtype=tensor.dtype)
    return tensor


def _tent(k):
    """The 1-D bilinear kernel of size k: 1 - |i - c| / f (see bilinear_)."""
    f = math.ceil(k / 2)
    c = f - 1 if k % 2 == 1 else f - 0.5
    return 1 - np.abs(np.arange(k) - c) / f
