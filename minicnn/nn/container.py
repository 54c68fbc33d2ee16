"""Containers: Sequential, ModuleList, ModuleDict (children named "0", "1", ... or by key,
as in PyTorch, so state-dict keys match)."""
from __future__ import annotations

import collections
import operator

from .activation import fused_pair
from .module import Module

__all__ = ["Sequential", "ModuleList", "ModuleDict"]


class Sequential(Module):
    """Modules applied one after another: ``Sequential(conv, relu)`` or
    ``Sequential(OrderedDict([("conv", conv), ("relu", relu)]))``.

    Two neighbours that minicnn fuses (a plain ReLU then a MaxPool2d, a plain
    BatchNorm2d then a ReLU: ``nn.activation.fused_pair``) run as one op, with the same
    result; a hook on either keeps them apart, so it still sees its module's output.
    """

    def __init__(self, *args):
        super().__init__()
        if len(args) == 1 and isinstance(args[0], collections.OrderedDict):
            for name, module in args[0].items():
                self.add_module(name, module)
        else:
            for i, module in enumerate(args):
                self.add_module(str(i), module)

    def forward(self, x):
        modules = list(self._modules.values())
        i = 0
        while i < len(modules):
            fused = fused_pair(modules[i], modules[i + 1]) if i + 1 < len(modules) else None
            if fused is None:
                x = modules[i](x)
                i += 1
            else:                       # modules[i + 1](modules[i](x)) in one op
                x = fused(x)
                i += 2
        return x

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Sequential(collections.OrderedDict(list(self._modules.items())[index]))
        return list(self._modules.values())[_index(index, len(self))]

    def __setitem__(self, index, module):
        key = list(self._modules.keys())[_index(index, len(self))]
        self.add_module(key, module)

    def __delitem__(self, index):
        keys = list(self._modules.keys())
        for key in (keys[index] if isinstance(index, slice) else [keys[_index(index, len(self))]]):
            del self._modules[key]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module):
        self.add_module(str(len(self)), module)
        return self


class ModuleList(Module):
    """A list of modules whose parameters are registered (a plain list's would not be)."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return ModuleList(list(self._modules.values())[index])
        return self._modules[str(_index(index, len(self)))]

    def __setitem__(self, index, module):
        self.add_module(str(_index(index, len(self))), module)

    def __delitem__(self, index):
        items = list(self._modules.values())
        del items[index]
        self._modules.clear()
        for i, m in enumerate(items):
            self.add_module(str(i), m)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __iadd__(self, modules):
        return self.extend(modules)

    def append(self, module):
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules):
        for m in modules:
            self.append(m)
        return self

    def insert(self, index, module):
        items = list(self._modules.values())
        items.insert(index, module)
        self._modules.clear()
        for i, m in enumerate(items):
            self.add_module(str(i), m)

    def forward(self, *args):
        raise NotImplementedError("ModuleList has no forward(); iterate over it instead")


class ModuleDict(Module):
    """A dict of modules, registered by key in insertion order."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key):
        return self._modules[key]

    def __setitem__(self, key, module):
        self.add_module(key, module)

    def __delitem__(self, key):
        del self._modules[key]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def __contains__(self, key):
        return key in self._modules

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()

    def update(self, modules):
        items = modules.items() if hasattr(modules, "items") else modules
        for k, m in items:
            self.add_module(k, m)

    def pop(self, key):
        return self._modules.pop(key)

    def forward(self, *args):
        raise NotImplementedError("ModuleDict has no forward(); index it instead")


def _index(index, n):
    index = operator.index(index)
    if not -n <= index < n:
        raise IndexError(f"index {index} is out of range for a container of {n} modules")
    return index % n
