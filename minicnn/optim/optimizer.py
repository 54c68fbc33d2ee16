"""Optimizer: the base class of every update rule, with PyTorch's bookkeeping.

An optimizer holds ``param_groups``: a list of dicts, each with its ``'params'`` and its
own options (``lr``, ``momentum``, ...), so that e.g. a pretrained backbone and a new
head can learn at different rates. ``state`` maps each parameter to what its update rule
remembers between steps (momentum buffers, moment estimates).

Updates work directly on the parameters' arrays (``p.array``) with the gradients'
arrays (``p.grad.array``): no graph is recorded, and every hyper-parameter is turned into
a Python float first, so a float32 parameter stays float32 (a NumPy float64 scalar would
promote the arithmetic).

``state_dict()`` is plain data, in torch's layout, and can be saved without pickle::

    {'state': {0: {'momentum_buffer': ndarray}, ...},        # parameter index -> state
     'param_groups': [{'lr': 0.1, ..., 'params': [0, 1, 2]}]}

Parameters are numbered in the order they appear across the groups.
"""
from __future__ import annotations

import copy
import numbers

import numpy as np

from .. import backend
from ..autograd import Tensor, enable_grad
from . import _fused

__all__ = ["Optimizer"]


class Optimizer:
    """Base class: subclasses pass their ``defaults`` and implement ``step()``.

    ``params`` is an iterable of parameters, of ``(name, parameter)`` pairs (as
    ``model.named_parameters()`` gives), or of dicts defining parameter groups, e.g.
    ``[{'params': model.features.parameters(), 'lr': 1e-4}, {'params': head.parameters()}]``
    (options missing from a group take the optimizer's defaults).
    """

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.state = {}            # Parameter -> dict of state arrays/numbers
        self.param_groups = []
        if isinstance(params, Tensor):
            raise TypeError(f"{type(self).__name__}: params should be an iterable of "
                            f"Tensors or dicts, but got a single Tensor (wrap it in a list)")
        if isinstance(params, (set, frozenset)):
            raise TypeError(f"{type(self).__name__}: params must be an ordered collection; "
                            f"the order of a set changes between runs")
        groups = list(params)
        if not groups:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    # ---------------------------------------------------------------- groups
    def add_param_group(self, param_group):
        """Add a group (a dict with ``'params'`` and optional per-group options), e.g.
        to start training layers that were frozen until now."""
        if not isinstance(param_group, dict):
            raise TypeError(f"add_param_group: expected a dict, got "
                            f"{type(param_group).__name__}")
        group = dict(param_group)
        params = group["params"] if "params" in group else None
        if params is None:
            raise ValueError("add_param_group: the group has no 'params'")
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, (set, frozenset)):
            raise TypeError("add_param_group: parameters must be given in an ordered "
                            "collection; the order of a set changes between runs")
        params = list(params)
        names = None
        if params and all(isinstance(p, tuple) and len(p) == 2 for p in params):
            names = [n for n, _ in params]          # from named_parameters()
            params = [p for _, p in params]
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"{type(self).__name__} can only optimize Tensors, but "
                                f"parameter {i} of the group is a {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError(f"{type(self).__name__}: can't optimize a non-leaf Tensor "
                                 f"(parameter {i} of the group)")
            if p.dtype.kind != "f":
                raise TypeError(f"{type(self).__name__}: parameter {i} has dtype {p.dtype}; "
                                f"only floating-point tensors can be optimized")
        if len({id(p) for p in params}) != len(params):
            raise ValueError(f"{type(self).__name__}: a parameter group contains the same "
                             f"parameter twice")
        group["params"] = params
        if names is not None:
            group["param_names"] = names
        for key, default in self.defaults.items():
            group.setdefault(key, default)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in params):
            raise ValueError(f"{type(self).__name__}: some parameters appear in more than "
                             f"one parameter group")
        self._check_group(group)
        self.param_groups.append(group)

    def _check_group(self, group):
        """Validate a group's options (subclasses check their own)."""
        lr = group.get("lr")
        if not isinstance(lr, numbers.Real) or lr < 0:
            raise ValueError(f"{type(self).__name__}: invalid learning rate: {lr!r}")

    # ------------------------------------------------------------------ steps
    def zero_grad(self, set_to_none=True):
        """Forget the gradients: ``.grad = None`` (default), or zero them in place."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.array[...] = 0

    def step(self, closure=None):
        raise NotImplementedError(f"{type(self).__name__} must implement step()")

    @staticmethod
    def _evaluate(closure):
        """Run ``closure`` (which recomputes the loss and calls backward) if given."""
        if closure is None:
            return None
        with enable_grad():
            return closure()

    @staticmethod
    def _gradients(group, params=None):
        """(parameter, weight array, gradient array) for each parameter that has a
        gradient (of ``params`` when given, else of the group); with ``maximize`` the
        gradient is negated (ascent instead of descent)."""
        maximize = group.get("maximize", False)
        for p in group["params"] if params is None else params:
            if p.grad is None:
                continue
            w = p.array
            g = p.grad.array
            if g.dtype != w.dtype:
                g = g.astype(w.dtype)
            yield p, w, (-g if maximize else g)

    def _split_fused(self, group):
        """The group's parameters that have a gradient, split for ``step``: (fused, rest)
        with ``fused`` the (parameter, weight array, raw gradient array) that the fused
        one-pass loop takes (``_fused.py``; the group's ``fused`` option: None where it
        can, True everywhere or an error, False nowhere), and ``rest`` the others as
        :meth:`_gradients` gives them, for the readable update."""
        mode = group.get("fused")
        fused, rest = [], []
        for i, p in enumerate(group["params"]):
            if p.grad is None:
                continue
            w, g = p.array, p.grad.array
            if mode is not False and _fused.usable(w, g):
                fused.append((p, w, g))
            elif mode:
                _fused.check_fusable(type(self).__name__, i, w, g)
            else:
                rest.append(p)
        return fused, list(self._gradients(group, rest))

    # ------------------------------------------------------------- state dict
    def state_dict(self):
        """The optimizer's state as plain data (torch's layout, see the module docstring).

        Arrays are host (NumPy) copies, so the result is a snapshot: later steps do not
        change it, and it can be saved as it is.
        """
        index = {}
        groups = []
        for group in self.param_groups:
            packed = {k: _plain(v) for k, v in group.items() if k != "params"}
            for p in group["params"]:
                index.setdefault(id(p), len(index))
            packed["params"] = [index[id(p)] for p in group["params"]]
            groups.append(packed)
        state = {}
        for p, entries in self.state.items():
            if id(p) in index:
                state[index[id(p)]] = {k: _plain(v) for k, v in entries.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore a ``state_dict()`` (from minicnn or from torch) into this optimizer.

        The groups must have the same sizes as this optimizer's. Saved options replace
        the current ones; state arrays are moved to each parameter's device and dtype.
        """
        name = type(self).__name__
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"{name}.load_state_dict: the state dict has "
                             f"{len(saved_groups)} parameter group(s), this optimizer has "
                             f"{len(self.param_groups)}")
        by_index = {}
        for i, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if len(group["params"]) != len(saved["params"]):
                raise ValueError(f"{name}.load_state_dict: parameter group {i} has "
                                 f"{len(saved['params'])} parameter(s) in the state dict "
                                 f"but {len(group['params'])} in this optimizer")
            for idx, p in zip(saved["params"], group["params"]):
                by_index[int(idx)] = p
        new_state = {}
        for idx, entries in state_dict["state"].items():
            p = by_index.get(int(idx))
            if p is None:
                raise ValueError(f"{name}.load_state_dict: state for parameter index {idx} "
                                 f"does not belong to any parameter group")
            new_state[p] = {k: _restore(v, p, k, name) for k, v in entries.items()}
        new_groups = []
        for group, saved in zip(self.param_groups, saved_groups):
            restored = {k: copy.deepcopy(v) for k, v in saved.items() if k != "params"}
            restored["params"] = group["params"]
            new_groups.append(restored)
        self.state = new_state
        self.param_groups = new_groups

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(group):
                if key not in ("params", "param_names"):
                    lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)


def _plain(value):
    """A state value as plain data: arrays/Tensors -> NumPy copies, tuples kept."""
    if isinstance(value, Tensor):
        value = value.array
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return np.array(backend.to_device(value, "cpu"), copy=True)
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


def _restore(value, param, key, name):
    """A saved state value back on ``param``'s device/dtype (numbers stay numbers)."""
    if hasattr(value, "detach") and hasattr(value, "numpy"):     # a torch tensor
        value = value.detach().cpu().numpy()
    if isinstance(value, Tensor):
        value = value.array
    if not hasattr(value, "shape"):
        return value
    if value.ndim == 0:                       # torch keeps 'step' as a 0-d float tensor
        number = value.item()
        return int(number) if key == "step" and float(number).is_integer() else number
    if tuple(value.shape) != tuple(param.shape):
        raise ValueError(f"{name}.load_state_dict: state '{key}' has shape "
                         f"{tuple(value.shape)} but its parameter has shape "
                         f"{tuple(param.shape)}")
    # a copy, so that the loaded state never aliases the caller's state dict
    # np.array would refuse a GPU value; astype(copy=True) copies on the target device
    array = backend.to_device(value, param.device)
    return array.astype(param.dtype, copy=True)
