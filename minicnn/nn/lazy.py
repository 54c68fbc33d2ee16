"""Lazy layers: LazyLinear and LazyConv2d infer ``in_features`` / ``in_channels`` from the
first input they see, as d2l's models use them (``nn.LazyConv2d(6, kernel_size=5)``).

How they behave, step by step:

* Constructed, they hold :class:`UninitializedParameter` placeholders for ``weight`` and
  ``bias`` (``in_features``/``in_channels`` are 0). ``parameters()`` already yields these
  objects, so an optimizer may be built before the first call: the placeholders are
  filled *in place* and stay the same objects.
* On the first call the input's size fixes the missing dimension, the arrays are
  created with PyTorch's default init, and the layer turns into a plain ``Linear`` /
  ``Conv2d`` (its class changes, as in PyTorch), so ``print(model)`` shows the sizes.
* ``state_dict()`` before the first call raises an error that says so: there is
  nothing to save yet.
* ``load_state_dict()`` before the first call creates the parameters with the shapes
  found in the checkpoint, so a saved model can be restored into a fresh lazy model
  without a dummy forward pass.
* ``.to(dtype)`` / ``.to(device)`` before the first call are remembered: the parameters
  are created with that dtype on that device.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from ..autograd import as_tensor
from ._utils import check_ndim, describe
from .conv import Conv2d
from .linear import Linear
from .parameter import Parameter

__all__ = ["UninitializedParameter", "LazyLinear", "LazyConv2d"]


class UninitializedParameter(Parameter):
    """A Parameter whose shape is not known yet: an empty array of the right dtype and
    device, to be replaced by :meth:`materialize`."""

    def __init__(self, requires_grad=True, device=None, dtype=None):
        dtype = backend.get_default_dtype() if dtype is None else np.dtype(dtype)
        array = np.empty((0,), dtype=dtype)
        if device is not None:
            array = backend.to_device(array, device)
        super().__init__(array, requires_grad=requires_grad)
        self._owner = "a lazy layer"

    def materialize(self, shape):
        """Give this parameter an (uninitialised) array of ``shape``, in place: the object
        becomes an ordinary :class:`Parameter`."""
        xp = backend.get_array_module(self.array)
        self.array = xp.empty(tuple(shape), dtype=self.array.dtype)
        self.grad = None
        self.__class__ = Parameter
        del self._owner

    def _uninitialized(self, what):
        return RuntimeError(
            f"{what}: a parameter of {self._owner} does not exist yet. Lazy layers create "
            f"their parameters on the first forward call, when the input's size is known: "
            f"run the model once on a sample batch (e.g. model(x[:1])) or load a state "
            f"dict first")

    @property
    def shape(self):
        raise self._uninitialized("shape of an uninitialized parameter")

    def size(self, dim=None):
        raise self._uninitialized("size of an uninitialized parameter")

    def detach(self):
        raise self._uninitialized("state_dict (or detach)")

    def __repr__(self):
        return f"<UninitializedParameter of {self._owner}>"


class _LazyMixin:
    """Shared by the lazy layers: the class to become, and the materialisation steps.

    A subclass defines ``_infer(x)`` (the missing size, from the input),
    ``_infer_from_weight(shape)`` (the same from a checkpoint's weight shape) and
    ``_set_in(n)`` (store it and compute the parameter shapes).
    """

    cls_to_become = None

    def has_uninitialized_params(self):
        return any(isinstance(p, UninitializedParameter)
                   for p in self._parameters.values() if p is not None)

    def _placeholders(self, bias, device, dtype):
        self.weight = UninitializedParameter(device=device, dtype=dtype)
        if bias:
            self.bias = UninitializedParameter(device=device, dtype=dtype)
        else:
            self.register_parameter("bias", None)
        for p in (self.weight, self.bias):
            if p is not None:
                p._owner = describe(self)       # named in its error messages

    def _materialize(self, in_size):
        self._set_in(in_size)
        self.weight.materialize(self._weight_shape())
        if isinstance(self.bias, UninitializedParameter):
            self.bias.materialize((self._out_size(),))
        self.__class__ = self.cls_to_become
        self.reset_parameters()              # now the plain layer's default init

    def forward(self, input):
        target = self.cls_to_become        # read now: materialising changes the class
        if self.has_uninitialized_params():
            x = as_tensor(input)
            self._check_lazy_input(x)
            self._materialize(self._infer(x))
        return target.forward(self, input)

    def _materialize_from_state_dict(self, state_dict, prefix):
        """Called by ``Module.load_state_dict`` before it compares shapes."""
        if not self.has_uninitialized_params():
            return
        weight = state_dict.get(prefix + "weight")
        shape = getattr(weight, "shape", None)
        if shape is None:
            return       # the missing key is reported by load_state_dict itself
        shape = tuple(shape)
        if len(shape) != self._weight_ndim:
            raise RuntimeError(f"Error(s) in loading state_dict: {prefix}weight has shape "
                               f"{shape}, which does not fit {describe(self)}")
        self._materialize(self._infer_from_weight(shape))

    def reset_parameters(self):
        # Nothing to fill before the sizes are known (the base __init__ calls this while
        # the weight still has 0 input columns).
        if not self.has_uninitialized_params() and self.weight.array.size > 0:
            self.cls_to_become.reset_parameters(self)


class LazyLinear(_LazyMixin, Linear):
    """``Linear`` whose ``in_features`` is taken from the first input's last dimension.

    ``LazyLinear(out_features, bias=True)``; becomes a ``Linear`` on the first call.
    """

    cls_to_become = Linear
    _weight_ndim = 2

    def __init__(self, out_features, bias=True, device=None, dtype=None):
        # Linear.__init__ with 0 inputs sets every attribute; then swap in placeholders.
        Linear.__init__(self, 0, out_features, bias=False, device=device, dtype=dtype)
        self._placeholders(bias, device, dtype)

    def _check_lazy_input(self, x):
        if x.ndim == 0:
            raise ValueError(f"{describe(self)}: expected an input of shape "
                             f"(*, in_features), got a 0-D tensor")

    def _infer(self, x):
        return x.shape[-1]

    def _infer_from_weight(self, shape):
        return shape[1]

    def _set_in(self, n):
        self.in_features = int(n)

    def _weight_shape(self):
        return (self.out_features, self.in_features)

    def _out_size(self):
        return self.out_features


class LazyConv2d(_LazyMixin, Conv2d):
    """``Conv2d`` whose ``in_channels`` is taken from the first input's channel dimension.

    ``LazyConv2d(out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
    bias=True, padding_mode='zeros')``; becomes a ``Conv2d`` on the first call.
    """

    cls_to_become = Conv2d
    _weight_ndim = 4

    def __init__(self, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", device=None, dtype=None):
        # groups (not 0) input channels pass Conv2d's divisibility check; reset below
        Conv2d.__init__(self, groups, out_channels, kernel_size, stride, padding, dilation,
                        groups, False, padding_mode, device, dtype)
        self.in_channels = 0
        self._placeholders(bias, device, dtype)

    def _check_lazy_input(self, x):
        check_ndim(self, x, (3, 4), "(N, C, H, W) or unbatched (C, H, W)")
        if x.shape[-3] % self.groups:
            raise ValueError(f"{describe(self)}: input has {x.shape[-3]} channels, which is "
                             f"not divisible by groups={self.groups} (shape "
                             f"{tuple(x.shape)})")

    def _infer(self, x):
        return x.shape[-3]

    def _infer_from_weight(self, shape):
        return shape[1] * self.groups

    def _set_in(self, n):
        self.in_channels = int(n)

    def _weight_shape(self):
        return (self.out_channels, self.in_channels // self.groups) + self.kernel_size

    def _out_size(self):
        return self.out_channels
