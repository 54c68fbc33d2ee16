"""Adam and AdamW: per-coordinate step sizes from running moment estimates."""
from __future__ import annotations

import math

from .. import backend
from . import _fused
from .optimizer import Optimizer

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) as ``torch.optim.Adam``. At step t, for each parameter w
    with gradient g:

        g ← g + λ·w                                 weight decay (L2, coupled)
        m ← β1·m + (1 - β1)·g                       first moment (mean of g)
        v ← β2·v + (1 - β2)·g²                      second moment (uncentred variance)
        m̂ = m / (1 - β1ᵗ),  v̂ = v / (1 - β2ᵗ)       bias corrections (m, v start at 0)
        w ← w - lr · m̂ / (√v̂ + ε)

    ``amsgrad=True`` (Reddi et al., 2018) uses the running maximum of v in place of v, so
    the effective step size never grows. ``decoupled_weight_decay=True`` is AdamW.
    State per parameter: ``step``, ``exp_avg`` (m), ``exp_avg_sq`` (v), and
    ``max_exp_avg_sq`` with amsgrad.

    ``fused`` (as torch's): the same update as one compiled pass over memory per
    parameter, equal bit for bit (``_fused.py``); None (default) uses it where it can
    (NumPy float arrays on the CPU), False never, True always (an error where it can't).
    The code below is the readable update it replaces.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 amsgrad=False, *, maximize=False, decoupled_weight_decay=False,
                 fused=None):
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        amsgrad=amsgrad, maximize=maximize,
                        decoupled_weight_decay=decoupled_weight_decay, fused=fused)
        super().__init__(params, defaults)

    def _check_group(self, group):
        super()._check_group(group)
        name = type(self).__name__
        if group["eps"] < 0:
            raise ValueError(f"{name}: invalid epsilon value: {group['eps']}")
        betas = group["betas"]
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"{name}: invalid betas {betas!r} (two numbers in [0, 1) "
                             f"expected)")
        if group["weight_decay"] < 0:
            raise ValueError(f"{name}: invalid weight_decay value: {group['weight_decay']}")

    def step(self, closure=None):
        loss = self._evaluate(closure)
        for group in self.param_groups:
            lr = float(group["lr"])
            beta1, beta2 = (float(b) for b in group["betas"])
            eps = float(group["eps"])
            decay = float(group["weight_decay"])
            fused, rest = self._split_fused(group)
            for p, w, g in rest:
                xp = backend.get_array_module(w)
                state = self._state(p, w, group)
                state["step"] += 1
                t = state["step"]
                if decay != 0:
                    if group["decoupled_weight_decay"]:
                        w *= 1 - lr * decay          # AdamW: shrink w, leave g alone
                    else:
                        g = g + decay * w
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m *= beta1
                m += (1 - beta1) * g
                v *= beta2
                v += (1 - beta2) * (g * g)
                if group["amsgrad"]:
                    v_max = state["max_exp_avg_sq"]
                    xp.maximum(v_max, v, out=v_max)
                    v = v_max
                # √v̂ + ε with v̂ = v / (1 - β2ᵗ); then the step lr·m̂ / (√v̂ + ε)
                denom = xp.sqrt(v) / math.sqrt(1 - beta2 ** t) + eps
                w -= (lr / (1 - beta1 ** t)) * m / denom
            batch = []
            for p, w, g in fused:                   # the same update, one pass each
                state = self._state(p, w, group)
                state["step"] += 1
                m, v = (_fused.state_array(state, k, w) for k in ("exp_avg", "exp_avg_sq"))
                v_max = (_fused.state_array(state, "max_exp_avg_sq", w) if group["amsgrad"]
                         else None)
                batch.append((w, g, m, v, v_max, state["step"]))
            _fused.adam_step(batch, lr, beta1, beta2, eps, decay,
                             group["decoupled_weight_decay"], group["amsgrad"],
                             group.get("maximize", False))
        return loss

    def _state(self, p, w, group):
        """p's state, created at its first step: step 0, m = v (= v_max) = 0."""
        state = self.state.setdefault(p, {})
        if not state:
            xp = backend.get_array_module(w)
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(w)
            state["exp_avg_sq"] = xp.zeros_like(w)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = xp.zeros_like(w)
        return state


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019), as
    ``torch.optim.AdamW``: before the Adam step, w ← w·(1 - lr·λ); the decay never enters
    the moment estimates, so it is not rescaled by 1/√v̂. Default λ = 0.01.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False, fused=None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True, fused=fused)
