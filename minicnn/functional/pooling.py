"""Pooling: max_pool2d (and relu_max_pool2d, max pooling of relu(x) in one op),
avg_pool2d, adaptive_avg_pool2d, adaptive_max_pool2d and max_unpool2d, with
torch.nn.functional's semantics and argument names.

Notation: N batch, C channels, H×W input, KH×KW kernel, SH×SW stride, PH×PW padding
(each side), DH×DW dilation, OH×OW output. Every op also takes unbatched (C, H, W)
input and then returns (C, OH, OW), as torch does.

The window arithmetic lives in ``kernels/pooling.py`` (a loop over kernel offsets, one
strided slice of the whole batch per offset); on the CPU, max pooling of float32/float64
NumPy arrays runs the compiled twin in ``kernels/numba_pool.py`` (same results; chosen by
``kernels/dispatch.py``, off with ``MINICNN_KERNELS=reference``). The gradients:

* max pooling routes each output's gradient to the input position that won its window
  (positions that win several overlapping windows receive the sum); relu_max_pool2d,
  max pooling of relu(x) fused into one op, only where its output is > 0;
* average pooling spreads each output's gradient, divided by that window's divisor,
  over the window: the transpose of the forward sum;
* max unpooling's gradient is a gather of the upstream gradient at ``indices``.

Conventions, each torch's: max pooling pads with -inf (a padded position never wins,
however negative the input), the output size rounds down unless ``ceil_mode``, padding
may be at most half the kernel, ties go to the first maximum in row-major order within
the window, and a NaN in a window wins.
"""
from __future__ import annotations

import numbers

from kernels import cuda_pool, dispatch, numba_pool
from kernels import pooling as _kp

from .. import backend
from ..autograd import Function, as_tensor
from ._checks import check_float, pair

__all__ = ["max_pool2d", "relu_max_pool2d", "avg_pool2d", "adaptive_avg_pool2d",
           "adaptive_max_pool2d", "max_unpool2d"]


class _Pool(Function):
    """What the pooling Functions share: unbatched (C, H, W) input gets a batch axis on
    the way in (a view) and loses it on the way out; the gradient likewise."""

    unbatched = False

    def _batch(self, a):
        return a[None] if self.unbatched else a

    def _strip(self, a):
        return a[0] if self.unbatched else a


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """The maximum over each (dilated) KH×KW window, as ``torch.nn.functional.max_pool2d``::

        out[n, c, i, j] = max_{kh, kw} x_pad[n, c, i·SH + kh·DH, j·SW + kw·DW]

    where ``x_pad`` is ``x`` with PH rows and PW columns of -inf on each side (and, with
    ``ceil_mode``, as many more at the bottom/right as the last window needs). NOTE: -inf,
    not 0: with zeros an all-negative window would return 0.

    Args: ``kernel_size``, ``stride`` (default: ``kernel_size``), ``padding``,
    ``dilation``: an int or an (h, w) pair; kernel, stride and dilation >= 1,
    0 <= padding <= kernel_size // 2. ``ceil_mode``: round the output size up instead
    of down. ``return_indices``: also return where each maximum came from.

    Shape:
        input (N, C, H, W) or (C, H, W); output (N, C, OH, OW) or (C, OH, OW) with
        OH = floor((H + 2·PH - DH·(KH - 1) - 1) / SH) + 1, likewise OW. With
        ``ceil_mode`` the floor becomes a ceiling, except that the last window must
        start inside the input or the top/left padding: when (OH - 1)·SH >= H + PH,
        OH is one less.
        indices: int64, the output's shape, the flat position h·W + w of the maximum
        within its (n, c) plane of the *unpadded* input (what ``max_unpool2d`` takes).

    Ties: the first maximum in row-major window order wins (so does the gradient), and
    a NaN wins over any number, as in torch's CPU kernel.
    Gradient: dL/dx[n, c, h, w] = Σ dL/dout[n, c, i, j] over the windows (i, j) whose
    maximum is (h, w).
    """
    x = as_tensor(input)
    window = _max_pool_window("max_pool2d", x, kernel_size, stride, padding, dilation,
                              ceil_mode)
    return MaxPool2d(*window, bool(return_indices))(x)


class MaxPool2d(_Pool):
    relu = False            # ReLUMaxPool2d: max pooling of relu(x)

    def __init__(self, kernel, stride, padding, dilation, out_size, return_indices):
        self.window = (kernel, stride, padding, dilation)
        self.out_size, self.return_indices = out_size, return_indices

    def forward(self, x):
        self.unbatched = x.ndim == 3
        x = self._batch(x)
        need_grad = self.needs_input_grad[0]
        with_argmax = need_grad or self.return_indices
        self.fast = dispatch.use_fast(x)
        self.gpu = not self.fast and dispatch.use_cuda(x)
        if self.fast:
            out, argmax = numba_pool.max_pool2d_forward(x, *self.window, self.out_size,
                                                        with_argmax=with_argmax,
                                                        relu=self.relu)
        elif self.gpu:
            out, argmax = cuda_pool.max_pool2d_forward(x, *self.window, self.out_size,
                                                       with_argmax=with_argmax)
            if self.relu:
                backend.get_array_module(out).maximum(out, 0, out=out)
        else:
            out, argmax = _kp.max_pool2d_forward(x, *self.window, self.out_size,
                                                 with_argmax=with_argmax, relu=self.relu)
        if need_grad:
            # the winning kernel offset per output, one byte each for kernels up to 16x16;
            # with relu also the output (the next layer keeps it anyway): where it is not
            # > 0 no gradient passes
            self.argmax, self.in_shape = argmax, x.shape
            self.relu_out = out if self.relu else None
        if not self.return_indices:
            return self._strip(out)
        indices = _kp.max_pool2d_indices(argmax, x.shape[2:], *self.window)
        return self._strip(out), self._strip(indices)

    def backward(self, g, g_indices=None):
        g = self._batch(g)
        if self.fast:
            gx = numba_pool.max_pool2d_backward(g, self.argmax, self.in_shape, *self.window,
                                                relu_out=self.relu_out)
        elif self.gpu:
            if self.relu:
                g = backend.get_array_module(g).where(self.relu_out > 0, g, 0)
            gx = cuda_pool.max_pool2d_backward(g, self.argmax, self.in_shape, *self.window)
        else:
            gx = _kp.max_pool2d_backward(g, self.argmax, self.in_shape, *self.window,
                                         relu_out=self.relu_out)
        return self._strip(gx)


def relu_max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """``max_pool2d(relu(input), ...)`` as one op: the same values and gradients, in one
    pass over the input (relu then max pooling make three: relu's mask, relu, the pool).

    Because relu is monotone, ``max(relu(a), relu(b), ...) = relu(max(a, b, ...))``: the
    op takes each window's maximum (as :func:`max_pool2d`: padding is -inf, the first
    maximum wins ties, a NaN wins) and clamps it at 0. Gradient: an output > 0 sends its
    gradient to its window's winner (which is > 0, where relu' = 1); an output of 0
    sends nothing, since every tap of its window is <= 0, where relu' = 0 (torch's
    convention at exactly 0), whichever tap max pooling picked. NOTE: a NaN output
    sends nothing either, as minicnn's relu gives no gradient at NaN (torch's passes it).

    Args, shapes and errors as :func:`max_pool2d` (no ``return_indices``: the index of
    a window of zeros would depend on which zero won). minicnn only: torch has no such
    function (its eager mode runs the two ops); ``nn.Sequential`` and LeNet-5 reach it
    through ``nn.activation.act_then_pool`` / ``fused_pair``.
    """
    x = as_tensor(input)
    window = _max_pool_window("relu_max_pool2d", x, kernel_size, stride, padding, dilation,
                              ceil_mode)
    return ReLUMaxPool2d(*window, False)(x)


class ReLUMaxPool2d(MaxPool2d):
    relu = True


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    """The mean over each KH×KW window, as ``torch.nn.functional.avg_pool2d``::

        out[n, c, i, j] = (1 / d_ij) Σ_{kh, kw} x_pad[n, c, i·SH + kh, j·SW + kw]

    with zero padding. The divisor ``d_ij`` is torch's:

    * ``divisor_override`` if given (a non-zero int);
    * else with ``count_include_pad=True`` (default), the window's area after clipping
      it at the far edge of the padded input: padded zeros count, but the part of a
      ``ceil_mode`` window hanging past the padding does not;
    * else (``count_include_pad=False``) the number of window positions inside the
      input.

    Args as in :func:`max_pool2d` (no dilation): kernel and stride >= 1,
    0 <= padding <= kernel_size // 2.

    Shape:
        input (N, C, H, W) or (C, H, W); output (N, C, OH, OW) or (C, OH, OW) with
        OH = floor((H + 2·PH - KH) / SH) + 1 (ceil_mode as in :func:`max_pool2d`).

    Gradient: dL/dx[n, c, h, w] = Σ dL/dout[n, c, i, j] / d_ij over the windows (i, j)
    that cover (h, w).
    """
    op = "avg_pool2d"
    x = as_tensor(input)
    _check_input(op, x)
    kernel, stride, padding, _ = _window_args(op, kernel_size, stride, padding, 1)
    if divisor_override is not None:
        if (not isinstance(divisor_override, numbers.Integral)
                or isinstance(divisor_override, bool)):
            raise TypeError(f"{op}: divisor_override must be an int or None, got "
                            f"{divisor_override!r}")
        if divisor_override == 0:
            raise ValueError(f"{op}: divisor_override must not be zero")
        divisor_override = int(divisor_override)
    out_size = _output_size(op, x, kernel, stride, padding, (1, 1), ceil_mode)
    return AvgPool2d(kernel, stride, padding, out_size, bool(count_include_pad),
                     divisor_override)(x)


class AvgPool2d(_Pool):
    def __init__(self, kernel, stride, padding, out_size, count_include_pad,
                 divisor_override):
        self.window = (kernel, stride, padding)
        self.out_size = out_size
        self.count_include_pad, self.divisor_override = count_include_pad, divisor_override

    def forward(self, x):
        xp = backend.get_array_module(x)
        self.unbatched = x.ndim == 3
        x = self._batch(x)
        kernel, stride, padding = self.window
        # (OH, OW) divisors, or the override: small, kept for backward
        self.divisor = _kp.avg_pool2d_divisor(x.shape[2:], self.out_size, kernel, stride,
                                              padding, self.count_include_pad,
                                              self.divisor_override, x.dtype, xp)
        self.in_shape = x.shape
        return self._strip(_kp.avg_pool2d_forward(x, kernel, stride, padding, self.out_size,
                                                  self.divisor))

    def backward(self, g):
        return self._strip(_kp.avg_pool2d_backward(self._batch(g), self.in_shape,
                                                   *self.window, self.divisor))


def adaptive_avg_pool2d(input, output_size):
    """The mean over OH×OW windows that tile the input, whatever its size, as
    ``torch.nn.functional.adaptive_avg_pool2d``. Output row i covers input rows

        floor(i·H / OH) <= h < ceil((i + 1)·H / OH)

    (columns likewise); neighbouring windows overlap by one row when OH does not divide
    H, and OH may exceed H.

    Args: ``output_size``: an int (square output), or an (OH, OW) pair whose entries may
    be None to keep that input dimension; entries >= 0.

    Shape: input (N, C, H, W) or (C, H, W); output (N, C, OH, OW) or (C, OH, OW).

    Gradient: each input position receives dL/dout[i, j] / (window height · width)
    from every window (i, j) that covers it.
    """
    op = "adaptive_avg_pool2d"
    x = as_tensor(input)
    _check_input(op, x)
    return AdaptiveAvgPool2d(_adaptive_size(op, x, output_size))(x)


class AdaptiveAvgPool2d(_Pool):
    def __init__(self, out_size):
        self.out_size = out_size

    def forward(self, x):
        self.unbatched = x.ndim == 3
        x = self._batch(x)
        self.in_shape = x.shape
        return self._strip(_kp.adaptive_avg_pool2d_forward(x, self.out_size))

    def backward(self, g):
        return self._strip(_kp.adaptive_avg_pool2d_backward(self._batch(g), self.in_shape))


def adaptive_max_pool2d(input, output_size, return_indices=False):
    """The maximum over the adaptive windows of :func:`adaptive_avg_pool2d`, as
    ``torch.nn.functional.adaptive_max_pool2d``.

    Shape: input (N, C, H, W) or (C, H, W); output (N, C, OH, OW) or (C, OH, OW);
    indices (with ``return_indices``) int64 of that shape, flat positions h·W + w
    within each (n, c) plane.

    Ties and NaN as in :func:`max_pool2d` (first maximum in row-major order wins).
    Gradient: each output's gradient goes to the position of its window's maximum;
    a position that is the maximum of several overlapping windows receives the sum.
    """
    op = "adaptive_max_pool2d"
    x = as_tensor(input)
    _check_input(op, x)
    return AdaptiveMaxPool2d(_adaptive_size(op, x, output_size), bool(return_indices))(x)


class AdaptiveMaxPool2d(_Pool):
    def __init__(self, out_size, return_indices):
        self.out_size, self.return_indices = out_size, return_indices

    def forward(self, x):
        self.unbatched = x.ndim == 3
        x = self._batch(x)
        need_grad = self.needs_input_grad[0]
        out, saved = _kp.adaptive_max_pool2d_forward(
            x, self.out_size, with_argmax=need_grad or self.return_indices)
        if need_grad:
            # winning offsets of the W stage (N, C, H, OW) and the H stage (N, C, OH, OW)
            self.saved, self.in_shape = saved, x.shape
        if not self.return_indices:
            return self._strip(out)
        return self._strip(out), self._strip(_kp.adaptive_max_pool2d_indices(saved, x.shape[2:]))

    def backward(self, g, g_indices=None):
        return self._strip(_kp.adaptive_max_pool2d_backward(self._batch(g), self.saved,
                                                            self.in_shape))


def max_unpool2d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    """The partial inverse of :func:`max_pool2d`, as ``torch.nn.functional.max_unpool2d``:
    a zero (N, C, OH, OW) output with each input value put back at the flat position its
    index names::

        out[n, c].flat[indices[n, c, h, w]] = x[n, c, h, w]

    Args: ``indices``: integers of the input's shape (the ones ``max_pool2d(...,
    return_indices=True)`` gives), each in [0, OH·OW). ``kernel_size``, ``stride``
    (default: ``kernel_size``), ``padding``: those of the max pool being inverted; they
    only set the default output size. ``output_size``: (OH, OW) or (N, C, OH, OW) to
    pick one of the input sizes that pool to this size; each must lie strictly between
    default - stride and default + stride.

    Shape:
        input and indices (N, C, H, W) or (C, H, W); output (N, C, OH, OW) or
        (C, OH, OW), by default OH = (H - 1)·SH - 2·PH + KH, likewise OW.

    Gradient: dL/dx[n, c, h, w] = dL/dout[n, c].flat[indices[n, c, h, w]] (a gather).
    NOTE: when indices repeat, the last value (row-major) is the one stored, as in torch
    on the CPU; the gradient still reaches every duplicate.
    """
    op = "max_unpool2d"
    x = as_tensor(input)
    idx = as_tensor(indices)
    _check_input(op, x)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"{op}: indices must be integers (int64, as max_pool2d returns), "
                        f"got {idx.dtype}")
    if idx.shape != x.shape:
        raise ValueError(f"{op}: indices must have the input's shape {tuple(x.shape)}, got "
                         f"{tuple(idx.shape)}")
    kernel = pair(op, "kernel_size", kernel_size, minimum=1)
    stride = kernel if _unset(stride) else pair(op, "stride", stride, minimum=1)
    padding = pair(op, "padding", padding, minimum=0)
    default = tuple(_kp.unpool_output_size(n, k, s, p)
                    for n, k, s, p in zip(x.shape[-2:], kernel, stride, padding))
    out_size = default if output_size is None else _unpool_size(op, output_size, default, stride)
    if min(out_size) < 0:
        raise ValueError(f"{op}: the output size {out_size} would be negative (input "
                         f"{tuple(x.shape[-2:])}, kernel_size={kernel}, stride={stride}, "
                         f"padding={padding})")
    plane = out_size[0] * out_size[1]
    if idx.array.size:
        low, high = int(idx.array.min()), int(idx.array.max())
        if low < 0 or high >= plane:
            raise ValueError(f"{op}: indices must lie in [0, {plane}), the flat positions of "
                             f"a {out_size[0]}x{out_size[1]} output plane; found "
                             f"{low if low < 0 else high}")
    return MaxUnpool2d(out_size)(x, idx)


class MaxUnpool2d(_Pool):
    def __init__(self, out_size):
        self.out_size = out_size

    def forward(self, x, indices):
        self.unbatched = x.ndim == 3
        x, indices = self._batch(x), self._batch(indices)
        if self.needs_input_grad[0]:
            self.indices = indices
        return self._strip(_kp.max_unpool2d_forward(x, indices, self.out_size))

    def backward(self, g):
        return self._strip(_kp.max_unpool2d_backward(self._batch(g), self.indices)), None


# ------------------------------------------------------------------------ helpers

def _check_input(op, x, integers_ok=False):
    """3-D (C, H, W) or 4-D (N, C, H, W), non-empty except for the batch, numeric."""
    if x.ndim not in (3, 4):
        raise ValueError(f"{op}: expected a 3-D (C, H, W) or 4-D (N, C, H, W) input, got "
                         f"shape {tuple(x.shape)}")
    if 0 in x.shape[-3:]:
        raise ValueError(f"{op}: channels, height and width must be non-zero (only the "
                         f"batch may be empty), got shape {tuple(x.shape)}")
    check_float(op, x, integers_ok)


def _max_pool_window(op, x, kernel_size, stride, padding, dilation, ceil_mode):
    """Check a max pool's input and window (errors name ``op``); return (kernel, stride,
    padding, dilation, out_size), each an (h, w) pair."""
    _check_input(op, x, integers_ok=True)
    kernel, stride, padding, dilation = _window_args(op, kernel_size, stride, padding, dilation)
    out_size = _output_size(op, x, kernel, stride, padding, dilation, ceil_mode)
    _check_windows_reach_input(op, x, out_size, kernel, stride, padding, dilation)
    return kernel, stride, padding, dilation, out_size


def _unset(value):
    """torch lets ``stride`` default through None or an empty list."""
    return value is None or (isinstance(value, (tuple, list)) and len(value) == 0)


def _window_args(op, kernel_size, stride, padding, dilation):
    kernel = pair(op, "kernel_size", kernel_size, minimum=1)
    stride = kernel if _unset(stride) else pair(op, "stride", stride, minimum=1)
    padding = pair(op, "padding", padding, minimum=0)
    dilation = pair(op, "dilation", dilation, minimum=1)
    if any(p > k // 2 for p, k in zip(padding, kernel)):
        raise ValueError(f"{op}: padding {padding} must be at most half the kernel size "
                         f"{kernel} (padding <= kernel_size // 2 on each axis, as torch "
                         f"requires)")
    return kernel, stride, padding, dilation


def _output_size(op, x, kernel, stride, padding, dilation, ceil_mode):
    """(OH, OW), or a ValueError that shows the computation when one is below 1."""
    H, W = x.shape[-2:]
    out = tuple(_kp.pool_output_size(n, k, s, p, d, bool(ceil_mode))
                for n, k, s, p, d in zip((H, W), kernel, stride, padding, dilation))
    if min(out) < 1:
        rounding = "ceil" if ceil_mode else "floor"
        raise ValueError(
            f"{op}: the output would be empty: input {H}x{W} gives an output of "
            f"{out[0]}x{out[1]} with kernel_size={kernel}, stride={stride}, "
            f"padding={padding}, dilation={dilation}, ceil_mode={bool(ceil_mode)} "
            f"(OH = {rounding}((H + 2*PH - DH*(KH-1) - 1) / SH) + 1 must be at least 1; "
            f"the dilated kernel spans {dilation[0] * (kernel[0] - 1) + 1}x"
            f"{dilation[1] * (kernel[1] - 1) + 1})")
    return out


def _check_windows_reach_input(op, x, out_size, kernel, stride, padding, dilation):
    """Refuse a window whose every tap is padding (possible only with dilation > 1).

    NOTE: torch returns -inf there with an index outside the input, and its backward
    then writes that window's gradient into a neighbouring plane; no answer is right.
    """
    names = ("row", "column")
    for axis, (n, o, k, s, p, d) in enumerate(zip(x.shape[-2:], out_size, kernel, stride,
                                                  padding, dilation)):
        reached = set()
        for _, outs, _ in _kp.window_taps(n, o, k, s, p, d):
            reached.update(range(*outs.indices(o)))
        if len(reached) < o:
            bad = min(set(range(o)) - reached)
            raise ValueError(
                f"{op}: output {names[axis]} {bad} would pool nothing but padding: with "
                f"kernel_size={kernel}, stride={stride}, padding={padding} and "
                f"dilation={dilation}, its taps {[bad * s - p + j * d for j in range(k)]} "
                f"all miss the input's {n} {names[axis]}s (use less padding or dilation)")


def _adaptive_size(op, x, output_size):
    """An int or an (OH, OW) pair of ints or None (None keeps the input's size)."""
    items = output_size if isinstance(output_size, (tuple, list)) else (output_size,) * 2
    ok = len(items) == 2 and all(v is None or (isinstance(v, numbers.Integral)
                                               and not isinstance(v, bool)) for v in items)
    if not ok or output_size is None:
        raise TypeError(f"{op}: output_size must be an int or a pair of ints (or None to "
                        f"keep that dimension), got {output_size!r}")
    size = tuple(int(n if v is None else v) for v, n in zip(items, x.shape[-2:]))
    if min(size) < 0:
        raise ValueError(f"{op}: output_size must be >= 0, got {size}")
    return size


def _unpool_size(op, output_size, default, stride):
    """The (OH, OW) part of a user's output_size, checked against the sizes that pool to
    the input's size (torch's rule)."""
    items = tuple(output_size) if isinstance(output_size, (tuple, list)) else ()
    if len(items) == 4:
        items = items[2:]
    if len(items) != 2 or not all(isinstance(v, numbers.Integral) for v in items):
        raise ValueError(f"{op}: output_size must be (OH, OW) or (N, C, OH, OW), got "
                         f"{output_size!r}")
    size = tuple(int(v) for v in items)
    for axis, (n, d, s) in enumerate(zip(size, default, stride)):
        if not d - s < n < d + s:
            raise ValueError(f"{op}: output_size {size} is not reachable: dimension {axis} "
                             f"must be strictly between {d - s} and {d + s} (default {d}, "
                             f"stride {s})")
    return size
