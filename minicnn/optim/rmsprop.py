"""RMSprop: divide the gradient by a running root-mean-square of recent gradients."""
from __future__ import annotations

from .. import backend
from .optimizer import Optimizer

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    """RMSprop (Hinton, Coursera lecture 6e, 2012) as ``torch.optim.RMSprop``. For each
    parameter w with gradient g:

        g ← g + λ·w                               weight decay
        s ← α·s + (1 - α)·g²                      running mean of g²
        ḡ ← α·ḡ + (1 - α)·g                       (centered only) running mean of g
        r = √(s - ḡ²) + ε   (centered, Graves 2013: an estimate of g's std)
        r = √s + ε          (otherwise)
        b ← μ·b + g / r;  w ← w - lr·b            with momentum μ > 0
        w ← w - lr·g / r                          without

    NOTE: ε is added *outside* the square root (as torch; TensorFlow adds it inside).
    State per parameter: ``step``, ``square_avg`` (s), ``momentum_buffer`` (b, if μ > 0),
    ``grad_avg`` (ḡ, if centered).
    """

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
                 centered=False, *, maximize=False):
        defaults = dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered,
                        weight_decay=weight_decay, maximize=maximize)
        super().__init__(params, defaults)

    def _check_group(self, group):
        super()._check_group(group)
        for key in ("eps", "momentum", "weight_decay", "alpha"):
            if group[key] < 0:
                raise ValueError(f"RMSprop: invalid {key} value: {group[key]}")

    def step(self, closure=None):
        loss = self._evaluate(closure)
        for group in self.param_groups:
            lr = float(group["lr"])
            alpha = float(group["alpha"])
            eps = float(group["eps"])
            mu = float(group["momentum"])
            decay = float(group["weight_decay"])
            for p, w, g in self._gradients(group):
                xp = backend.get_array_module(w)
                state = self.state.setdefault(p, {})
                if not state:
                    state["step"] = 0
                    state["square_avg"] = xp.zeros_like(w)
                    if mu > 0:
                        state["momentum_buffer"] = xp.zeros_like(w)
                    if group["centered"]:
                        state["grad_avg"] = xp.zeros_like(w)
                state["step"] += 1
                if decay != 0:
                    g = g + decay * w
                s = state["square_avg"]
                s *= alpha
                s += (1 - alpha) * (g * g)
                if group["centered"]:
                    g_avg = state["grad_avg"]
                    g_avg *= alpha
                    g_avg += (1 - alpha) * g
                    r = xp.sqrt(s - g_avg * g_avg) + eps
                else:
                    r = xp.sqrt(s) + eps
                if mu > 0:
                    b = state["momentum_buffer"]
                    b *= mu
                    b += g / r
                    w -= lr * b
                else:
                    w -= lr * (g / r)
        return loss
