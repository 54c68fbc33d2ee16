"""Hypothesis strategies for convolution and pooling geometry, shared by the test folders
(``from strategies import conv_geometry``: pytest.ini puts tests/ on the path).

Two layers:

* ``conv_geometry``, ``conv_transpose_geometry`` and ``pool_geometry`` draw a concrete
  geometry (shapes, and every hyper-parameter as an ``(H, W)`` pair) whose output has at
  least one position. Kernels and routines that take explicit pairs (``im2col``, the
  numba fast paths, the pooling window routines) use these.
* ``conv2d_arguments``, ``conv_transpose2d_arguments`` and ``pool2d_arguments`` draw a
  geometry and then spell it the way a caller of ``minicnn.functional`` may: an int where
  both sides are equal (sometimes), ``padding='same'`` / ``'valid'``, ``stride=None``
  for pooling. They return ``(shapes, keywords)``. ``im2col_arguments`` gives the
  positional arguments of ``im2col``.

Every limit is an inclusive ``(low, high)`` range (``groups``: values to sample from)
and can be changed per test; the defaults are the widest that the tests had before they
shared them. Output sizes are computed here from torch's formulas (written out at each
function), independently of the code under test. Geometries are built so the output is
never empty (each size is drawn from the sizes that give one) instead of drawn blindly
and filtered with ``assume``: every valid combination can come up, no invalid one does,
and no health check can trip on rejected draws.
"""
from dataclasses import dataclass

from hypothesis import strategies as st

__all__ = ["pairs", "spelled", "ConvGeometry", "ConvTransposeGeometry", "PoolGeometry",
           "conv_geometry", "conv_transpose_geometry", "pool_geometry", "pool_output_size",
           "FITS", "im2col_arguments", "conv2d_arguments", "conv_transpose2d_arguments",
           "pool2d_arguments"]


# ------------------------------------------------------------------- building blocks

def pairs(low, high):
    """``(a, b)`` with both in ``[low, high]``; half the time ``a == b`` (the common square
    case, and the only pairs an int argument can stand for)."""
    side = st.integers(low, high)
    return st.one_of(side.map(lambda v: (v, v)), st.tuples(side, side))


def _bounded_pair(draw, low, highs):
    """Like ``pairs`` with a separate upper bound per side (each at least ``low``)."""
    if draw(st.booleans()):
        v = draw(st.integers(low, min(highs)))
        return (v, v)
    return tuple(draw(st.integers(low, high)) for high in highs)


@st.composite
def spelled(draw, pair):
    """How a caller may write the pair ``(a, b)``: the int ``a`` when ``a == b`` (half the
    time), otherwise the tuple."""
    if pair[0] == pair[1] and draw(st.booleans()):
        return pair[0]
    return tuple(pair)


def _extent(kernel, dilation):
    """Length covered by one dilated window: ``dilation * (kernel - 1) + 1``."""
    return dilation * (kernel - 1) + 1


# ---------------------------------------------------------------------- convolution

@dataclass(frozen=True)
class ConvGeometry:
    """One ``conv2d``: input ``x_shape = (N, C_in, H, W)``, weight
    ``w_shape = (C_out, C_in // groups, KH, KW)``, and ``stride``/``dilation`` as pairs.
    ``padding`` is a pair, or ``'same'``/``'valid'`` when the strategy was asked for
    padding strings (``'same'`` comes with stride 1; ``'valid'`` means ``(0, 0)``)."""
    x_shape: tuple
    w_shape: tuple
    stride: tuple
    padding: object
    dilation: tuple
    groups: int

    @property
    def kernel(self):
        return self.w_shape[2:]

    @property
    def padding_pair(self):
        """``padding`` as a pair (``'valid'`` is ``(0, 0)``; ``'same'`` has none: torch
        pads it unevenly when the dilated kernel's extent is even)."""
        if self.padding == "same":
            raise ValueError("padding='same' is not a pair")
        return (0, 0) if self.padding == "valid" else self.padding

    @property
    def out_size(self):
        """``OH = (H + 2*PH - DH*(KH - 1) - 1) // SH + 1`` (and ``(H, W)`` for 'same')."""
        if self.padding == "same":
            return self.x_shape[2:]
        return tuple((n + 2 * p - _extent(k, d)) // s + 1 for n, k, s, p, d in
                     zip(self.x_shape[2:], self.kernel, self.stride, self.padding_pair,
                         self.dilation))

    def im2col_args(self):
        """``(KH, KW, SH, SW, PH, PW, DH, DW)``, the positional arguments of ``im2col``."""
        return (*self.kernel, *self.stride, *self.padding_pair, *self.dilation)

    def keywords(self):
        """``conv2d`` keywords, every hyper-parameter as given here (pairs)."""
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation,
                    groups=self.groups)


@st.composite
def conv_geometry(draw, *, batch=(1, 3), channels=(1, 4), out_channels=(1, 4),
                  groups=(1, 1, 2, 3), size=(1, 9), kernel=(1, 4), stride=(1, 3),
                  padding=(0, 3), dilation=(1, 3), padding_strings=False):
    """A ``ConvGeometry`` with at least one output position.

    ``channels`` and ``out_channels`` count per group (``C_in = groups * channels``);
    ``groups`` is a list to sample from (repeats weight it: the default draws 1 half the
    time). Stride, dilation and padding are drawn first, then each axis's (input length,
    kernel length) among those whose dilated kernel fits the padded input, all equally
    likely: the combinations that filtering blind draws would keep, and no other.
    ``padding_strings`` also draws ``padding='same'`` (stride 1, any kernel: torch pads
    to keep the size) and ``padding='valid'`` (no padding), each a quarter of the time.
    """
    n, g = draw(st.integers(*batch)), draw(st.sampled_from(list(groups)))
    cg, og = draw(st.integers(*channels)), draw(st.integers(*out_channels))
    dil = draw(pairs(*dilation))
    mode = draw(st.sampled_from(["pair", "pair", "same", "valid"])) if padding_strings else "pair"
    if mode == "same":
        strides, pad, pad_pair = (1, 1), "same", None
    else:
        strides = draw(pairs(*stride))
        pad = "valid" if mode == "valid" else draw(pairs(*padding))
        pad_pair = (0, 0) if mode == "valid" else pad
    sides = []           # (input length, kernel length) per axis, uniform over the valid ones
    for axis, d in enumerate(dil):
        sides.append(draw(st.sampled_from([
            (length, k) for length in range(size[0], size[1] + 1)
            for k in range(kernel[0], kernel[1] + 1)
            if pad_pair is None or _extent(k, d) <= length + 2 * pad_pair[axis]])))
    (h, kh), (w, kw) = sides
    return ConvGeometry(x_shape=(n, g * cg, h, w), w_shape=(g * og, cg, kh, kw),
                        stride=strides, padding=pad, dilation=dil, groups=g)


def im2col_arguments(**limits):
    """``(x_shape, KH, KW, SH, SW, PH, PW, DH, DW)`` for ``im2col`` / ``col2im`` (one
    group), from ``conv_geometry(groups=(1,), **limits)``."""
    return conv_geometry(groups=(1,), **limits).map(lambda g: (g.x_shape,) + g.im2col_args())


@dataclass(frozen=True)
class ConvTransposeGeometry:
    """One ``conv_transpose2d``: input ``x_shape = (N, C_in, H, W)``, weight
    ``w_shape = (C_in, C_out // groups, KH, KW)``, every hyper-parameter a pair."""
    x_shape: tuple
    w_shape: tuple
    stride: tuple
    padding: tuple
    output_padding: tuple
    dilation: tuple
    groups: int

    @property
    def kernel(self):
        return self.w_shape[2:]

    @property
    def out_size(self):
        """``OH = (H - 1)*SH - 2*PH + DH*(KH - 1) + output_padding + 1``."""
        return tuple((n - 1) * s - 2 * p + d * (k - 1) + op + 1 for n, k, s, p, op, d in
                     zip(self.x_shape[2:], self.kernel, self.stride, self.padding,
                         self.output_padding, self.dilation))

    def keywords(self):
        return dict(stride=self.stride, padding=self.padding,
                    output_padding=self.output_padding, groups=self.groups,
                    dilation=self.dilation)


@st.composite
def conv_transpose_geometry(draw, *, batch=(1, 3), channels=(1, 3), out_channels=(1, 3),
                            groups=(1, 1, 2, 3), size=(1, 6), kernel=(1, 4), stride=(1, 3),
                            padding=(0, 2), dilation=(1, 3)):
    """A ``ConvTransposeGeometry`` with at least one output position.

    ``output_padding`` is drawn below ``max(stride, dilation)`` on each side (torch's
    rule), then the padding up to the largest that leaves an output of length 1.
    """
    n, g = draw(st.integers(*batch)), draw(st.sampled_from(list(groups)))
    cg, og = draw(st.integers(*channels)), draw(st.integers(*out_channels))
    hw = (draw(st.integers(*size)), draw(st.integers(*size)))
    ks, strides, dil = draw(pairs(*kernel)), draw(pairs(*stride)), draw(pairs(*dilation))
    op = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(strides, dil))
    # (n - 1)*s - 2p + d*(k - 1) + op + 1 >= 1
    pad = _bounded_pair(draw, padding[0], [
        min(padding[1], ((n - 1) * s + d * (k - 1) + o) // 2)
        for n, k, s, d, o in zip(hw, ks, strides, dil, op)])
    return ConvTransposeGeometry(x_shape=(n, g * cg) + hw, w_shape=(g * cg, og) + tuple(ks),
                                 stride=strides, padding=pad, output_padding=op,
                                 dilation=dil, groups=g)


@st.composite
def conv2d_arguments(draw, bias=True, **limits):
    """``([x_shape, w_shape, b_shape or None], keywords)`` for ``F.conv2d``: a
    ``conv_geometry(padding_strings=True, **limits)`` with its hyper-parameters spelled as
    ints or pairs (``spelled``) and, when ``bias``, a bias half the time."""
    geo = draw(conv_geometry(padding_strings=True, **limits))
    pad = geo.padding if isinstance(geo.padding, str) else draw(spelled(geo.padding))
    kw = dict(stride=draw(spelled(geo.stride)), padding=pad,
              dilation=draw(spelled(geo.dilation)), groups=geo.groups)
    b = (geo.w_shape[0],) if bias and draw(st.booleans()) else None
    return [geo.x_shape, geo.w_shape, b], kw


@st.composite
def conv_transpose2d_arguments(draw, bias=True, **limits):
    """``([x_shape, w_shape, b_shape or None], keywords)`` for ``F.conv_transpose2d``,
    from ``conv_transpose_geometry(**limits)``, spelled like ``conv2d_arguments``."""
    geo = draw(conv_transpose_geometry(**limits))
    kw = dict(stride=draw(spelled(geo.stride)), padding=draw(spelled(geo.padding)),
              output_padding=draw(spelled(geo.output_padding)), groups=geo.groups,
              dilation=draw(spelled(geo.dilation)))
    b = (geo.w_shape[1] * geo.groups,) if bias and draw(st.booleans()) else None
    return [geo.x_shape, geo.w_shape, b], kw


# -------------------------------------------------------------------------- pooling

def pool_output_size(size, kernel, stride, padding, dilation, ceil_mode):
    """torch's pooling output length::

        OH = floor((H + 2*PH - DH*(KH - 1) - 1 [+ SH - 1 if ceil_mode]) / SH) + 1

    and, with ``ceil_mode``, one less when the last window would start in the right
    padding (at padded position ``H + PH`` or later)."""
    out = (size + 2 * padding - _extent(kernel, dilation)
           + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


@dataclass(frozen=True)
class PoolGeometry:
    """One 2-D pooling: input ``x_shape = (N, C, H, W)``, ``kernel``, ``stride``,
    ``padding`` (at most half the kernel, torch's rule) and ``dilation`` as pairs,
    ``ceil_mode``, and ``out_size``, the output's ``(OH, OW)`` (both at least 1)."""
    x_shape: tuple
    kernel: tuple
    stride: tuple
    padding: tuple
    dilation: tuple
    ceil_mode: bool

    @property
    def size(self):
        return self.x_shape[2:]

    @property
    def out_size(self):
        return tuple(pool_output_size(n, k, s, p, d, self.ceil_mode) for n, k, s, p, d in
                     zip(self.size, self.kernel, self.stride, self.padding, self.dilation))

    def window_args(self):
        """``(kernel, stride, padding, dilation)``, as kernels/pooling.py takes them."""
        return self.kernel, self.stride, self.padding, self.dilation


FITS = ("output", "padded", "input")


@st.composite
def pool_geometry(draw, *, batch=(1, 2), channels=(1, 3), max_size=9, slack=4, kernel=(1, 4),
                  stride=(1, 3), dilation=(1, 3), fit="output"):
    """A ``PoolGeometry`` with at least one output position.

    ``stride`` is the kernel itself (torch's default) half the time, else a pair drawn
    from ``stride``; ``padding`` is drawn up to half the kernel on each side; pass
    ``dilation=(1, 1)`` for the pools that have none. ``fit`` says how small an input
    side may be, relative to the dilated window's extent ``e = d*(k - 1) + 1``:

    * ``"output"``: anything with at least one output; in ``ceil_mode`` that includes
      inputs whose padded length is shorter than one window (the window hangs over).
    * ``"padded"``: the padded input holds a whole window (``H + 2p >= e``).
    * ``"input"``: the input holds a whole window without its padding (``H >= e``).

    Each side is drawn from the lengths ``fit`` allows up to ``max(max_size, smallest +
    slack)``, where ``smallest`` is the ``"padded"`` (for ``"input"``: the ``"input"``)
    bound, so large dilated kernels still get inputs ``slack`` longer than one window.
    """
    if fit not in FITS:
        raise ValueError(f"fit must be one of {FITS}, got {fit!r}")
    ks = draw(pairs(*kernel))
    strides = draw(st.one_of(st.just(ks), pairs(*stride)))
    pad = _bounded_pair(draw, 0, [k // 2 for k in ks])
    dil = draw(pairs(*dilation))
    ceil_mode = draw(st.booleans())
    hw = []
    for k, s, p, d in zip(ks, strides, pad, dil):
        base = _extent(k, d) if fit == "input" else max(1, _extent(k, d) - 2 * p)
        top = max(max_size, base + slack)
        if fit == "output":      # below base, ceil_mode gives some lengths an output
            n = draw(st.sampled_from([n for n in range(1, top + 1)
                                      if pool_output_size(n, k, s, p, d, ceil_mode) >= 1]))
        else:
            n = draw(st.integers(base, top))
        hw.append(n)
    shape = (draw(st.integers(*batch)), draw(st.integers(*channels))) + tuple(hw)
    return PoolGeometry(x_shape=shape, kernel=ks, stride=strides, padding=pad,
                        dilation=dil, ceil_mode=ceil_mode)


@st.composite
def pool2d_arguments(draw, with_dilation=True, **limits):
    """``(x_shape, keywords)`` for ``F.max_pool2d`` / ``F.avg_pool2d`` (which takes no
    dilation: ``with_dilation=False`` draws none and leaves the keyword out), from
    ``pool_geometry(**limits)``: ``kernel_size`` spelled as an int or a pair,
    ``stride=None`` (half the time) when it is the kernel, padding as a pair (or int),
    ``ceil_mode``."""
    if not with_dilation:
        limits["dilation"] = (1, 1)
    geo = draw(pool_geometry(**limits))
    stride = None if geo.stride == geo.kernel and draw(st.booleans()) else geo.stride
    kw = dict(kernel_size=draw(spelled(geo.kernel)),
              stride=stride if stride is None else draw(spelled(stride)),
              padding=draw(spelled(geo.padding)), ceil_mode=geo.ceil_mode)
    if with_dilation:
        kw["dilation"] = draw(spelled(geo.dilation))
    return geo.x_shape, kw
