"""The receptive field of every layer of a model: how many input pixels one output pixel
can see (``size``), how far apart in input pixels neighbouring outputs' fields are
(``jump``, the effective stride) and where the first output's field is centred
(``start``), per spatial axis (H, W), for ``minicnn.utils.receptive_field`` and the RF
column of ``minicnn summary --rf``.

For a chain of layers with kernel k, stride s, padding p and dilation d (Araujo, Norris
and Sim, "Computing receptive fields of convolutional neural networks", Distill 2019):

    size_l  = size_{l-1} + (k_l - 1) · d_l · jump_{l-1}
            = 1 + Σ_l (k_l - 1) d_l Π_{i<l} s_i
    jump_l  = jump_{l-1} · s_l
    start_l = start_{l-1} + ((k_l - 1) d_l / 2 - p_l) · jump_{l-1}

Pixel i of the input has its centre at i (so the input has size 1, jump 1, start 0), and
the field of output pixel o covers start + o·jump ± (size - 1)/2. Padding is part of the
geometry, so a field may be larger than the image (VGG16's fc6 sees 404 pixels of a
224-pixel input) and ``start`` may be negative.

How it is measured. The model runs once, on a random input of the given size that
requires a gradient, so every op records its node in the autograd graph; convolutions
and linear layers skip their arithmetic and return zeros of the right shape (as
``summary(shapes_only=True)``), the rest runs for real. Forward hooks give each module
call a row, in call order (as the summary table), with the field of its output. The
field of a tensor is found by *following the tensors*: from a tensor back along the graph
to the model's input, each op's rule turns the fields of its inputs into the field of its
output. So functional calls in a ``forward`` (``F.max_pool2d``, ``F.interpolate``,
``torch.cat``, ``out += identity``, a crop by slicing) count as well as modules.

The rules, per spatial axis:

* Conv2d, MaxPool2d, AvgPool2d (modules or functions): the formulas above. ``ceil_mode``
  only adds an output at the end; it changes no field.
* ConvTranspose2d: output o receives input i when o = i·s - p + j·d for a kernel tap j.
  ``size`` is the largest field of an output pixel (they differ when s does not divide
  the kernel's reach), ``start`` is the centre of output 0's field, and ``jump``
  becomes jump/s (a fraction of an input pixel: the outputs are s times denser).
  MaxUnpool2d is treated as a transposed convolution with its kernel and stride.
* Any op that resamples by reading known input positions follows the same rule: the
  adaptive pools (output i reads ⌊i·H/OH⌋ .. ⌈(i+1)·H/OH⌉ - 1; where OH divides H this
  is a pool with kernel = stride = H/OH, and a global pool covers its whole input),
  ``interpolate`` (nearest reads one position, bilinear two), ``pixel_shuffle``, padding
  and cropping (``F.pad``, ``center_crop``, slicing ``x[..., a:b, c:d]``: they shift
  ``start``). Where the windows are not all alike (adaptive pooling with OH not
  dividing H, a transposed convolution), ``size`` is the largest window, ``start`` the
  first's centre, ``jump`` the mean spacing, and the layers after it inherit an upper
  bound rather than an exact figure.
* Layers that keep the geometry (ReLU and the other activations, BatchNorm, Dropout,
  LocalResponseNorm across channels, ...) pass the field on unchanged.
  LocalResponseNormSpatial adds its size×size window.
* Flattening a feature map, or reducing over H and W, gives a tensor that depends on the
  whole map: its field is the union of the fields of all pixels (size + (H - 1)·jump).
  Linear layers after it see that field (AlexNet's fc6 at 224: 355 pixels, as fc6
  made a 6×6 convolution).
* Branches (ResNet, Inception, U-Net). An op that receives several tensors (an
  addition, a concatenation) gets, per axis, the largest of their fields (with that
  field's jump and start): an output pixel sees what its widest input sees. The rows of
  modules inside the branches show each branch's own field.
* An op that changes H or W and has no rule here (a warning names it) is treated like
  an adaptive pool from its input size to its output size.
"""
from __future__ import annotations

import collections
import warnings
from fractions import Fraction

from ..autograd import Function, Tensor, enable_grad
from ._outputs import depth as _depth, format_shape as _format_shape
from ._outputs import shape_of as _shape_of, tensors as _tensors

__all__ = ["receptive_field", "ReceptiveField", "ReceptiveFieldRow", "Field"]

Field = collections.namedtuple("Field", ["size", "jump", "start"])
Field.__doc__ = """The receptive field of one tensor: ``size``, ``jump`` and ``start``,
each an (h, w) pair in input pixels (ints, or floats where a transposed convolution or an
upsampling made them fractional)."""

ReceptiveFieldRow = collections.namedtuple(
    "ReceptiveFieldRow", ["name", "type", "depth", "output_shape", "size", "jump", "start"])
ReceptiveFieldRow.__doc__ = """One call of one module: the field of its output (``size``,
``jump``, ``start`` as in :data:`Field`; None where the output does not derive from the
input, e.g. a constant)."""


def receptive_field(model, input_size=None, *, input_data=None, batch_size=1, dtype=None,
                    mode="eval", verbose=False):
    """The receptive field of the output of every module call of ``model``, and of the
    model's output, measured on one forward pass (see the module docstring).

    ``input_size``: one input's (C, H, W), e.g. ``(3, 224, 224)``; or ``input_data`` (a
    (N, C, H, W) Tensor or a tuple of them: each input pixel counts as field 1). ``mode``:
    ``"eval"`` (default) or ``"train"``; the model's modes, buffers and the random state
    are restored afterwards. Returns a :class:`ReceptiveField` (printed if ``verbose``)::

        >>> rf = receptive_field(models.vgg16(), (3, 224, 224))
        >>> rf["features.30"].size          # pool5
        (212, 212)
    """
    from .. import nn     # imported here: minicnn/__init__ imports the utils early
    from .summary import _kept_state, _make_inputs, _patched_shapes_only

    if mode not in ("eval", "train"):
        raise ValueError(f"receptive_field: mode must be 'eval' or 'train', got {mode!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"receptive_field: expected an nn.Module, got {type(model).__name__}")
    inputs = _make_inputs(model, input_size, input_data, batch_size, dtype,
                          op="receptive_field")
    for x in inputs:
        if x.ndim != 4 or x.dtype.kind != "f":
            raise ValueError(f"receptive_field: expected floating-point (N, C, H, W) input, "
                             f"got shape {tuple(x.shape)} ({x.dtype}); input_size is "
                             f"(C, H, W) without the batch")
    # fresh leaves that require a gradient: every op on them records its node
    inputs = [Tensor._wrap(x.array).requires_grad_(True) for x in inputs]
    tracer = _Tracer(inputs)

    names = {id(m): name for name, m in model.named_modules()}
    rows, stack = [], []

    def pre_hook(module, args):
        name = names[id(module)]
        rows.append([name, type(module).__name__, _depth(name), None, None])
        stack.append(len(rows) - 1)

    def hook(module, args, output):
        row = rows[stack.pop()]
        rule = _module_rule(nn, module)
        received, produced = _tensors(args)[:1], _tensors(output)[:1]
        if rule is not None and received and produced and received[0].ndim == 4 == \
                produced[0].ndim:
            field = tracer.field_of(received)
            if field is not None:
                maps = rule(received[0].shape[2:], produced[0].shape[2:])
                tracer.assign(produced, _through(field, maps))
        row[3] = _shape_of(output)
        row[4] = tracer.field_of(_tensors(output))

    handles = []
    with _kept_state(model, mode), _patched_shapes_only(nn, model, _geometry_forward):
        try:
            for m in model.modules():
                handles.append(m.register_forward_pre_hook(pre_hook))
                handles.append(m.register_forward_hook(hook))
            with enable_grad():
                output = model(*inputs)
        finally:
            for h in handles:
                h.remove()
    result = ReceptiveField(
        [ReceptiveFieldRow(r[0], r[1], r[2], r[3], *_public(r[4])) for r in rows[1:]],
        _public_field(tracer.field_of(_tensors(output))), [tuple(x.shape) for x in inputs],
        type(model).__name__)
    if verbose:
        print(result)
    return result


class ReceptiveField:
    """The result of :func:`receptive_field`: ``rows`` (:data:`ReceptiveFieldRow`, one per
    module call in call order), ``output`` (the :data:`Field` of the model's output),
    ``rf[name]`` (the row of that module's last call), and the table as ``str(rf)``."""

    def __init__(self, rows, output, input_shapes, model_name):
        self.rows, self.output = rows, output
        self.input_shapes, self.model_name = input_shapes, model_name

    def __getitem__(self, name):
        for row in reversed(self.rows):
            if row.name == name:
                return row
        known = ", ".join(r.name for r in self.rows[:8])
        raise KeyError(f"receptive_field: no module named {name!r} ran (modules: {known}"
                       f"{' ...' if len(self.rows) > 8 else ''})")

    def __str__(self):
        header = ("Layer", "Type", "Output shape", "RF size", "Jump", "Start")
        body = [("  " * (r.depth - 1) + r.name, r.type, _format_shape(r.output_shape),
                 format_pair(r.size), format_pair(r.jump), format_pair(r.start))
                for r in self.rows]
        widths = [max(len(row[i]) for row in [header] + body) for i in range(6)]
        right = (False, False, False, True, True, True)

        def line(cells):
            return "  ".join(c.rjust(w) if r else c.ljust(w)
                             for c, w, r in zip(cells, widths, right)).rstrip()

        rule = "=" * (sum(widths) + 2 * (len(widths) - 1))
        shapes = ", ".join(str(list(s)) for s in self.input_shapes)
        out = [f"{self.model_name}, input {shapes}: receptive fields in input pixels", rule,
               line(header), rule] + [line(cells) for cells in body] + [rule]
        if self.output is not None:
            out.append(f"Output: size {format_pair(self.output.size)}, jump "
                       f"{format_pair(self.output.jump)}, start "
                       f"{format_pair(self.output.start)}")
        return "\n".join(out)

    __repr__ = __str__


def format_pair(pair):
    """``(195, 195)`` -> ``"195"``, ``(195, 163)`` -> ``"195x163"``, None -> ``"-"``."""
    if pair is None:
        return "-"
    shown = [f"{v:g}" if isinstance(v, float) else str(v) for v in pair]
    return shown[0] if shown[0] == shown[1] else "x".join(shown)


# ------------------------------------------------------------------ the field algebra
#
# Internally a field is a pair (one per axis H, W) of (size, jump, start) Fractions, and
# a layer's geometry along one axis is an "axis map" (reach, step, offset) in pixels of
# the layer's input: an output pixel's window spans ``reach`` + 1 input pixels,
# neighbouring outputs' windows are ``step`` apart, output 0's window is centred at
# ``offset``. For a convolution: reach = (k - 1)·d, step = s, offset = (k - 1)·d/2 - p.

_INPUT = ((Fraction(1), Fraction(1), Fraction(0)),) * 2


def _through(field, maps):
    """The field after a layer with per-axis ``maps``, given its input's ``field``."""
    return tuple((size + reach * jump, jump * step, start + offset * jump)
                 for (size, jump, start), (reach, step, offset) in zip(field, maps))


def _widest(fields):
    """Per axis, the largest of several fields (with its jump and start); None if none."""
    fields = [f for f in fields if f is not None]
    if not fields:
        return None
    return tuple(max((f[axis] for f in fields), key=lambda a: a[0]) for axis in range(2))


def _conv_map(k, s, p, d=1):
    return (Fraction((k - 1) * d), Fraction(s), Fraction((k - 1) * d, 2) - p)


def _windows_map(windows, step):
    """The axis map of a layer whose output i reads input positions ``windows[i]`` (an
    inclusive (lo, hi) pair, or None when it reads nothing) and whose outputs are
    ``step`` input pixels apart on average: the largest window, and the offset of the
    line ``offset + i·step`` that best follows the windows' centres (their mean distance
    from ``i·step``). For equal windows this is output 0's centre; for a staircase, as
    a 2x upsampling's 0, 0, 1, 1, 2, 2, ..., it is -1/4, where torch's pixel-centre
    convention puts output 0 ((0 + 0.5)/2 - 0.5)."""
    step = Fraction(step)
    used = [(i, lo, hi) for i, w in enumerate(windows) if w is not None for lo, hi in [w]]
    if not used:
        return (Fraction(0), step, Fraction(0))
    reach = max(Fraction(hi - lo) for _, lo, hi in used)
    offset = sum(Fraction(lo + hi, 2) - i * step for i, lo, hi in used) / len(used)
    return (reach, step, offset)


def _adaptive_map(n_in, n_out):
    return _windows_map([(n_in * i // n_out, -(-n_in * (i + 1) // n_out) - 1)
                         for i in range(n_out)], Fraction(n_in, n_out))


def _transposed_map(k, s, p, d, n_out):
    """Output o receives input i when o = i·s - p + j·d for a tap j in [0, k)."""
    windows = []
    for o in range(n_out):
        sources = [(o + p - j * d) // s for j in range(k) if (o + p - j * d) % s == 0]
        windows.append((min(sources), max(sources)) if sources else None)
    return _windows_map(windows, Fraction(1, s))


def _whole_map(n_in):
    """Everything of an axis of n_in pixels (a flatten, a global reduction)."""
    return _windows_map([(0, n_in - 1)], n_in)


# ----------------------------------------------------------------- per-op geometry

def _function_maps(fn, in_hw, out_hw):
    """The two axis maps of a recorded op on a (N, C, H, W) input, or None when this op
    has no rule (see the module docstring)."""
    from ..functional import conv, padding, pooling, shape, vision
    if isinstance(fn, _Geometry):
        return fn.maps
    if isinstance(fn, (pooling.MaxPool2d, pooling.AvgPool2d)):
        kernel, stride, pad = fn.window[:3]
        dilation = fn.window[3] if len(fn.window) > 3 else (1, 1)
        return [_conv_map(*a) for a in zip(kernel, stride, pad, dilation)]
    if isinstance(fn, (pooling.AdaptiveAvgPool2d, pooling.AdaptiveMaxPool2d)):
        return [_adaptive_map(n, o) for n, o in zip(in_hw, out_hw)]
    if isinstance(fn, conv.Conv2d):
        return [_conv_map(*a) for a in zip(fn.w_shape[2:], fn.stride, fn.padding,
                                           fn.dilation)]
    if isinstance(fn, conv.ConvTranspose2d):
        return [_transposed_map(*a) for a in zip(fn.w_shape[2:], fn.stride, fn.padding,
                                                 fn.dilation, out_hw)]
    if isinstance(fn, vision.Nearest):
        return [_windows_map([(i, i) for i in reads], Fraction(n, o))
                for reads, n, o in zip(fn.reads, in_hw, out_hw)]
    if isinstance(fn, vision.Bilinear):          # reads (i0, i1, λ): i1 only where λ > 0
        return [_windows_map([(a, b if w else a) for a, b, w in zip(*reads)], Fraction(n, o))
                for reads, n, o in zip(fn.reads, in_hw, out_hw)]
    if isinstance(fn, vision.PixelShuffle):
        r = fn.factor
        if fn.inverse:                      # an r x r block becomes one pixel
            return [_conv_map(r, r, 0)] * 2
        return [(Fraction(0), Fraction(1, r), Fraction(0))] * 2
    if isinstance(fn, padding.ConstantPad):
        return [(Fraction(0), Fraction(1), Fraction(-lo)) for lo, _ in fn.widths[-2:]]
    if isinstance(fn, shape.GetItem):
        return _slice_maps(fn.index, in_hw)
    if isinstance(fn, shape.Reshape) and tuple(in_hw) == tuple(out_hw):
        return [(Fraction(0), Fraction(1), Fraction(0))] * 2
    return None


def _slice_maps(index, in_hw):
    """Basic slicing that keeps 4 dimensions, e.g. ``x[:, :, 2:10, ::2]``: a shift by the
    slice's start and a stride of its step; None for anything else."""
    items = index if isinstance(index, tuple) else (index,)
    if any(not (isinstance(i, slice) or i is Ellipsis) for i in items) or \
            sum(i is Ellipsis for i in items) > 1:
        return None
    if Ellipsis in items:
        at = items.index(Ellipsis)
        items = items[:at] + (slice(None),) * (5 - len(items)) + items[at + 1:]
    items = items + (slice(None),) * (4 - len(items))
    maps = []
    for item, n in zip(items[2:4], in_hw):
        start, _, step = item.indices(n)
        if step < 1:
            return None
        maps.append((Fraction(0), Fraction(step), Fraction(start)))
    return maps


def _module_rule(nn, module):
    """Axis maps for the few layers whose op does not show their geometry, as a function
    of the input's and the output's (H, W); None for the others."""
    if isinstance(module, nn.LocalResponseNormSpatial):
        n = module.size                  # n//2 before, (n - 1)//2 after, as the op pads
        return lambda in_hw, out_hw: [_conv_map(n, 1, n // 2)] * 2
    if isinstance(module, nn.MaxUnpool2d):     # where its max pool's windows were
        return lambda in_hw, out_hw: [
            _transposed_map(k, s, p, 1, o) for k, s, p, o in
            zip(module.kernel_size, module.stride, module.padding, out_hw)]
    return None


# ------------------------------------------------------------- following the tensors

class _Tracer:
    """The field of every tensor of one forward pass, found along the autograd graph."""

    def __init__(self, inputs):
        self.inputs = {id(x): x for x in inputs}
        self.fields = {}       # id(Function) -> field of its outputs
        self.assigned = {}     # (id(Function), output index) -> field set by a module rule
        self.alive = []        # the Functions whose ids are keys above
        self.warned = set()

    def field_of(self, tensors):
        """The widest field of some tensors (None when none derives from the input)."""
        return _widest([self._of_tensor(t) for t in tensors])

    def assign(self, output, field):
        for t in _tensors(output):
            if t.grad_fn is not None:
                self.assigned[(id(t.grad_fn), t.output_index)] = field
                self.alive.append(t.grad_fn)

    def _of_tensor(self, t):
        if t.grad_fn is None:
            return _INPUT if self.inputs.get(id(t)) is t else None
        return self._of_node(t.grad_fn, t.output_index)

    def _of_node(self, fn, index):
        key = (id(fn), index)
        if key in self.assigned:
            return self.assigned[key]
        if id(fn) not in self.fields:
            self._resolve(fn)
        return self.fields[id(fn)]

    def _known(self, fn, index):
        return (id(fn), index) in self.assigned or id(fn) in self.fields

    def _resolve(self, root):
        # iterative depth-first walk towards the input: a model of thousands of ops
        # must not meet Python's recursion limit
        stack = [root]
        while stack:
            fn = stack[-1]
            if id(fn) in self.fields:
                stack.pop()
                continue
            waiting = [e[0] for e in getattr(fn, "edges", ())
                       if isinstance(e, tuple) and not self._known(*e)]
            if waiting:
                stack.extend(waiting)
                continue
            stack.pop()
            self.fields[id(fn)] = self._rule(fn)
            self.alive.append(fn)

    def _parents(self, fn):
        """(field, shape) of each input of ``fn`` that derives from the model's input."""
        out = []
        for e in getattr(fn, "edges", ()):
            if isinstance(e, tuple):
                field, shape = self._of_node(*e), e[0].output_meta[e[1]][0]
            elif isinstance(e, Tensor):
                field, shape = self._of_tensor(e), e.shape
            else:
                continue
            if field is not None:
                out.append((field, tuple(shape)))
        return out

    def _rule(self, fn):
        parents = self._parents(fn)
        if not parents:
            return None
        out_shape = tuple(fn.output_meta[0][0])
        spatial = [(f, s) for f, s in parents if len(s) == 4]
        if len(out_shape) != 4:
            if any(out_shape[-2:] != s[2:] for _, s in spatial):
                # a flatten or a reduction over H, W: each output sees the whole map
                return _widest([_through(f, [_whole_map(n) for n in s[2:]])
                                for f, s in spatial] + [f for f, s in parents if len(s) != 4])
            return _widest([f for f, _ in parents])      # e.g. a stack: (H, W) kept
        first_field, first_shape = parents[0]
        if len(first_shape) == 4:
            maps = _function_maps(fn, first_shape[2:], out_shape[2:])
            if maps is not None:
                return _through(first_field, maps)
        if spatial and all(s[2:] != out_shape[2:] for _, s in spatial):
            # an op that resamples H or W and has no rule: read it as an adaptive pool
            name = type(fn).__name__
            if name not in self.warned:
                self.warned.add(name)
                warnings.warn(f"receptive_field: no rule for {name}, which changes "
                              f"{first_shape[2:]} to {out_shape[2:]}; treated as an "
                              f"adaptive pool", stacklevel=2)
            return _through(first_field, [_adaptive_map(n, o) for n, o in
                                          zip(first_shape[2:], out_shape[2:])])
        return _widest([f for f, _ in parents])


# ------------------------------------------------------------ shapes-only layers

class _Geometry(Function):
    """Stands for a convolution or linear layer whose arithmetic is skipped: returns the
    zeros it is given, records its input as its parent, and carries the layer's axis
    maps. Never differentiated."""

    def __init__(self, zeros, maps):
        self.zeros, self.maps = zeros, maps

    def forward(self, x):
        return self.zeros

    def backward(self, g):
        raise RuntimeError("receptive_field: a shapes-only layer has no gradient")


def _geometry_forward(nn, module, zeros_forward):
    """The forward of a shapes-only Conv2d/Linear: the same zeros as the summary's, as
    the output of a :class:`_Geometry` node on the input."""
    maps = None
    if isinstance(module, nn.Conv2d):
        left, _, top, _ = module._reversed_padding_repeated_twice
        maps = [_conv_map(k, s, p, d) for k, s, p, d in
                zip(module.kernel_size, module.stride, (top, left), module.dilation)]

    def forward(x):
        out = zeros_forward(x)
        return _Geometry(out.array, maps)(x)
    return forward


# ------------------------------------------------------------------------- helpers

def _number(v):
    return int(v) if v.denominator == 1 else float(v)


def _public_field(field):
    if field is None:
        return None
    return Field(*(tuple(_number(axis[k]) for axis in field) for k in range(3)))


def _public(field):
    return _public_field(field) or (None, None, None)
