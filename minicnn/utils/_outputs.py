"""What a module call returned, read the same way by ``summary`` and ``receptive_field``."""
from __future__ import annotations

from ..autograd import Tensor


def depth(name):
    """How deep a dotted module name is (``""`` the model 0, ``"layer1.0"`` 2)."""
    return 0 if not name else name.count(".") + 1


def tensors(output):
    """Every Tensor in an output (nested in tuples, lists, dicts), in order."""
    if isinstance(output, Tensor):
        return [output]
    if isinstance(output, (tuple, list)):
        return [t for o in output for t in tensors(o)]
    if isinstance(output, dict):
        return [t for o in output.values() for t in tensors(o)]
    return []


def shape_of(output):
    """A Tensor's shape, or the list of the shapes of the Tensors in an output."""
    if isinstance(output, Tensor):
        return tuple(output.shape)
    return [tuple(t.shape) for t in tensors(output)]


def format_shape(shape):
    """``[1, 3, 224, 224]`` for a table; several outputs joined; ``?`` when unknown."""
    if shape is None:
        return "?"
    if isinstance(shape, list):
        return ", ".join(str(list(s)) for s in shape)
    return str(list(shape))
