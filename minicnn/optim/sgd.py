"""Stochastic gradient descent, with momentum (Polyak's heavy ball, or Nesterov's)."""
from __future__ import annotations

import numpy as np

from .. import backend
from . import _fused
from .optimizer import Optimizer

__all__ = ["SGD"]


class SGD(Optimizer):
    """SGD as ``torch.optim.SGD``. For each parameter w with gradient g:

        g ← g + λ·w                          weight decay (L2 penalty λ/2·‖w‖²)
        b ← g                                first step
        b ← μ·b + (1 - τ)·g                  later steps (momentum μ, dampening τ)
        d ← g + μ·b   (nesterov)   or   d ← b
        w ← w - lr·d

    Without momentum (μ = 0) this is plain w ← w - lr·g. NOTE: this is PyTorch's form of
    momentum, which scales lr outside the buffer (Sutskever et al., 2013, put it inside);
    the two agree while lr is constant. ``maximize=True`` ascends instead.

    ``fused`` (as torch's): the same update as one compiled pass over memory per
    parameter, equal bit for bit (``_fused.py``); None (default) uses it where it can
    (NumPy float arrays on the CPU), False never, True always (an error where it can't).
    The code below is the readable update it replaces.
    """

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0,
                 nesterov=False, *, maximize=False, fused=None):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov, maximize=maximize,
                        fused=fused)
        super().__init__(params, defaults)

    def _check_group(self, group):
        super()._check_group(group)
        if group["momentum"] < 0:
            raise ValueError(f"SGD: invalid momentum value: {group['momentum']}")
        if group["weight_decay"] < 0:
            raise ValueError(f"SGD: invalid weight_decay value: {group['weight_decay']}")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("SGD: Nesterov momentum requires a momentum and zero dampening")

    def step(self, closure=None):
        loss = self._evaluate(closure)
        for group in self.param_groups:
            lr = float(group["lr"])
            mu = float(group["momentum"])
            tau = float(group["dampening"])
            decay = float(group["weight_decay"])
            fused, rest = self._split_fused(group)
            for p, w, g in rest:
                if decay != 0:
                    g = g + decay * w
                if mu != 0:
                    state = self.state.setdefault(p, {})
                    b = state.get("momentum_buffer")
                    if b is None:
                        # NOTE: an array, not g.copy(): for a 0-d parameter g + λ·w is a
                        # NumPy scalar, and `b *= μ` on a scalar copy would never reach
                        # the stored buffer
                        xp = backend.get_array_module(w)
                        b = state["momentum_buffer"] = xp.array(g, dtype=w.dtype, copy=True)
                    else:
                        b *= mu
                        b += (1 - tau) * g
                    g = g + mu * b if group["nesterov"] else b
                w -= lr * g
            batch = []
            for p, w, g in fused:                   # the same update, one pass each
                b, first = None, False
                if mu != 0:
                    state = self.state.setdefault(p, {})
                    if state.get("momentum_buffer") is None:
                        state["momentum_buffer"] = np.empty_like(w)
                        first = True
                    b = _fused.state_array(state, "momentum_buffer", w)
                batch.append((w, g, b, first))
            _fused.sgd_step(batch, lr, mu, tau, decay, group["nesterov"],
                            group.get("maximize", False))
        return loss
