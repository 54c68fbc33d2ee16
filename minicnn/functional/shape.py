"""Shape ops: reshape/view, transpose/permute, flatten, squeeze/unsqueeze, expand,
indexing (``x[i]``, slices, integer arrays, masks), index assignment, cat, stack, split.

None of these change values, so their backward only puts the gradient back in the
input's shape: reshape it back, permute it back, or scatter it back into zeros.
"""
from __future__ import annotations

import itertools
import math

import numpy as np

from .. import backend
from ..autograd import Function, Tensor, as_tensor, _check_dim

__all__ = ["reshape", "view", "transpose", "permute", "flatten", "squeeze", "unsqueeze",
           "expand", "broadcast_to", "getitem", "index_put", "cat", "concatenate", "stack",
           "split", "chunk", "movedim"]


def reshape(x, *shape):
    """Same values in a new shape; one dimension may be -1 (inferred)."""
    x = as_tensor(x)
    shape = _shape_arg("reshape", shape)
    known = math.prod(s for s in shape if s != -1)
    if (-1 not in shape and known != x.numel()) or (-1 in shape and (known == 0 or x.numel() % known)):
        raise ValueError(f"reshape: shape {shape} is invalid for a tensor of shape "
                         f"{x.shape} ({x.numel()} elements)")
    if tuple(x.shape) == shape:
        return x
    return Reshape(shape)(x)


view = reshape


class Reshape(Function):
    def __init__(self, shape):
        self.shape = shape

    def forward(self, x):
        self.in_shape = x.shape
        return x.reshape(self.shape)

    def backward(self, g):
        return g.reshape(self.in_shape)


def flatten(x, start_dim=0, end_dim=-1):
    """Merge dimensions ``start_dim..end_dim`` into one (as ``torch.flatten``)."""
    x = as_tensor(x)
    if x.ndim == 0:
        return reshape(x, 1)
    start = _check_dim("flatten", start_dim, x.ndim)
    end = _check_dim("flatten", end_dim, x.ndim)
    if start > end:
        raise ValueError(f"flatten: start_dim ({start_dim}) must not come after end_dim "
                         f"({end_dim})")
    shape = x.shape[:start] + (math.prod(x.shape[start:end + 1]),) + x.shape[end + 1:]
    return reshape(x, shape)


def squeeze(x, dim=None):
    """Drop dimensions of size 1 (all of them, or only ``dim`` when it has size 1)."""
    x = as_tensor(x)
    if dim is None:
        shape = tuple(s for s in x.shape if s != 1)
    else:
        dims = dim if isinstance(dim, (tuple, list)) else (dim,)
        dims = {_check_dim("squeeze", d, x.ndim) for d in dims}
        shape = tuple(s for i, s in enumerate(x.shape) if not (i in dims and s == 1))
    return reshape(x, shape)


def unsqueeze(x, dim):
    """Insert a dimension of size 1 at ``dim`` (``-1`` appends)."""
    x = as_tensor(x)
    if not -(x.ndim + 1) <= dim <= x.ndim:
        raise IndexError(f"unsqueeze: dim {dim} is out of range for a tensor with "
                         f"{x.ndim} dimension(s)")
    dim = dim % (x.ndim + 1)
    return reshape(x, x.shape[:dim] + (1,) + x.shape[dim:])


def permute(x, *dims):
    """Reorder the dimensions: output axis i is input axis ``dims[i]``."""
    x = as_tensor(x)
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        dims = tuple(dims[0])
    if len(dims) != x.ndim:
        raise ValueError(f"permute: expected {x.ndim} dims for a tensor of shape {x.shape}, "
                         f"got {dims}")
    dims = tuple(_check_dim("permute", d, x.ndim) for d in dims)
    if sorted(dims) != list(range(x.ndim)):
        raise ValueError(f"permute: dims {dims} is not a permutation of 0..{x.ndim - 1}")
    return Permute(dims)(x)


class Permute(Function):
    def __init__(self, dims):
        self.dims = dims

    def forward(self, x):
        return x.transpose(self.dims)

    def backward(self, g):
        # the inverse permutation: where each input axis went
        return g.transpose(tuple(sorted(range(len(self.dims)), key=self.dims.__getitem__)))


def transpose(x, dim0=0, dim1=1):
    """Swap two dimensions."""
    x = as_tensor(x)
    if x.ndim < 2:
        return x
    dims = list(range(x.ndim))
    a, b = _check_dim("transpose", dim0, x.ndim), _check_dim("transpose", dim1, x.ndim)
    dims[a], dims[b] = dims[b], dims[a]
    return Permute(tuple(dims))(x)


def movedim(x, source, destination):
    """Move dimension ``source`` to position ``destination``, the others keeping their
    order (as ``torch.movedim``): a permutation, whose gradient is permuted back."""
    x = as_tensor(x)
    dims = list(range(x.ndim))
    src = _check_dim("movedim", source, x.ndim)
    dims.pop(src)
    dims.insert(destination % x.ndim, src)
    return Permute(tuple(dims))(x)


def expand(x, *shape):
    """Broadcast to ``shape`` without copying (-1 keeps a dimension); the gradient sums
    over the broadcast axes."""
    x = as_tensor(x)
    shape = _shape_arg("expand", shape) if shape else ()
    lead = len(shape) - x.ndim
    if lead < 0:
        raise ValueError(f"expand: shape {shape} has fewer dimensions than the tensor "
                         f"({x.shape})")
    full = tuple(x.shape[i - lead] if s == -1 else s for i, s in enumerate(shape))
    for i, n in enumerate(x.shape):
        if n != 1 and n != full[i + lead]:
            raise ValueError(f"expand: the size {n} of dimension {i} (shape {x.shape}) "
                             f"cannot be expanded to {full[i + lead]} (shape {full})")
    return BroadcastTo(full)(x)


class BroadcastTo(Function):
    def __init__(self, shape):
        self.shape = shape

    def forward(self, x):
        xp = backend.get_array_module(x)
        self.in_shape = x.shape
        return xp.broadcast_to(x, self.shape)

    def backward(self, g):
        from ..autograd import unbroadcast
        return unbroadcast(g, self.in_shape)


def broadcast_to(x, shape):
    """:func:`expand` to ``shape`` (NumPy's name); the gradient sums over the broadcast
    axes."""
    return expand(x, tuple(shape))


def getitem(x, index):
    """``x[index]``: integers, slices, ``None``, ``...``, integer arrays and boolean masks.

    Backward scatters the gradient into zeros of the input's shape; repeated integer
    indices add up.
    """
    x = as_tensor(x)
    converted = _index_for(x, index)
    _check_bounds("getitem", converted, x.shape)
    try:
        return GetItem(converted)(x)
    except IndexError as exc:
        raise IndexError(f"getitem: index {index!r} does not fit a tensor of shape "
                         f"{tuple(x.shape)} ({exc})") from None


class GetItem(Function):
    def __init__(self, index):
        self.index = index

    def forward(self, x):
        self.in_shape, self.dtype = x.shape, x.dtype
        out = x[self.index]
        xp = backend.get_array_module(x)
        return xp.asarray(out)   # an integer index yields a 0-d array, not a scalar

    def backward(self, g):
        xp = backend.get_array_module(g)
        gx = xp.zeros(self.in_shape, dtype=g.dtype)
        if _has_advanced(self.index):
            backend.scatter_add(gx, self.index, g)   # repeated indices add up
        else:
            gx[self.index] = g
        return gx


def index_put(x, index, value):
    """A copy of ``x`` with ``x[index] = value`` (the differentiable form of item assignment)."""
    x = as_tensor(x)
    value = as_tensor(value, like=x)
    if value.dtype != x.dtype:
        value = value.to(dtype=x.dtype)
    converted = _index_for(x, index)
    _check_bounds("index_put", converted, x.shape)
    return IndexPut(converted)(x, value)


class IndexPut(Function):
    def __init__(self, index):
        self.index = index

    def forward(self, x, value):
        out = x.copy()
        out[self.index] = value
        self.value_shape = value.shape
        return out

    def backward(self, g):
        gx = None
        if self.needs_input_grad[0]:
            gx = g.copy()
            gx[self.index] = 0          # overwritten entries did not reach the output
        gvalue = None
        if self.needs_input_grad[1]:
            from ..autograd import unbroadcast
            gvalue = unbroadcast(g[self.index], self.value_shape)
        return gx, gvalue


def cat(tensors, dim=0):
    """Join tensors along an existing dimension ``dim``."""
    tensors = [as_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("cat: expected a non-empty list of tensors")
    ref = tensors[0]
    d = _check_dim("cat", dim, ref.ndim)
    for i, t in enumerate(tensors):
        if t.ndim != ref.ndim or any(a != b for k, (a, b) in enumerate(zip(t.shape, ref.shape)) if k != d):
            raise ValueError(f"cat: tensors must match in every dimension but {dim}; "
                             f"tensor 0 has shape {ref.shape}, tensor {i} has shape {t.shape}")
    dtype = np.result_type(*(t.dtype for t in tensors))
    tensors = [t if t.dtype == dtype else t.to(dtype=dtype) for t in tensors]
    return Concat(d)(*tensors)


concatenate = cat


class Concat(Function):
    def __init__(self, dim):
        self.dim = dim

    def forward(self, *xs):
        xp = backend.get_array_module(*xs)
        self.bounds = list(itertools.accumulate(x.shape[self.dim] for x in xs))[:-1]
        return xp.concatenate(xs, axis=self.dim)

    def backward(self, g):
        xp = backend.get_array_module(g)
        return tuple(xp.split(g, self.bounds, axis=self.dim))


def stack(tensors, dim=0):
    """Join tensors of one shape along a new dimension ``dim``."""
    tensors = [as_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("stack: expected a non-empty list of tensors")
    for i, t in enumerate(tensors):
        if t.shape != tensors[0].shape:
            raise ValueError(f"stack: all tensors must have one shape; tensor 0 has "
                             f"{tensors[0].shape}, tensor {i} has {t.shape}")
    return cat([unsqueeze(t, dim) for t in tensors], dim)


def split(x, split_size_or_sections, dim=0):
    """Cut ``x`` along ``dim`` into pieces of ``split_size`` (the last may be smaller), or
    of the listed sizes (as ``torch.split``)."""
    x = as_tensor(x)
    d = _check_dim("split", dim, x.ndim)
    n = x.shape[d]
    if isinstance(split_size_or_sections, (int, np.integer)):
        size = int(split_size_or_sections)
        if size <= 0:
            raise ValueError(f"split: split_size must be positive, got {size}")
        sizes = [size] * (n // size) + ([n % size] if n % size else [])
    else:
        sizes = [int(s) for s in split_size_or_sections]
        if sum(sizes) != n or any(s < 0 for s in sizes):
            raise ValueError(f"split: sizes {sizes} do not add up to {n}, the length of "
                             f"dimension {dim}")
    return Split(d, sizes)(x)


class Split(Function):
    def __init__(self, dim, sizes):
        self.dim, self.sizes = dim, sizes

    def forward(self, x):
        xp = backend.get_array_module(x)
        return tuple(xp.split(x, list(itertools.accumulate(self.sizes))[:-1], axis=self.dim))

    def backward(self, *gs):
        xp = backend.get_array_module(*gs)
        return xp.concatenate(gs, axis=self.dim)


def chunk(x, chunks, dim=0):
    """Cut into ``chunks`` pieces of equal size (the last may be smaller)."""
    x = as_tensor(x)
    n = x.shape[_check_dim("chunk", dim, x.ndim)]
    return split(x, max(1, -(-n // chunks)), dim)


# ------------------------------------------------------------------------ helpers

def _shape_arg(op, shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    shape = tuple(int(s) for s in shape)
    if sum(1 for s in shape if s == -1) > 1:
        raise ValueError(f"{op}: only one dimension can be -1, got shape {shape}")
    if any(s < -1 for s in shape):
        raise ValueError(f"{op}: invalid shape {shape}")
    return shape


def _index_for(x, index):
    """An index expression with Tensors and lists turned into arrays on ``x``'s device."""
    xp = backend.get_array_module(x.array)

    def convert(i):
        if isinstance(i, Tensor):
            i = i.array
        elif isinstance(i, list):
            i = xp.asarray(i)
        if hasattr(i, "dtype") and hasattr(i, "shape") and not isinstance(i, (int, np.integer)):
            return xp.asarray(i)
        return i
    return tuple(convert(i) for i in index) if isinstance(index, tuple) else convert(index)


def _check_bounds(op, index, shape):
    """Raise IndexError for an integer-array index outside its dimension.

    NumPy raises on its own, but CuPy wraps such indices around silently (reading and
    writing the wrong elements), so the check is made here for both.
    """
    items = index if isinstance(index, tuple) else (index,)

    def width(item):                      # how many dimensions an index item consumes
        if item is None or item is Ellipsis:
            return 0
        if hasattr(item, "dtype") and hasattr(item, "ndim") and item.dtype == np.bool_:
            return item.ndim
        return 1
    ellipsis = [k for k, item in enumerate(items) if item is Ellipsis]
    after = items[ellipsis[0] + 1:] if ellipsis else ()
    dim_after = len(shape) - sum(width(item) for item in after)
    dim = 0
    for k, item in enumerate(items):
        if ellipsis and k == ellipsis[0]:
            dim = dim_after
            continue
        is_int_array = (hasattr(item, "dtype") and hasattr(item, "shape")
                        and not isinstance(item, np.generic) and item.dtype.kind in "iu")
        if is_int_array and item.size and dim < len(shape):
            size = shape[dim]
            low, high = int(item.min()), int(item.max())
            bad = low if low < -size else high if high >= size else None
            if bad is not None:
                raise IndexError(f"{op}: index {bad} is out of bounds for dimension {dim} "
                                 f"with size {size} (expected indices in [{-size}, {size}))")
        dim += width(item)


def _has_advanced(index):
    items = index if isinstance(index, tuple) else (index,)
    return any(not isinstance(i, (int, np.integer, slice, type(None), type(Ellipsis)))
               for i in items)
