"""Stochastic gradient descent, with momentum (Polyak's heavy ball, or Nesterov's)."""
from __future__ import annotations

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
    """

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0,
                 nesterov=False, *, maximize=False):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov, maximize=maximize)
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
            for p, w, g in self._gradients(group):
                if decay != 0:
                    g = g + decay * w
                if mu != 0:
                    state = self.state.setdefault(p, {})
                    b = state.get("momentum_buffer")
                    if b is None:
                        b = state["momentum_buffer"] = g.copy()
                    else:
                        b *= mu
                        b += (1 - tau) * g
                    g = g + mu * b if group["nesterov"] else b
                w -= lr * g
        return loss
