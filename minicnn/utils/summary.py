"""A layer-by-layer table of a model: output shapes, parameters, multiply-adds and
activation memory, measured on a real forward pass (``minicnn.summary`` and
``minicnn summary MODEL``, whose command line is ``minicnn/cli/summary.py``).

How it is measured. Every submodule gets a forward pre-hook and a forward hook, and the
model runs once, under ``no_grad``, on a random input of the given size. A row is one
call of one module (a module called twice, like ResNet's shared ReLU, gives two rows).
The hooks keep a stack of the calls in progress, so a leaf's multiply-adds are added to
every enclosing call: a container row shows the total of what ran inside it.

What is counted:

* Parameters: ``numel`` of every parameter, from the shapes alone; the totals cover the
  whole model, including modules that did not run in this forward (listed below the
  table, e.g. GoogLeNet's auxiliary classifiers in eval mode).
* Multiply-adds (MACs), as torchvision's table and the usual counters (fvcore, thop's
  conv/linear rule) count them: only convolutions and linear layers, one per weight
  use, biases not counted.
  Conv2d: N * C_out * OH * OW * (C_in / groups) * KH * KW;
  ConvTranspose2d: N * C_in * H * W * (C_out / groups) * KH * KW;
  Linear: (number of input rows) * in_features * out_features.
  BatchNorm, activations, pooling, additions and concatenations count 0 (together they
  are typically under 1 % of the total for these networks).
* Activations: the bytes of each call's output. The total adds the outputs of the leaf
  modules (those without children), roughly what a training forward keeps for
  backward; results of functional calls in ``forward`` (``F.relu``, ``torch.cat``,
  ``out += identity``) are not seen by hooks and not included.

``rf=True`` adds an RF column: the receptive field of each row's output, in input pixels
(see ``minicnn/utils/receptive_field.py``; it costs a second, shapes-only pass).

``shapes_only=True`` skips the arithmetic of Conv2d and Linear (the expensive part):
their outputs are zero arrays of the shape given by the documented output-size
formula, and everything else runs for real. The counts are unchanged (they only depend
on shapes); the tests check that both modes give identical tables for every model
family. It makes a summary of ResNet-152 at 224x224 take a moment instead of seconds.
"""
from __future__ import annotations

import collections
import contextlib

import numpy as np

from .. import backend
from ..autograd import Tensor, no_grad
from ._outputs import depth as _depth, format_shape as _format_shape
from ._outputs import shape_of as _shape_of, tensors as _tensors
from .receptive_field import format_pair, receptive_field

__all__ = ["summary", "ModelSummary", "SummaryRow", "count_parameters"]

SummaryRow = collections.namedtuple(
    "SummaryRow", ["name", "type", "depth", "output_shape", "params", "macs",
                   "activation_bytes", "is_leaf", "rf"], defaults=(None,))
SummaryRow.__doc__ = """One call of one module. ``output_shape`` is a tuple (or a list of
tuples for several outputs); ``params`` is None on repeated calls of a module; ``rf`` is
the (h, w) receptive-field size of the output with ``summary(..., rf=True)``, else None."""


def count_parameters(model, trainable_only=False):
    """Number of parameter values (from the shapes; no forward pass)."""
    return sum(p.numel() for p in model.parameters()
               if p.requires_grad or not trainable_only)


def summary(model, input_size=None, *, input_data=None, batch_size=1, dtype=None,
            depth=3, mode="eval", shapes_only=False, rf=False, verbose=True):
    """Run ``model`` once and return a :class:`ModelSummary` (printed when ``verbose``).

    ``input_size``: one input's shape without the batch dimension, e.g. ``(3, 224, 224)``
    (the batch is ``batch_size``); or pass ``input_data`` (a Tensor, or a tuple of them).
    ``depth``: rows nested deeper than this are folded into their parent (whose counts
    include them). ``mode``: ``"eval"`` (default) or ``"train"``; the model's mode, its
    BN running statistics and the random state are restored afterwards.
    ``shapes_only``, ``rf``: see the module docstring.
    """
    from .. import nn     # imported here: minicnn/__init__ imports this module early

    if mode not in ("eval", "train"):
        raise ValueError(f"summary: mode must be 'eval' or 'train', got {mode!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"summary: expected an nn.Module, got {type(model).__name__}")
    inputs = _make_inputs(model, input_size, input_data, batch_size, dtype)

    names = {id(m): name for name, m in model.named_modules()}
    rows, stack, seen = [], [], set()
    leaf_bytes = [0]

    def pre_hook(module, args):
        name = names[id(module)]
        first = id(module) not in seen
        seen.add(id(module))
        params = count_parameters(module) if first else None
        is_leaf = not any(True for _ in module.children())
        rows.append([name, type(module).__name__, _depth(name), None, params, 0, 0, is_leaf])
        stack.append(len(rows) - 1)

    def hook(module, args, output):
        index = stack.pop()
        row = rows[index]
        arrays = _tensors(output)
        row[3] = _shape_of(output)
        row[6] = sum(a.numel() * a.dtype.itemsize for a in arrays)
        if row[7]:
            leaf_bytes[0] += row[6]
            macs = _macs(nn, module, args, output)
            for i in stack + [index]:   # this call and every call that encloses it
                rows[i][5] += macs

    handles = []
    with _kept_state(model, mode), \
            _patched_shapes_only(nn, model) if shapes_only else contextlib.nullcontext():
        try:
            for m in model.modules():
                handles.append(m.register_forward_pre_hook(pre_hook))
                handles.append(m.register_forward_hook(hook))
            with no_grad():
                model(*inputs)
        finally:
            for h in handles:
                h.remove()

    # modules with parameters of which nothing ran, named at the highest such level (a
    # ModuleList is never called itself: it ran when one of its members did)
    def ran(module):
        return any(id(sub) in seen for sub in module.modules())

    unused = []
    for name, m in model.named_modules():
        parent = model.get_submodule(name.rpartition(".")[0]) if name else None
        if (name and not ran(m) and ran(parent)
                and any(True for _ in m.parameters())):
            unused.append(name)
    total_macs = rows[0][5] if rows else 0           # the root's call encloses all
    fields = None
    if rf:
        fields = receptive_field(model, input_data=inputs, mode=mode)
        # the same calls in the same order: one row each, the root left out in both
        if [f.name for f in fields.rows] != [r[0] for r in rows[1:]]:
            raise RuntimeError("summary: the receptive-field pass called other modules "
                               "than the summary's (does the forward depend on values?)")
    table_rows = [SummaryRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7],
                             fields.rows[i].size if fields else None)
                  for i, r in enumerate(rows[1:]) if r[2] <= depth]
    result = ModelSummary(
        rows=table_rows, input_shapes=[tuple(x.shape) for x in inputs],
        total_params=count_parameters(model),
        trainable_params=count_parameters(model, trainable_only=True),
        total_macs=total_macs,
        activation_bytes=leaf_bytes[0],
        input_bytes=sum(x.numel() * x.dtype.itemsize for x in inputs),
        param_bytes=sum(p.numel() * p.dtype.itemsize for p in model.parameters()),
        unused=unused, model_name=type(model).__name__,
        shapes_only=shapes_only, receptive_field=fields)
    if verbose:
        print(result)
    return result


class ModelSummary:
    """The result of :func:`summary`: ``rows`` (:data:`SummaryRow`), the totals as
    attributes, and the table as ``str(summary)``; with ``rf=True`` also
    ``receptive_field``, the full :class:`~minicnn.utils.receptive_field.ReceptiveField`
    (jumps and starts too)."""

    def __init__(self, rows, input_shapes, total_params, trainable_params, total_macs,
                 activation_bytes, input_bytes, param_bytes, unused, model_name,
                 shapes_only, receptive_field=None):
        self.rows = rows
        self.input_shapes = input_shapes
        self.total_params = total_params
        self.trainable_params = trainable_params
        self.total_macs = total_macs
        self.activation_bytes = activation_bytes
        self.input_bytes = input_bytes
        self.param_bytes = param_bytes
        self.unused = unused
        self.model_name = model_name
        self.shapes_only = shapes_only
        self.receptive_field = receptive_field

    def __str__(self):
        header = ("Layer", "Type", "Output shape", "Params", "Mult-adds", "Activations")
        with_rf = self.receptive_field is not None
        if with_rf:
            header += ("RF",)
        body = []
        for r in self.rows:
            body.append(("  " * (r.depth - 1) + r.name, r.type, _format_shape(r.output_shape),
                         "-" if r.params is None else f"{r.params:,}",
                         f"{r.macs:,}" if r.macs else "-",
                         _format_bytes(r.activation_bytes))
                        + ((format_pair(r.rf),) if with_rf else ()))
        widths = [max(len(str(row[i])) for row in [header] + body) for i in range(len(header))]
        right = (False, False, False, True, True, True, True)

        def line(cells):
            return "  ".join(str(c).rjust(w) if r else str(c).ljust(w)
                             for c, w, r in zip(cells, widths, right)).rstrip()

        rule = "=" * (sum(widths) + 2 * (len(widths) - 1))
        shapes = ", ".join(str(list(s)) for s in self.input_shapes)
        title = f"{self.model_name}, input {shapes}"
        if self.shapes_only:
            title += "  (shapes only: conv/linear arithmetic skipped)"
        out = [title, rule, line(header), rule]
        out += [line(cells) for cells in body]
        out += [rule,
                f"Total params: {self.total_params:,}",
                f"Trainable params: {self.trainable_params:,}",
                f"Non-trainable params: {self.total_params - self.trainable_params:,}",
                f"Total mult-adds: {self.total_macs:,} ({_format_count(self.total_macs)}; "
                f"conv and linear layers)"]
        if self.unused:
            shown = ", ".join(self.unused[:6]) + (" ..." if len(self.unused) > 6 else "")
            out.append(f"Not called in this forward (parameters counted above): {shown}")
        out += ["-" * len(rule),
                f"Input size: {_format_bytes(self.input_bytes)}",
                f"Forward activations (leaf outputs): {_format_bytes(self.activation_bytes)}",
                f"Params size: {_format_bytes(self.param_bytes)}",
                "Estimated total: " + _format_bytes(self.input_bytes + self.activation_bytes
                                                    + self.param_bytes),
                rule]
        return "\n".join(out)

    __repr__ = __str__


# ------------------------------------------------------------------------- helpers

def _make_inputs(model, input_size, input_data, batch_size, dtype, op="summary"):
    if (input_size is None) == (input_data is None):
        raise ValueError(f"{op}: give exactly one of input_size (e.g. (3, 224, 224)) "
                         "and input_data")
    if input_data is not None:
        data = input_data if isinstance(input_data, (tuple, list)) else (input_data,)
        return [x if isinstance(x, Tensor) else Tensor(x) for x in data]
    try:
        shape = (int(batch_size),) + tuple(int(s) for s in input_size)
    except (TypeError, ValueError):
        raise TypeError(f"{op}: input_size must be a tuple of integers without the "
                        f"batch dimension, e.g. (3, 224, 224); got {input_size!r}") from None
    if any(s <= 0 for s in shape):
        raise ValueError(f"{op}: input size must be positive, got {shape}")
    first = next(iter(model.parameters()), None)
    dt = np.dtype(dtype) if dtype is not None else (
        first.dtype if first is not None and first.dtype.kind == "f"
        else backend.get_default_dtype())
    # a private generator: a summary must not change the global random state
    array = np.random.default_rng(0).standard_normal(shape).astype(dt)
    device = first.device if first is not None else "cpu"
    return [Tensor(array, device=device)]


def _macs(nn, module, args, output):
    """Multiply-adds of one leaf call (see the module docstring)."""
    if isinstance(module, nn.Conv2d):
        out = _tensors(output)[0]
        kh, kw = module.kernel_size
        return out.numel() * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.ConvTranspose2d):
        x = _tensors(args)[0]
        kh, kw = module.kernel_size
        return x.numel() * (module.out_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        out = _tensors(output)[0]
        return out.numel() * module.in_features
    return 0


@contextlib.contextmanager
def _kept_state(model, mode):
    """Inside: the model in ``mode`` ("eval" or "train"). Afterwards every module's mode,
    every buffer (BN's running statistics move in training mode) and the random state
    (dropout draws) are as they were."""
    saved_mode = [(m, m.training) for m in model.modules()]
    saved_rng = backend.get_rng_state()
    saved_buffers = [(b, b.array.copy()) for b in model.buffers()]
    try:
        model.train(mode == "train")
        yield
    finally:
        for m, training in saved_mode:
            object.__setattr__(m, "training", training)
        for b, array in saved_buffers:
            b.array[...] = array
        backend.set_rng_state(saved_rng)


@contextlib.contextmanager
def _patched_shapes_only(nn, model, wrap=None):
    """Inside: every (materialised) Conv2d and Linear has a forward that returns zeros of
    the right shape. ``wrap(nn, module, zeros_forward)``, if given, builds the forward
    from that one (the receptive field's links the zeros to the input)."""
    patched = []
    try:
        for m in model.modules():
            if type(m) is nn.Conv2d:
                forward = _conv_shape_forward(m)
            elif type(m) is nn.Linear:
                forward = _linear_shape_forward(m)
            else:
                continue
            object.__setattr__(m, "forward", forward if wrap is None else wrap(nn, m, forward))
            patched.append(m)
        yield
    finally:
        for m in patched:
            del m.__dict__["forward"]


def _conv_shape_forward(m):
    def forward(x):
        if x.ndim != 4 or x.shape[1] != m.in_channels:
            return type(m).forward(m, x)     # let the real layer raise its error
        left, right, top, bottom = m._reversed_padding_repeated_twice
        (kh, kw), (sh, sw), (dh, dw) = m.kernel_size, m.stride, m.dilation
        # OH = floor((H + PH_total - DH*(KH-1) - 1) / SH) + 1, the same for W
        oh = (x.shape[2] + top + bottom - dh * (kh - 1) - 1) // sh + 1
        ow = (x.shape[3] + left + right - dw * (kw - 1) - 1) // sw + 1
        if oh <= 0 or ow <= 0:
            return type(m).forward(m, x)
        xp = backend.get_array_module(x.array)
        return Tensor._wrap(xp.zeros((x.shape[0], m.out_channels, oh, ow), dtype=x.dtype))
    return forward


def _linear_shape_forward(m):
    def forward(x):
        if x.ndim == 0 or x.shape[-1] != m.in_features:
            return type(m).forward(m, x)
        xp = backend.get_array_module(x.array)
        return Tensor._wrap(xp.zeros(x.shape[:-1] + (m.out_features,), dtype=x.dtype))
    return forward


def _format_bytes(n):
    for unit, size in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


def _format_count(n):
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return str(n)
