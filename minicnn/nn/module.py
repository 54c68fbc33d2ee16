"""Module: the base of every layer and model, with PyTorch's registration rules.

Assigning a :class:`Parameter` or a Module to an attribute registers it under that name;
``register_buffer`` registers state that is saved but not learned (BatchNorm's running
statistics). Registration order is insertion order, so ``parameters()`` and
``state_dict()`` keys come out in the same order every run, with PyTorch's dotted names
(``features.0.weight``) so that state dicts move between the two libraries.
"""
from __future__ import annotations

import collections
import collections.abc
import itertools

import numpy as np

from .. import backend
from ..autograd import Tensor, _to_array
from .parameter import Parameter

__all__ = ["Module", "RemovableHandle"]

_IncompatibleKeys = collections.namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class RemovableHandle:
    """Returned by ``register_forward_hook``; ``handle.remove()`` unregisters the hook."""

    _ids = itertools.count()

    def __init__(self, hooks):
        self.hooks, self.id = hooks, next(self._ids)

    def remove(self):
        self.hooks.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


class Module:
    """Base class for all layers and models (subclass it and write ``forward``)."""

    training: bool

    def __init__(self):
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", collections.OrderedDict())
        object.__setattr__(self, "_buffers", collections.OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", collections.OrderedDict())
        object.__setattr__(self, "_forward_hooks", collections.OrderedDict())
        object.__setattr__(self, "_forward_pre_hooks", collections.OrderedDict())

    # ------------------------------------------------------------ registration
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            if isinstance(value, (Parameter, Module)):
                raise AttributeError(f"cannot assign {type(value).__name__} '{name}' before "
                                     f"Module.__init__() call (call super().__init__() first)")
            object.__setattr__(self, name, value)
            return
        params, buffers, modules = self._parameters, self._buffers, self._modules
        if isinstance(value, Parameter):
            self._drop(name)
            params[name] = value
        elif isinstance(value, Module):
            self._drop(name)
            modules[name] = value
        elif name in params:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as parameter '{name}' "
                                f"(torch.nn.Parameter or None expected)")
            params[name] = None
        elif name in modules:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as child module "
                                f"'{name}' (Module or None expected)")
            modules[name] = None
        elif name in buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign {type(value).__name__} as buffer '{name}' "
                                f"(Tensor or None expected)")
            buffers[name] = value
        else:
            object.__setattr__(self, name, value)

    def _drop(self, name):
        for store in (self._parameters, self._buffers, self._modules):
            store.pop(name, None)
        self.__dict__.pop(name, None)

    def __getattr__(self, name):
        # only called when normal lookup fails: look in the registries
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            if store in d and name in d[store]:
                return d[store][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        for store in (self._parameters, self._buffers, self._modules):
            if name in store:
                del store[name]
                return
        object.__delattr__(self, name)

    def register_parameter(self, name, param):
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter: '{name}' must be a Parameter or None, got "
                            f"{type(param).__name__}")
        self._drop(name)
        self._parameters[name] = param

    def register_buffer(self, name, tensor, persistent=True):
        """State that is not learned but is saved (unless ``persistent=False``) and moved
        with ``.to()``: BatchNorm's ``running_mean``, ``running_var``, ``num_batches_tracked``."""
        if tensor is not None and not isinstance(tensor, Tensor):
            tensor = Tensor(tensor)
        self._drop(name)
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent.discard(name)
        else:
            self._non_persistent.add(name)

    def add_module(self, name, module):
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module: {type(module).__name__} is not a Module")
        if "." in str(name) or not str(name):
            raise KeyError(f"add_module: module name can't contain '.' or be empty, got {name!r}")
        self._drop(str(name))
        self._modules[str(name)] = module

    register_module = add_module

    def get_submodule(self, target):
        mod = self
        for part in target.split(".") if target else []:
            if part not in mod._modules:
                raise AttributeError(f"{type(mod).__name__} has no submodule '{part}' "
                                     f"(looking for '{target}')")
            mod = mod._modules[part]
        return mod

    # ---------------------------------------------------------------- forward
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args, **kwargs):
        for hook in list(self._forward_pre_hooks.values()):
            result = hook(self, args)
            if result is not None:
                args = result if isinstance(result, tuple) else (result,)
        out = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            result = hook(self, args, out)
            if result is not None:
                out = result
        return out

    def register_forward_hook(self, hook):
        """``hook(module, inputs, output)`` runs after every forward (read feature maps
        with it); returning a value replaces the output."""
        handle = RemovableHandle(self._forward_hooks)
        self._forward_hooks[handle.id] = hook
        return handle

    def register_forward_pre_hook(self, hook):
        """``hook(module, inputs)`` runs before every forward."""
        handle = RemovableHandle(self._forward_pre_hooks)
        self._forward_pre_hooks[handle.id] = hook
        return handle

    # -------------------------------------------------------------- traversal
    def named_modules(self, memo=None, prefix="", remove_duplicate=True):
        memo = set() if memo is None else memo
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, child in self._modules.items():
            if child is None:
                continue
            yield from child.named_modules(memo, f"{prefix}.{name}" if prefix else name,
                                           remove_duplicate)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        seen = set()
        for name, child in self._modules.items():
            if child is not None and id(child) not in seen:
                seen.add(id(child))
                yield name, child

    def children(self):
        for _, c in self.named_children():
            yield c

    def _named_members(self, store, prefix, recurse):
        seen = set()
        mods = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for mod_prefix, mod in mods:
            for name, value in getattr(mod, store).items():
                if value is None or id(value) in seen:
                    continue
                seen.add(id(value))
                yield (f"{mod_prefix}.{name}" if mod_prefix else name), value

    def named_parameters(self, prefix="", recurse=True):
        """(dotted name, Parameter) pairs in registration order; a shared one once."""
        yield from self._named_members("_parameters", prefix, recurse)

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix="", recurse=True):
        yield from self._named_members("_buffers", prefix, recurse)

    def buffers(self, recurse=True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def apply(self, fn):
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # ------------------------------------------------------------------ modes
    def train(self, mode=True):
        if not isinstance(mode, bool):
            raise ValueError(f"train: mode is expected to be a bool, got {mode!r}")
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        """Freeze (False) or unfreeze every parameter."""
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none=True):
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad.zero_()

    # -------------------------------------------------------------- state dict
    def state_dict(self, destination=None, prefix="", keep_vars=False):
        """Parameters and persistent buffers by dotted name, in registration order.

        Values are Tensors sharing the module's arrays (detached unless ``keep_vars``).
        """
        out = collections.OrderedDict() if destination is None else destination
        for mod_prefix, mod in self.named_modules(prefix=prefix.rstrip(".")):
            head = f"{mod_prefix}." if mod_prefix else ""
            for name, p in mod._parameters.items():
                if p is not None:
                    out[head + name] = p if keep_vars else p.detach()
            for name, b in mod._buffers.items():
                if b is not None and name not in mod._non_persistent:
                    out[head + name] = b if keep_vars else b.detach()
        return out

    def load_state_dict(self, state_dict, strict=True):
        """Copy values from ``state_dict`` (Tensors, NumPy arrays, or torch tensors).

        Shapes must match; with ``strict`` the keys must match too. Every problem is
        listed in one error: missing keys, unexpected keys, and mis-shaped keys with both
        shapes. Returns ``(missing_keys, unexpected_keys)``.

        Old layouts: before anything is read, every submodule that defines
        ``_upgrade_state_dict(state_dict, prefix)`` is called with a copy of the mapping
        (parents before children, ``prefix`` its dotted name with a trailing dot, '' for
        the root) and renames or deletes its own keys in place. This is the part of
        PyTorch's ``_load_from_state_dict`` override that torchvision uses for version
        upgrades: ``FrozenBatchNorm2d`` drops ``num_batches_tracked``; ``RPNHead`` reads
        ``conv.weight`` as ``conv.0.0.weight``; ``MaskRCNNHeads`` reads ``mask_fcn1.*``
        as ``0.0.*``. minicnn state dicts carry no version numbers, so a hook renames a
        key whenever the old name is present and the new one is not.
        """
        if not isinstance(state_dict, collections.abc.Mapping):
            raise TypeError(f"load_state_dict: expected a mapping of parameter names to "
                            f"tensors (what state_dict() returns), got "
                            f"{type(state_dict).__name__}")
        bad_keys = [k for k in state_dict if not isinstance(k, str)]
        if bad_keys:
            raise TypeError(f"load_state_dict: keys must be parameter names (str), got "
                            f"{bad_keys[:3]!r}")
        # Modules whose layout changed rename or drop old keys first (see
        # _upgrade_state_dict below), on a copy: the caller's mapping stays as it was.
        upgraders = [(f"{p}." if p else "", m) for p, m in self.named_modules()
                     if getattr(m, "_upgrade_state_dict", None) is not None]
        if upgraders:
            state_dict = collections.OrderedDict(state_dict)
            for mod_prefix, mod in upgraders:
                mod._upgrade_state_dict(state_dict, mod_prefix)
        # Lazy layers (nn.lazy) create their parameters from the checkpoint's shapes first.
        for mod_prefix, mod in self.named_modules():
            materialize = getattr(mod, "_materialize_from_state_dict", None)
            if materialize is not None:
                materialize(state_dict, f"{mod_prefix}." if mod_prefix else "")
        own = self.state_dict(keep_vars=True)
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        mismatched, converted = [], {}
        for key, target in own.items():
            if key not in state_dict:
                continue
            value = _host_array(state_dict[key], key)
            if tuple(value.shape) != tuple(target.shape):
                mismatched.append(f"{key}: checkpoint shape {tuple(value.shape)}, model shape "
                                  f"{tuple(target.shape)}")
                continue
            converted[key] = value
        problems = []
        if strict and missing:
            problems.append("Missing key(s): " + ", ".join(missing))
        if strict and unexpected:
            problems.append("Unexpected key(s): " + ", ".join(unexpected))
        if mismatched:
            problems.append("Size mismatch: " + "; ".join(mismatched))
        if problems:
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}:\n  "
                               + "\n  ".join(problems))
        for key, value in converted.items():
            target = own[key]
            # to the parameter's device first: a GPU checkpoint loads into a CPU model
            value = backend.to_device(value, backend.device_of(target.array))
            target.array[...] = value.astype(target.dtype, copy=False)
        return _IncompatibleKeys(missing, unexpected)

    # ---------------------------------------------------------------- devices
    def _convert(self, fn):
        """Apply ``fn`` to every parameter's and buffer's array, keeping the objects (so an
        optimizer built before ``.to()`` still holds the right parameters)."""
        for mod in self.modules():
            for store in (mod._parameters, mod._buffers):
                for t in store.values():
                    if t is not None:
                        t.array = fn(t.array)
                        if t.grad is not None:
                            t.grad.array = fn(t.grad.array)
        return self

    def to(self, *args, device=None, dtype=None):
        """``model.to("cuda")``, ``model.to(minicnn.float64)``: moves/casts in place.

        The Parameter objects stay the same, so an optimizer built before ``.to()`` still
        updates them; but, as in PyTorch, its state (momentum and moment buffers) stays
        where it was: move the model before building the optimizer, or before it has
        taken a step.
        """
        for a in args:
            if isinstance(a, (str, backend.Device)):
                device = a
            else:
                dtype = a
        if device is not None:
            dev = backend.Device(device)
            self._convert(lambda a: backend.to_device(a, dev))
        if dtype is not None:
            dt = np.dtype(dtype)
            if dt.kind != "f":
                raise TypeError(f"Module.to: only floating-point dtypes are allowed, got {dt}")
            self._convert(lambda a: a.astype(dt) if a.dtype.kind == "f" else a)
        return self

    def cpu(self):
        return self.to("cpu")

    def cuda(self, index=0):
        return self.to(f"cuda:{index}")

    def float(self):
        return self.to(np.float32)

    def double(self):
        return self.to(np.float64)

    # ------------------------------------------------------------------- repr
    def extra_repr(self):
        """One line of settings shown inside the repr (layers override it)."""
        return ""

    def __repr__(self):
        extra = self.extra_repr()
        children = [(n, m) for n, m in self._modules.items()]
        if not children:
            return f"{type(self).__name__}({extra})"
        lines = [extra] if extra else []
        for name, m in children:
            body = repr(m).replace("\n", "\n  ")
            lines.append(f"({name}): {body}")
        return f"{type(self).__name__}(\n  " + "\n  ".join(lines) + "\n)"

    def __dir__(self):
        return sorted(set(object.__dir__(self)) | set(self._parameters) |
                      set(self._buffers) | set(self._modules))


def _host_array(value, key):
    """A state-dict value as an array: minicnn Tensor, NumPy array, or torch tensor."""
    if isinstance(value, Tensor):
        return value.array
    if hasattr(value, "detach") and hasattr(value, "numpy"):      # a torch tensor
        return value.detach().cpu().numpy()
    try:
        return _to_array(value)
    except TypeError as exc:
        raise TypeError(f"load_state_dict: value for '{key}' is not an array ({exc})") from None
