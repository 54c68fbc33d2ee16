"""The autograd engine: Tensor, Function, the backward walk, no_grad.

A Tensor wraps one backend array. When an op runs on Tensors of which some require a
gradient (and grad mode is on), the op's Function object is remembered as the result's
``grad_fn`` together with *edges* to where each input's gradient must go: the input's own
``grad_fn`` (an interior node) or the input Tensor itself (a leaf, whose ``.grad``
accumulates). ``backward()`` sorts those nodes topologically and calls each Function's
hand-written ``backward`` once, in reverse order, adding up the gradients that arrive at
a node from several uses (fan-out) before the node runs.

Edges point at *nodes*, not at Tensor objects, so an in-place update that makes a Tensor
the output of a new node (``out += shortcut``, ``x[0] = 1``) leaves earlier uses of its
old value untouched: the graph stays correct.

Only the engine lives here. The methods that run ops (``x + y``, ``x.sum()``, ``x.to()``,
``x[0] = 1``, ``x += y``) are written in ``_tensor_api.py`` and attached to ``Tensor`` when
minicnn is imported, so this file imports no op family.
"""
from __future__ import annotations

import contextlib
import threading

import numpy as np

from . import backend

__all__ = ["Tensor", "Function", "no_grad", "enable_grad", "set_grad_enabled",
           "is_grad_enabled", "tensor", "as_tensor", "unbroadcast", "queue_callback"]


# ---------------------------------------------------------------------- grad mode

_state = threading.local()


def is_grad_enabled():
    """True unless inside ``no_grad()`` (per thread, as in PyTorch)."""
    return getattr(_state, "enabled", True)


class set_grad_enabled:
    """Context manager and decorator that turns graph recording on or off."""

    def __init__(self, mode=True):
        self.mode = bool(mode)
        self.prev = is_grad_enabled()
        _state.enabled = self.mode   # takes effect at once, like torch.set_grad_enabled(False)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _state.enabled = self.prev
        return False


class _GradMode(contextlib.ContextDecorator):
    mode = True

    def __enter__(self):
        self.prev = is_grad_enabled()
        _state.enabled = self.mode
        return self

    def __exit__(self, *exc):
        _state.enabled = self.prev
        return False


class no_grad(_GradMode):
    """``with minicnn.no_grad():`` or ``@minicnn.no_grad()``: record no graph inside."""
    mode = False


class enable_grad(_GradMode):
    """Turn recording back on inside a ``no_grad`` block."""
    mode = True


# ----------------------------------------------------------------------- Function

class Function:
    """One differentiable op: ``forward`` and ``backward`` on raw arrays.

    Subclasses take their hyper-parameters in ``__init__`` and are applied with
    ``MyOp(hyper=...)(x, w)``. In ``forward(*arrays)`` they may read
    ``self.needs_input_grad`` (a bool per input) to skip saving what no gradient needs.
    ``backward(*grads)`` receives one gradient per output and returns one per input (a
    tuple, or a single array when there is one input); ``None`` stands for "no gradient".
    Inputs given as ``None`` (an absent bias) reach ``forward`` as ``None``.
    Integer or boolean outputs are never differentiable.
    """

    needs_input_grad = ()

    def forward(self, *arrays):
        raise NotImplementedError

    def backward(self, *grads):
        raise NotImplementedError

    def __call__(self, *inputs):
        tensors = tuple(None if x is None else as_tensor(x) for x in inputs)
        self.needs_input_grad = tuple(t is not None and t.requires_grad for t in tensors)
        record = is_grad_enabled() and any(self.needs_input_grad)
        if not record:
            self.needs_input_grad = (False,) * len(tensors)
        raw = self.forward(*(None if t is None else t.array for t in tensors))
        outputs = raw if isinstance(raw, tuple) else (raw,)
        results = tuple(Tensor._wrap(o) for o in outputs)
        if record:
            # Where each input's gradient goes: its node, or itself if it is a leaf.
            self.edges = tuple(_edge(t) for t in tensors)
            self.output_meta = tuple((o.shape, o.dtype) for o in outputs)
            for index, r in enumerate(results):
                if _is_float(r.array):
                    r.requires_grad = True
                    r.grad_fn = self
                    r.output_index = index
        return results if isinstance(raw, tuple) else results[0]

    def __repr__(self):
        return f"<{type(self).__name__}>"


def _edge(t):
    if t is None or not t.requires_grad:
        return None
    if t.grad_fn is not None:
        return (t.grad_fn, t.output_index)
    return t   # a leaf


def _is_float(array):
    return array.dtype.kind in "fc"


# ------------------------------------------------------------------ backward walk

def _topological_order(root):
    """Nodes reachable from ``root``, each after every node that consumes its output.

    Iterative depth-first search (no recursion limit on deep chains).
    """
    order, visited = [], {id(root)}
    stack = [(root, iter(_parents(root)))]
    while stack:
        node, parents = stack[-1]
        for parent in parents:
            if id(parent) not in visited:
                visited.add(id(parent))
                stack.append((parent, iter(_parents(parent))))
                break
        else:
            stack.pop()
            order.append(node)
    order.reverse()      # root first
    return order


def _parents(fn):
    if not hasattr(fn, "edges"):
        raise RuntimeError(
            "backward: trying to backward through the graph a second time (or directly "
            "access saved values after they have already been freed). Saved intermediate "
            "values of the graph are freed when you call .backward(); specify "
            "retain_graph=True if you need to backward through the graph a second time.")
    return [e[0] for e in fn.edges if isinstance(e, tuple)]


def queue_callback(callback):
    """Run ``callback()`` once the backward walk now under way has finished (as torch's
    ``Variable._execution_engine.queue_callback``): a hook that starts work while backward
    runs (e.g. data-parallel training's gradient allreduce) uses it to finish that work
    before ``backward()`` returns. Only valid inside a backward walk (from a hook)."""
    callbacks = getattr(_state, "callbacks", None)
    if callbacks is None:
        raise RuntimeError("queue_callback: no backward walk is running; call it from a "
                           "gradient hook")
    callbacks.append(callback)


def _run_backward(root_tensor, grad, retain_graph):
    outer = getattr(_state, "callbacks", None)
    _state.callbacks = []
    try:
        _walk(root_tensor, grad, retain_graph)
        # callbacks may queue more callbacks: run until none is left
        while _state.callbacks:
            _state.callbacks.pop(0)()
    finally:
        _state.callbacks = outer


def _walk(root_tensor, grad, retain_graph):
    root = root_tensor.grad_fn
    if root is None:             # a leaf: its gradient is the upstream gradient
        root_tensor._accumulate_grad(grad)
        return
    pending = {id(root): [None] * len(root.output_meta)}
    pending[id(root)][root_tensor.output_index] = grad
    for fn in _topological_order(root):
        grads = pending.pop(id(fn), None)
        if grads is None:          # nothing flows back through this node
            continue
        xp = backend.get_array_module(*(g for g in grads if g is not None))
        grads = [xp.zeros(shape, dtype) if g is None else g
                 for g, (shape, dtype) in zip(grads, fn.output_meta)]
        # the gradient of each output is complete now: run hooks, fill retained .grad
        for index, tensors in getattr(fn, "watchers", {}).items():
            for t in tensors:
                grads[index] = t._receive_grad(grads[index])
        input_grads = fn.backward(*grads)
        if not isinstance(input_grads, tuple):
            input_grads = (input_grads,)
        if len(input_grads) != len(fn.edges):
            raise RuntimeError(f"{type(fn).__name__}.backward returned {len(input_grads)} "
                               f"gradients for {len(fn.edges)} inputs")
        for edge, g in zip(fn.edges, input_grads):
            if edge is None or g is None:
                continue
            if isinstance(edge, tuple):
                node, index = edge
                slot = pending.setdefault(id(node), [None] * len(node.output_meta))
                # out-of-place add: a backward may hand the same array to several inputs
                slot[index] = g if slot[index] is None else slot[index] + g
            else:
                edge._accumulate_grad(g)
        if not retain_graph:
            _free(fn)


def _free(fn):
    """Drop what a node saved for backward (and its edges), so memory is returned."""
    meta = fn.output_meta
    fn.__dict__.clear()
    fn.output_meta = meta


def unbroadcast(grad, shape):
    """Sum ``grad`` over the axes that broadcasting added or stretched, to get ``shape``.

    The gradient of ``x`` in ``x + y`` (x broadcast from ``shape``) is the upstream gradient
    summed over every broadcast axis: leading axes that ``x`` lacks, and axes where ``x``
    has size 1.
    """
    if grad.shape == tuple(shape):
        return grad
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad


# ------------------------------------------------------------------------- Tensor

def _to_array(data, dtype=None, device=None):
    """Make a backend array from ``data`` (array, Tensor, list, number)."""
    if isinstance(data, Tensor):
        data = data.array
    if dtype is not None:
        dtype = np.dtype(dtype)
    target = backend.Device(device) if device is not None else None
    if backend._is_cupy_array(data):
        array = data if dtype is None else data.astype(dtype, copy=False)
        return array if target is None else backend.to_device(array, target)
    xp = np
    if isinstance(data, (list, tuple)):
        data, xp = _items(data)
    # NOTE: np.asarray refuses CuPy arrays, so a list holding GPU values is built by CuPy
    array = xp.asarray(data)
    if dtype is not None:
        array = array.astype(dtype, copy=False)
    elif array.dtype.kind == "f" and not isinstance(data, (np.ndarray, np.generic)):
        # Python floats and lists of them become the default float dtype, as in torch;
        # NumPy arrays and scalars keep theirs.
        array = array.astype(backend.get_default_dtype())
    if array.dtype.kind in "OUSV":
        raise TypeError(f"tensor: cannot make a tensor from data of dtype {array.dtype} "
                        f"({type(data).__name__})")
    if target is not None and (target.type == "cuda" or xp is not np):
        array = backend.to_device(array, target)
    return array


def _items(data):
    """Nested lists/tuples with Tensors replaced by their arrays, and the array module
    their arrays live on (CuPy if any does)."""
    found = []

    def plain(item):
        if isinstance(item, Tensor):
            item = item.array
        if isinstance(item, (list, tuple)):
            return type(item)(plain(i) for i in item)
        if backend._is_cupy_array(item):
            found.append(item)
        return item
    data = plain(data)
    return data, (backend.get_array_module(found[0]) if found else np)


class Tensor:
    """An n-dimensional array that can record the operations applied to it.

    ``requires_grad`` marks a tensor whose gradient is wanted; after ``loss.backward()``
    it is in ``.grad`` (a Tensor of the same shape). Operators and methods follow PyTorch;
    those that run an op are defined in ``minicnn/_tensor_api.py``.
    """

    # Make NumPy defer to Tensor in ``ndarray * tensor`` instead of looping over elements.
    __array_ufunc__ = None
    __array_priority__ = 1000

    def __init__(self, data, requires_grad=False, dtype=None, device=None):
        self.array = _to_array(data, dtype, device)
        self.grad = None
        self.grad_fn = None
        self.output_index = 0
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    @classmethod
    def _wrap(cls, array):
        t = cls.__new__(cls)
        t.array, t.grad, t.grad_fn, t.output_index, t.requires_grad = array, None, None, 0, False
        return t

    # ---------------------------------------------------------------- properties
    @property
    def shape(self):
        return self.array.shape

    @property
    def dtype(self):
        return self.array.dtype

    @property
    def device(self):
        return backend.device_of(self.array)

    @property
    def ndim(self):
        return self.array.ndim

    @property
    def is_leaf(self):
        return self.grad_fn is None

    @property
    def is_cuda(self):
        return self.device.type == "cuda"

    @property
    def data(self):
        """A tensor sharing this one's array, outside the graph (as ``torch.Tensor.data``)."""
        return Tensor._wrap(self.array)

    @data.setter
    def data(self, value):
        value = _to_array(value)
        if value.shape != self.shape:
            raise ValueError(f"Tensor.data: expected shape {self.shape}, got {value.shape}")
        self.array = value.astype(self.dtype, copy=False)

    def dim(self):
        return self.array.ndim

    def numel(self):
        return int(self.array.size)

    def size(self, dim=None):
        """The shape (as ``torch.Size``-like tuple), or one dimension's length."""
        if dim is None:
            return tuple(self.array.shape)
        return self.array.shape[_check_dim("size", dim, self.ndim)]

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.array.shape[0]

    def item(self):
        if self.array.size != 1:
            raise ValueError(f"item: only a tensor with one element can be converted to a "
                             f"Python number, this one has shape {self.shape}")
        backend.flush_checks()          # queued device checks fail here, not later
        return self.array.reshape(()).item()

    def tolist(self):
        return self.numpy().tolist()

    def numpy(self):
        """A host (NumPy) copy-free view when on the CPU, a copy from the GPU otherwise."""
        # NOTE: torch insists on .detach() first; a NumPy array carries no graph either way.
        return backend.to_device(self.array, "cpu")

    def __array__(self, dtype=None, copy=None):
        a = self.numpy()
        return a if dtype is None else a.astype(dtype)

    def __repr__(self):
        body = np.array2string(self.numpy(), separator=", ", precision=4,
                               prefix="tensor(")
        extras = []
        if self.dtype not in (backend.get_default_dtype(), np.dtype(np.int64), np.dtype(np.bool_)):
            extras.append(f"dtype={self.dtype}")
        if self.device.type != "cpu":
            extras.append(f"device='{self.device}'")
        if self.grad_fn is not None:
            extras.append(f"grad_fn=<{type(self.grad_fn).__name__}>")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        return "tensor(" + body + "".join(", " + e for e in extras) + ")"

    def __bool__(self):
        if self.array.size != 1:
            raise RuntimeError(f"the truth value of a tensor with {self.array.size} elements "
                               "is ambiguous")
        return bool(self.array.reshape(()))

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        if self.dtype.kind not in "iu" or self.array.size != 1:
            raise TypeError("only integer tensors of a single element can be used as an index")
        return int(self.item())

    def __hash__(self):
        return id(self)

    # ------------------------------------------------------------- grad handling
    def requires_grad_(self, requires_grad=True):
        if requires_grad and not _is_float(self.array):
            raise RuntimeError(f"requires_grad_: only floating-point tensors can require "
                               f"gradients, this one is {self.dtype}")
        if not requires_grad and self.grad_fn is not None:
            raise RuntimeError("requires_grad_: you can only change requires_grad of leaf "
                               "tensors; use .detach() for a non-leaf")
        self.requires_grad = bool(requires_grad)
        return self

    def detach(self):
        """The same array, cut from the graph."""
        return Tensor._wrap(self.array)

    def detach_(self):
        self.grad_fn, self.requires_grad = None, False
        return self

    def _accumulate_grad(self, g):
        if self.grad_fn is None:
            for hook in list(getattr(self, "_hooks", [])):   # leaf hooks run first
                out = hook(Tensor._wrap(g))
                if out is not None:
                    g = as_tensor(out).array
        if g.shape != self.shape:
            raise RuntimeError(f"backward: gradient of shape {g.shape} reached a tensor of "
                               f"shape {self.shape}")
        if g.dtype != self.dtype:
            g = g.astype(self.dtype)
        if self.grad is None:
            # Copy: a backward may return one array for several inputs (e.g. of an add),
            # and a user mutating one .grad in place must not change another.
            xp = backend.get_array_module(g)
            self.grad = Tensor._wrap(xp.array(g, copy=True))
        else:
            self.grad = Tensor._wrap(self.grad.array + g)
        if self.grad_fn is None:
            for hook in list(getattr(self, "_post_accumulate_hooks", [])):
                hook(self)

    def backward(self, gradient=None, retain_graph=False, *, grad=None):
        """Compute the gradient of this tensor with respect to every leaf that requires one.

        ``gradient`` (the upstream gradient dL/dself) may be omitted only for a tensor with
        one element. Gradients add up in each leaf's ``.grad``.
        """
        if gradient is None:
            gradient = grad                  # backward(grad=...) reads naturally too
        if not self.requires_grad:
            raise RuntimeError("backward: this tensor does not require grad and has no "
                               "grad_fn (did you forget requires_grad=True, or call it "
                               "inside no_grad()?)")
        xp = backend.get_array_module(self.array)
        if gradient is None:
            if self.array.size != 1:
                raise RuntimeError(f"backward: grad can be implicitly created only for "
                                   f"scalar outputs; this tensor has shape {self.shape}, "
                                   f"pass gradient= of that shape")
            g = xp.ones(self.shape, dtype=self.dtype)
        else:
            g = _to_array(gradient)
            if g.shape != self.shape:
                raise RuntimeError(f"backward: gradient has shape {g.shape}, expected "
                                   f"{self.shape} (the shape of the tensor)")
            g = xp.asarray(g).astype(self.dtype, copy=False)
        _run_backward(self, g, retain_graph)

    def retain_grad(self):
        """Keep the gradient of this non-leaf tensor in ``.grad`` after backward."""
        if self.grad_fn is not None and not getattr(self, "_retains", False):
            self._retains = True
            self._watch()
        return self

    def register_hook(self, hook):
        """``hook(grad) -> None or new grad`` runs when this tensor's gradient is computed
        (e.g. to inspect or clip it); returns a handle whose ``remove()`` unregisters it."""
        if not self.requires_grad:
            raise RuntimeError("register_hook: cannot register a hook on a tensor that "
                               "doesn't require gradient")
        hooks = self.__dict__.setdefault("_hooks", [])
        hooks.append(hook)
        if self.grad_fn is not None and len(hooks) == 1:
            self._watch()
        return _HookHandle(hooks, hook)

    def register_post_accumulate_grad_hook(self, hook):
        """``hook(tensor) -> None`` runs after a gradient has been added to this leaf's
        ``.grad`` (as torch's): the moment the gradient of a parameter is ready, which
        data-parallel training uses to start reducing it while backward goes on. A leaf
        used several times in the graph receives (and so reports) each use's gradient
        in turn. Returns a handle whose ``remove()`` unregisters it."""
        if self.grad_fn is not None:
            raise RuntimeError("register_post_accumulate_grad_hook: post accumulate grad "
                               "hooks cannot be registered on non-leaf tensors")
        if not self.requires_grad:
            raise RuntimeError("register_post_accumulate_grad_hook: cannot register a hook "
                               "on a tensor that doesn't require gradient")
        hooks = self.__dict__.setdefault("_post_accumulate_hooks", [])
        hooks.append(hook)
        return _HookHandle(hooks, hook)

    def _watch(self):
        watchers = self.grad_fn.__dict__.setdefault("watchers", {})
        watchers.setdefault(self.output_index, []).append(self)

    def _receive_grad(self, g):
        """A non-leaf's gradient arrives: apply hooks, keep it if retained."""
        for hook in list(getattr(self, "_hooks", [])):
            out = hook(Tensor._wrap(g))
            if out is not None:
                g = as_tensor(out).array
        if getattr(self, "_retains", False):
            self._accumulate_grad(g)
        return g

class _HookHandle:
    def __init__(self, hooks, hook):
        self.hooks, self.hook = hooks, hook

    def remove(self):
        if self.hook in self.hooks:
            self.hooks.remove(self.hook)


def _check_dim(op, dim, ndim):
    if not isinstance(dim, (int, np.integer)):
        raise TypeError(f"{op}: dim must be an integer, got {dim!r}")
    if not -max(ndim, 1) <= dim < max(ndim, 1):
        raise IndexError(f"{op}: dim {dim} is out of range for a tensor with {ndim} "
                         f"dimension(s)")
    return dim % max(ndim, 1)


# ------------------------------------------------------------------- constructors

def tensor(data, requires_grad=False, dtype=None, device=None):
    """A new Tensor holding a copy of ``data`` (as ``torch.tensor``)."""
    array = _to_array(data, dtype, device)
    if isinstance(data, (Tensor, np.ndarray)) or backend._is_cupy_array(data):
        xp = backend.get_array_module(array)
        array = xp.array(array, copy=True)
    t = Tensor._wrap(array)
    return t.requires_grad_(True) if requires_grad else t


def as_tensor(value, like=None, dtype=None):
    """``value`` if it is a Tensor, else a Tensor made from it.

    A Python number combined with ``like`` takes ``like``'s dtype when that is a float
    (``x * 2`` keeps float32) and ``like``'s device, as torch's type promotion does.
    """
    if isinstance(value, Tensor):
        return value
    if like is not None and isinstance(value, (int, float, bool, np.number, np.bool_)):
        if like.dtype.kind == "f":
            dt = like.dtype
        elif isinstance(value, (float, np.floating)):
            dt = backend.get_default_dtype()
        else:
            dt = like.dtype if not isinstance(value, bool) else np.bool_
        xp = backend.get_array_module(like.array)
        # full(), not asarray(): on a GPU a fill, where asarray would copy from the host
        return Tensor._wrap(xp.full((), value, dtype=dt))
    array = _to_array(value, dtype)
    if like is not None and backend._is_cupy_array(like.array):
        array = backend.to_device(array, like.device)
    return Tensor._wrap(array)
