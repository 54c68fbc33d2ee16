"""Losses, as in ``torch.nn.functional``: cross_entropy, nll_loss, mse_loss, l1_loss,
smooth_l1_loss, huber_loss, binary_cross_entropy, binary_cross_entropy_with_logits.

Every loss is one Function with a hand-written backward; ``reduction`` is 'none' (one
loss per element or sample), 'sum', or 'mean' (the sum divided by a count: the number of
elements, or for class-index losses the summed weight of the targets not ignored).
The backward of 'mean' is the upstream gradient divided by that same count.

Shapes: input (N, C) or (N, C, d1, d2, ...) for the class losses, class-index target
(N,) or (N, d1, d2, ...), probability target like input; a single sample may also be
given unbatched, input (C,) and target () (or (C,) for probabilities).

Argument names and order follow torch. Torch's deprecated ``size_average`` and
``reduce`` are not supported; so that a positional call never means something different
in the two libraries, every argument after those slots is keyword-only here
(``cross_entropy(x, t, w, ignore_index=0)``).

Class weights, ``pos_weight`` and integer targets are constants: torch refuses to
differentiate them, and so does minicnn (a weight that requires grad is an error).
Float targets are differentiated, as in torch.
"""
from __future__ import annotations

import math

from .. import backend
from ..autograd import Function, Tensor, as_tensor, is_grad_enabled
from ._checks import check_reduction, float_input

__all__ = ["cross_entropy", "nll_loss", "mse_loss", "l1_loss", "smooth_l1_loss",
           "huber_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits"]


# ------------------------------------------------------------------- class losses

def cross_entropy(input, target, weight=None, *, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0, pixel_weight=None):
    """Softmax cross-entropy of logits ``input`` (``torch.nn.functional.cross_entropy``),
    with an optional per-pixel weight map (U-Net's weighted loss; torch has none).

    With p = softmax(x) over the class dimension (dim 1), ε = ``label_smoothing``, w the
    class weights (ones if None) and C the number of classes:

    Class-index target t (integers; samples whose target is ``ignore_index`` count 0):
        loss_i = (1 - ε) · w[t_i] · (-log p[i, t_i])  +  (ε / C) · Σ_c w_c (-log p[i, c])
        'mean' divides Σ loss_i by Σ w[t_i] over the samples not ignored (torch's rule,
        kept when ε > 0), so an all-ignored batch gives nan, as in torch.
        dL/dx_i = s_i · (p_i · ((1-ε) w[t_i] + (ε/C) Σ_c w_c) - (1-ε) w[t_i] onehot(t_i) - (ε/C) w)
        where s_i is sample i's upstream gradient (divided by the count for 'mean'); with
        no weight and ε = 0 this is the familiar s_i · (p_i - onehot(t_i)).

    Probability target q (floats, same shape as input), q' = (1 - ε) q + ε / C:
        loss_i = -Σ_c w_c q'_ic log p_ic;  'mean' divides by the number of samples
        (N · d1 · d2 ...), weights or not, as torch does.
        dL/dx_i = s_i · (p_i Σ_c w_c q'_ic - w ⊙ q'_i),   dL/dq_i = -s_i (1 - ε) w ⊙ log p_i.

    Pixel weights m (``pixel_weight``, minicnn's addition: torch's cross_entropy has none,
    torch code multiplies the 'none' map itself; one non-negative number per sample or
    pixel, the target's shape (N, d1, ...), e.g. U-Net's w(x) as (N, H, W); a constant):
        each loss_i above is multiplied by m_i, and so is its gradient s_i.
        'mean' divides Σ m_i loss_i by Σ m_i w[t_i] over the samples not ignored (Σ m_i for
        probability targets); 'sum' is Σ m_i loss_i; 'none' the map m_i loss_i. With
        m = 1 everywhere this is the unweighted loss. U-Net's energy (Ronneberger et al.
        2015, eq. 1) is the 'sum' form; the 'mean' form keeps the loss's scale as the
        weights change. In torch: ``(cross_entropy(x, t, reduction="none") * m)`` reduced
        the same way.

    log p is computed as x - max - log Σ exp(x - max), so logits of ±1000 are fine.
    """
    x = float_input("cross_entropy", input)
    t = as_tensor(target)
    check_reduction("cross_entropy", reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be between 0.0 and 1.0, got "
                         f"{label_smoothing}")
    classes = _num_classes("cross_entropy", x)
    w = _class_weight("cross_entropy", weight, classes, x)
    m = _pixel_weight("cross_entropy", pixel_weight, x)
    if t.dtype.kind == "f":
        if t.shape != x.shape:
            raise ValueError(f"cross_entropy: a floating-point target holds class "
                             f"probabilities and must have the input's shape {x.shape}, got "
                             f"{t.shape} (class indices must be an integer tensor)")
        t = t.to(dtype=x.dtype)
        fn = CrossEntropyProbs(w, reduction, float(label_smoothing), m)
        return _as_batch(fn, x, t, reduction)
    t = _class_target("cross_entropy", x, t, classes, ignore_index)
    fn = CrossEntropy(w, int(ignore_index), reduction, float(label_smoothing), m)
    return _as_batch(fn, x, t, reduction)


class CrossEntropy(Function):
    """Fused log-softmax + negative log-likelihood for class-index targets."""

    def __init__(self, weight, ignore_index, reduction, label_smoothing, pixel_weight=None):
        self.weight, self.ignore_index = weight, ignore_index
        self.reduction, self.eps = reduction, label_smoothing
        self.pixel_weight = pixel_weight          # (N, d1, ...) or None

    def forward(self, x, target):
        xp = backend.get_array_module(x)
        n, c = x.shape[0], x.shape[1]
        s = math.prod(x.shape[2:])       # not -1: an empty batch (N = 0) must reshape too
        x3 = x.reshape(n, c, s)                                     # (N, C, S)
        t2 = target.reshape(n, s)                                   # (N, S)
        logp, probs = _log_softmax(xp, x3, self.needs_input_grad[0])   # (N, C, S)
        valid, t_safe, w_t = _pick_weights(xp, t2, c, self.weight, self.ignore_index, x.dtype)
        picked = xp.take_along_axis(logp, t_safe[:, None, :], axis=1)[:, 0, :]   # (N, S)
        loss = -w_t * picked
        if self.eps > 0:
            per_class = logp if self.weight is None else logp * self.weight[None, :, None]
            smooth = xp.where(valid, -per_class.sum(axis=1), 0)                     # (N, S)
            loss = (1 - self.eps) * loss + (self.eps / c) * smooth
        m = None if self.pixel_weight is None else self.pixel_weight.reshape(n, s)   # (N, S)
        if m is not None:
            loss = loss * m
        loss = loss.astype(x.dtype, copy=False)
        # Σ w[t_i] (times m_i) over the samples not ignored
        count = w_t.sum() if m is None else (w_t * m).sum()
        if self.needs_input_grad[0]:
            self.probs, self.m = probs, m
            self.valid, self.t_safe, self.w_t, self.count = valid, t_safe, w_t, count
            self.out_shape = target.shape
        return _reduce(xp, loss.reshape(target.shape), self.reduction, count)

    def backward(self, g):
        xp = backend.get_array_module(g)
        p = self.probs                                              # (N, C, S)
        n, c, s = p.shape
        scale = _per_element(xp, g, self.reduction, self.count).reshape(-1)
        scale = xp.broadcast_to(scale, (n * s,)).reshape(n, s)
        scale = xp.where(self.valid, scale, 0)                      # ignored samples: 0
        if self.m is not None:
            scale = scale * self.m          # loss_i · m_i: its gradient is scaled likewise
        eps, w_t = self.eps, self.w_t
        class_total = c if self.weight is None else self.weight.sum()   # Σ_c w_c
        # valid as w_t's dtype: a bool array times a Python number would be float64
        a = (1 - eps) * w_t + (eps / c) * class_total * self.valid.astype(w_t.dtype)   # (N, S)
        gx = p * (scale * a)[:, None, :]
        onehot = xp.arange(c)[None, :, None] == self.t_safe[:, None, :]
        gx = gx - onehot * ((1 - eps) * w_t * scale)[:, None, :]
        if eps > 0:
            w = 1 if self.weight is None else self.weight[None, :, None]
            gx = gx - (eps / c) * w * scale[:, None, :]
        gx = gx.astype(g.dtype, copy=False).reshape((n, c) + tuple(self.out_shape[1:]))
        return gx, None


class CrossEntropyProbs(Function):
    """Cross-entropy against class probabilities (soft labels)."""

    def __init__(self, weight, reduction, label_smoothing, pixel_weight=None):
        self.weight, self.reduction, self.eps = weight, reduction, label_smoothing
        self.pixel_weight = pixel_weight          # (N, d1, ...) or None

    def forward(self, x, q):
        xp = backend.get_array_module(x)
        n, c = x.shape[0], x.shape[1]
        s = math.prod(x.shape[2:])       # not -1: an empty batch (N = 0) must reshape too
        x3 = x.reshape(n, c, s)                                     # (N, C, S)
        q = q.reshape(n, c, s)                                      # (N, C, S)
        logp, probs = _log_softmax(xp, x3, self.needs_input_grad[0])
        if self.eps > 0:
            q = q * (1 - self.eps) + self.eps / c
        wq = q if self.weight is None else q * self.weight[None, :, None]   # w ⊙ q'
        loss = -(logp * wq).sum(axis=1)                             # (N, S)
        count = loss.size                 # samples, not weights: torch's rule here
        self.m = None if self.pixel_weight is None else self.pixel_weight.reshape(n, 1, s)
        if self.m is not None:
            loss = loss * self.m[:, 0, :]
            count = self.m.sum()          # Σ m_i: the weighted mean of the samples
        if self.needs_input_grad[0]:
            self.probs, self.wq = probs, wq
        if self.needs_input_grad[1]:
            self.logp = logp
        self.count, self.shape = count, x.shape
        out_shape = (n,) + tuple(x.shape[2:])
        return _reduce(xp, loss.reshape(out_shape).astype(x.dtype, copy=False),
                       self.reduction, count)

    def backward(self, g):
        xp = backend.get_array_module(g)
        n = self.shape[0]
        scale = _per_element(xp, g, self.reduction, self.count)
        s = math.prod(self.shape[2:])
        scale = xp.broadcast_to(scale.reshape(-1), (n * s,)).reshape(n, 1, s)   # (N, 1, S)
        if self.m is not None:
            scale = scale * self.m
        gx = gq = None
        if self.needs_input_grad[0]:
            gx = scale * (self.probs * self.wq.sum(axis=1, keepdims=True) - self.wq)
            gx = gx.astype(g.dtype, copy=False).reshape(self.shape)
        if self.needs_input_grad[1]:
            w = 1 if self.weight is None else self.weight[None, :, None]
            gq = (-(1 - self.eps) * scale * w * self.logp).astype(g.dtype, copy=False)
            gq = gq.reshape(self.shape)
        return gx, gq


def nll_loss(input, target, weight=None, *, ignore_index=-100, reduction="mean"):
    """Negative log-likelihood of log-probabilities ``input``
    (``torch.nn.functional.nll_loss``; ``cross_entropy`` is ``nll_loss(log_softmax(x))``).

        loss_i = -w[t_i] · x[i, t_i]   (0 where t_i == ignore_index)
        'mean' divides Σ loss_i by Σ w[t_i] over the samples not ignored.
        dL/dx[i, c] = -s_i · w[t_i] where c = t_i, 0 elsewhere.

    Shapes as for cross_entropy with class-index targets.
    """
    x = float_input("nll_loss", input)
    t = as_tensor(target)
    check_reduction("nll_loss", reduction)
    classes = _num_classes("nll_loss", x)
    w = _class_weight("nll_loss", weight, classes, x)
    t = _class_target("nll_loss", x, t, classes, ignore_index)
    return _as_batch(NLLLoss(w, int(ignore_index), reduction), x, t, reduction)


class NLLLoss(Function):
    def __init__(self, weight, ignore_index, reduction):
        self.weight, self.ignore_index, self.reduction = weight, ignore_index, reduction

    def forward(self, x, target):
        xp = backend.get_array_module(x)
        n, c = x.shape[0], x.shape[1]
        s = math.prod(x.shape[2:])       # not -1: an empty batch (N = 0) must reshape too
        x3 = x.reshape(n, c, s)                                     # (N, C, S)
        t2 = target.reshape(n, s)                                   # (N, S)
        valid, t_safe, w_t = _pick_weights(xp, t2, c, self.weight, self.ignore_index, x.dtype)
        picked = xp.take_along_axis(x3, t_safe[:, None, :], axis=1)[:, 0, :]     # (N, S)
        loss = (-w_t * picked).astype(x.dtype, copy=False)
        count = w_t.sum()
        if self.needs_input_grad[0]:
            self.valid, self.t_safe, self.w_t, self.count = valid, t_safe, w_t, count
            self.shape = x.shape
        return _reduce(xp, loss.reshape(target.shape), self.reduction, count)

    def backward(self, g):
        xp = backend.get_array_module(g)
        n, c = self.shape[0], self.shape[1]
        s = self.t_safe.shape[1]
        scale = _per_element(xp, g, self.reduction, self.count).reshape(-1)
        scale = xp.broadcast_to(scale, (n * s,)).reshape(n, s)
        coef = xp.where(self.valid, -self.w_t * scale, 0)            # (N, S)
        onehot = xp.arange(c)[None, :, None] == self.t_safe[:, None, :]      # (N, C, S)
        gx = (onehot * coef[:, None, :]).astype(g.dtype, copy=False)
        return gx.reshape(self.shape), None


# -------------------------------------------------------------- regression losses

def mse_loss(input, target, *, reduction="mean", weight=None):
    """Squared error (x - y)² (``torch.nn.functional.mse_loss``).

    Gradients: dL/dx = 2 (x - y) · s, dL/dy = -dL/dx, s the upstream gradient (/ numel
    for 'mean'). With ``weight`` (input's shape) each term is w ⊙ (x - y)² and 'mean'
    divides by Σ w, as torch does; the weight's gradient is then s ⊙ (x - y)², minus the
    mean loss / Σ w for 'mean'.
    """
    return _pointwise("mse_loss", "mse", input, target, reduction, 0.0, weight)


class PointwiseLoss(Function):
    """loss = w ⊙ ℓ(x - y) for an elementwise ℓ, then reduced."""

    def __init__(self, kind, reduction, param, mean_by_weight):
        self.kind, self.reduction, self.param = kind, reduction, param
        self.mean_by_weight = mean_by_weight

    def forward(self, x, y, w):
        xp = backend.get_array_module(x)
        d = x - y
        elementwise, slope = _pointwise_terms(xp, self.kind, d, self.param)
        loss = elementwise if w is None else w * elementwise
        if w is not None and self.mean_by_weight:
            count = w.sum()
        else:
            count = loss.size
        out = _reduce(xp, loss, self.reduction, count)
        self.count = count
        if self.needs_input_grad[0] or self.needs_input_grad[1]:
            self.slope = slope if w is None else w * slope
        if w is not None and self.needs_input_grad[2]:
            self.elementwise, self.out = elementwise, out
        return out

    def backward(self, g):
        xp = backend.get_array_module(g)
        scale = _per_element(xp, g, self.reduction, self.count)
        gx = gy = gw = None
        if self.needs_input_grad[0] or self.needs_input_grad[1]:
            gd = (scale * self.slope).astype(g.dtype, copy=False)     # dL/d(x - y)
            gx = gd if self.needs_input_grad[0] else None
            gy = -gd if self.needs_input_grad[1] else None
        if self.needs_input_grad[2]:
            gw = scale * self.elementwise
            if self.reduction == "mean" and self.mean_by_weight:
                # d/dw_i of Σ w ℓ / Σ w is (ℓ_i - mean) / Σ w
                gw = gw - scale * self.out
            gw = xp.broadcast_to(gw, self.elementwise.shape).astype(g.dtype)
        return gx, gy, gw


def l1_loss(input, target, *, reduction="mean", weight=None):
    """Absolute error |x - y| (``torch.nn.functional.l1_loss``).

    Gradient: sign(x - y) · s, which is 0 where x = y (torch's convention); the target's
    is its negative. ``weight`` as in :func:`mse_loss`.
    """
    return _pointwise("l1_loss", "l1", input, target, reduction, 0.0, weight)


def smooth_l1_loss(input, target, *, reduction="mean", beta=1.0):
    """Smooth L1 (``torch.nn.functional.smooth_l1_loss``; Fast R-CNN's box loss).

    With d = x - y:  0.5 d² / β where |d| < β, |d| - 0.5 β elsewhere.
    Gradient: d / β where |d| < β, sign(d) elsewhere (the two agree at |d| = β).
    β = 0 is plain L1, as in torch.
    """
    if beta < 0:
        raise ValueError(f"smooth_l1_loss: beta must be non-negative, got {beta}")
    kind = "l1" if beta == 0 else "smooth_l1"
    return _pointwise("smooth_l1_loss", kind, input, target, reduction, float(beta), None)


def huber_loss(input, target, reduction="mean", delta=1.0, weight=None):
    """Huber loss (``torch.nn.functional.huber_loss``), β·smooth_l1 with β = δ.

    With d = x - y:  0.5 d² where |d| < δ, δ (|d| - 0.5 δ) elsewhere.
    Gradient: d where |d| ≤ δ, δ · sign(d) elsewhere. NOTE: with ``weight``, torch's
    'mean' divides the weighted sum by the number of elements (not by Σ w, unlike
    mse_loss and l1_loss); minicnn does the same.
    """
    if not delta > 0:
        raise ValueError(f"huber_loss: delta must be positive, got {delta}")
    return _pointwise("huber_loss", "huber", input, target, reduction, float(delta), weight)


def _pointwise(op, kind, input, target, reduction, param, weight):
    x = float_input(op, input)
    y = as_tensor(target)
    check_reduction(op, reduction)
    if y.dtype.kind != "f":
        raise TypeError(f"{op}: target must be floating point like input, got dtype "
                        f"{y.dtype}")
    if y.shape != x.shape:
        raise ValueError(f"{op}: target size {tuple(y.shape)} must equal input size "
                         f"{tuple(x.shape)} (minicnn does not broadcast the two; torch "
                         f"warns and does)")
    y = y.to(dtype=x.dtype)
    if weight is not None:
        weight = as_tensor(weight).to(dtype=x.dtype)
        if weight.shape != x.shape:
            raise ValueError(f"{op}: weight size {tuple(weight.shape)} must equal input "
                             f"size {tuple(x.shape)}")
    # huber's weighted 'mean' counts elements; mse's and l1's count the weight
    weighted_mean_by_weight = kind != "huber"
    return PointwiseLoss(kind, reduction, param, weighted_mean_by_weight)(x, y, weight)


def _pointwise_terms(xp, kind, d, param):
    """ℓ(d) and ℓ'(d) for the regression losses."""
    if kind == "mse":
        return d * d, 2 * d
    if kind == "l1":
        return xp.abs(d), xp.sign(d)
    a = xp.abs(d)
    inside = a < param
    if kind == "smooth_l1":
        beta = param
        return (xp.where(inside, 0.5 * d * d / beta, a - 0.5 * beta),
                xp.where(inside, d / beta, xp.sign(d)))
    delta = param          # huber
    return (xp.where(inside, 0.5 * d * d, delta * (a - 0.5 * delta)),
            xp.clip(d, -delta, delta))


# ------------------------------------------------------------------ binary losses

def binary_cross_entropy(input, target, weight=None, *, reduction="mean"):
    """Binary cross-entropy of probabilities ``input`` in [0, 1]
    (``torch.nn.functional.binary_cross_entropy``).

        loss = -w · (y · log x + (1 - y) · log(1 - x)),  each log clamped at -100
        dL/dx = s · w · (x - y) / max(x (1 - x), 1e-12)      (torch's guard against 0/0)
        dL/dy = s · w · (log(1 - x) - log x),  with the same clamped logs

    NOTE: the log clamp (torch's) keeps an input of exactly 0 or 1 finite. For logits,
    use binary_cross_entropy_with_logits, which is stable without any clamp.
    ``weight`` broadcasts to input's shape and is a constant.
    """
    x = float_input("binary_cross_entropy", input)
    y = as_tensor(target)
    check_reduction("binary_cross_entropy", reduction)
    _check_binary_target("binary_cross_entropy", x, y)
    y = y.to(dtype=x.dtype)
    xp = backend.get_array_module(x.array)
    out_of_range = (x.array < 0) | (x.array > 1) | xp.isnan(x.array)

    def not_probabilities():
        bad = x.array[out_of_range].reshape(-1)[0].item()
        raise ValueError(f"binary_cross_entropy: every input must be a probability in "
                         f"[0, 1], found {bad} (use binary_cross_entropy_with_logits for "
                         f"logits)")
    backend.check(out_of_range.any(), not_probabilities)     # queued on a GPU
    w = _broadcast_constant("binary_cross_entropy", "weight", weight, x)
    return BinaryCrossEntropy(w, reduction)(x, y)


class BinaryCrossEntropy(Function):
    def __init__(self, weight, reduction):
        self.weight, self.reduction = weight, reduction

    def forward(self, x, y):
        xp = backend.get_array_module(x)
        log_x, log_1mx = _clamped_log(xp, x), _clamped_log(xp, 1 - x)
        loss = -(y * log_x + (1 - y) * log_1mx)
        if self.weight is not None:
            loss = loss * self.weight
        loss = loss.astype(x.dtype, copy=False)
        if self.needs_input_grad[0]:
            self.x, self.y = x, y
        if self.needs_input_grad[1]:
            self.log_ratio = log_1mx - log_x
        self.count = loss.size
        return _reduce(xp, loss, self.reduction, self.count)

    def backward(self, g):
        xp = backend.get_array_module(g)
        scale = _per_element(xp, g, self.reduction, self.count)
        if self.weight is not None:
            scale = scale * self.weight
        gx = gy = None
        if self.needs_input_grad[0]:
            x = self.x
            gx = scale * (x - self.y) / xp.maximum(x * (1 - x), 1e-12)
            gx = xp.broadcast_to(gx, x.shape).astype(g.dtype)
        if self.needs_input_grad[1]:
            gy = xp.broadcast_to(scale * self.log_ratio, self.log_ratio.shape).astype(g.dtype)
        return gx, gy


def binary_cross_entropy_with_logits(input, target, weight=None, *, reduction="mean",
                                     pos_weight=None):
    """Sigmoid + binary cross-entropy in one stable step
    (``torch.nn.functional.binary_cross_entropy_with_logits``).

    With σ the sigmoid, p = ``pos_weight`` (broadcast along the last dimension, the
    classes; 1 if None) and w = ``weight``:

        loss = w · (p · y · (-log σ(x)) + (1 - y) · (-log(1 - σ(x))))
             = w · ((1 - y) · x + (1 + (p - 1) y) · softplus(-x))
        softplus(-x) = max(-x, 0) + log(1 + e^(-|x|)):  no overflow, logits of ±1000 are fine.
        dL/dx = s · w · (σ(x) (1 + (p - 1) y) - p y)
        dL/dy = s · w · (p · softplus(-x) - softplus(x))
    """
    x = float_input("binary_cross_entropy_with_logits", input)
    y = as_tensor(target)
    check_reduction("binary_cross_entropy_with_logits", reduction)
    _check_binary_target("binary_cross_entropy_with_logits", x, y)
    y = y.to(dtype=x.dtype)
    w = _broadcast_constant("binary_cross_entropy_with_logits", "weight", weight, x)
    pw = _broadcast_constant("binary_cross_entropy_with_logits", "pos_weight", pos_weight, x)
    return BCEWithLogits(w, pw, reduction)(x, y)


class BCEWithLogits(Function):
    def __init__(self, weight, pos_weight, reduction):
        self.weight, self.pos_weight, self.reduction = weight, pos_weight, reduction

    def forward(self, x, y):
        xp = backend.get_array_module(x)
        softplus_neg = xp.maximum(-x, 0) + xp.log1p(xp.exp(-xp.abs(x)))   # -log σ(x)
        if self.pos_weight is None:
            loss = (1 - y) * x + softplus_neg
        else:
            loss = (1 - y) * x + (1 + (self.pos_weight - 1) * y) * softplus_neg
        if self.weight is not None:
            loss = loss * self.weight
        loss = loss.astype(x.dtype, copy=False)
        if any(self.needs_input_grad):
            self.x, self.y, self.softplus_neg = x, y, softplus_neg
        self.count = loss.size
        return _reduce(xp, loss, self.reduction, self.count)

    def backward(self, g):
        xp = backend.get_array_module(g)
        scale = _per_element(xp, g, self.reduction, self.count)
        if self.weight is not None:
            scale = scale * self.weight
        x, y, pw = self.x, self.y, self.pos_weight
        gx = gy = None
        if self.needs_input_grad[0]:
            e = xp.exp(-xp.abs(x))
            sig = xp.where(x >= 0, 1 / (1 + e), e / (1 + e))        # σ(x), overflow-free
            if pw is None:
                gx = scale * (sig - y)
            else:
                gx = scale * (sig * (1 + (pw - 1) * y) - pw * y)
            gx = xp.broadcast_to(gx, x.shape).astype(g.dtype)
        if self.needs_input_grad[1]:
            softplus_pos = x + self.softplus_neg                    # -log(1 - σ(x))
            p = 1 if pw is None else pw
            gy = xp.broadcast_to(scale * (p * self.softplus_neg - softplus_pos), x.shape)
            gy = gy.astype(g.dtype)
        return gx, gy


# ------------------------------------------------------------------------ helpers

def _num_classes(op, x):
    """C, from an input (N, C, d1, ...) or one unbatched sample (C,)."""
    if x.ndim == 0:
        raise ValueError(f"{op}: input must have a class dimension: (C,), (N, C) or "
                         "(N, C, d1, ...), got a 0-d tensor")
    return x.shape[1] if x.ndim >= 2 else x.shape[0]


def _as_batch(fn, x, t, reduction):
    """``fn(x, t)`` for a class loss; one unbatched sample (input (C,), target () or (C,))
    runs as a batch of one, and its 'none' loss comes back 0-d."""
    if x.ndim > 1:
        return fn(x, t)
    out = fn(x.reshape((1,) + tuple(x.shape)), t.reshape((1,) + tuple(t.shape)))
    return out.reshape(()) if reduction == "none" else out


def _class_weight(op, weight, classes, x):
    """The class weights as a constant raw array of length C in x's dtype (or None)."""
    if weight is None:
        return None
    if isinstance(weight, Tensor) and weight.requires_grad and is_grad_enabled():
        raise RuntimeError(f"{op}: weight cannot require grad: class weights are constants "
                           f"(torch does not differentiate them either); pass "
                           f"weight.detach()")
    w = as_tensor(weight, like=x)
    if w.shape != (classes,):
        raise ValueError(f"{op}: weight must have shape (C,) = ({classes},), one per class, "
                         f"got {tuple(w.shape)}")
    return _on_device_of(w.array, x).astype(x.dtype, copy=False)


def _pixel_weight(op, pixel_weight, x):
    """The per-pixel weights as a constant raw array of the target's shape (N, d1, ...)
    in x's dtype (or None); every weight must be finite and >= 0."""
    if pixel_weight is None:
        return None
    if isinstance(pixel_weight, Tensor) and pixel_weight.requires_grad and is_grad_enabled():
        raise RuntimeError(f"{op}: pixel_weight cannot require grad: it is a constant weight "
                           f"map; pass pixel_weight.detach()")
    m = as_tensor(pixel_weight, like=x)
    expected = (x.shape[0],) + tuple(x.shape[2:]) if x.ndim >= 2 else ()
    if tuple(m.shape) != expected:
        raise ValueError(f"{op}: pixel_weight must have the target's shape {expected} (the "
                         f"input's shape {tuple(x.shape)} without the class dimension), got "
                         f"{tuple(m.shape)}")
    if m.dtype.kind not in "fiub":
        raise TypeError(f"{op}: pixel_weight must be a real-valued array, got dtype "
                        f"{m.dtype}")
    arr = _on_device_of(m.array, x).astype(x.dtype, copy=False)
    xp = backend.get_array_module(arr)
    bad = ~(xp.isfinite(arr) & (arr >= 0))

    def not_weights():
        value = arr[bad].reshape(-1)[0].item()
        raise ValueError(f"{op}: pixel_weight must be finite and non-negative everywhere, "
                         f"found {value}")
    backend.check(bad.any(), not_weights)           # queued on a GPU, as the target check
    return arr


def _class_target(op, x, t, classes, ignore_index):
    """Check a class-index target's dtype, shape and values; return it as int64."""
    if t.dtype.kind not in "iu":
        raise TypeError(f"{op}: class-index target must be an integer tensor, got dtype "
                        f"{t.dtype}" + (" (class probabilities would need the input's shape "
                                        f"{tuple(x.shape)})" if t.dtype.kind == "f" else ""))
    expected = (x.shape[0],) + tuple(x.shape[2:]) if x.ndim >= 2 else ()
    if t.shape != expected:
        raise ValueError(f"{op}: expected target of shape {expected} (input's shape "
                         f"{tuple(x.shape)} without the class dimension), got "
                         f"{tuple(t.shape)}")
    arr = _on_device_of(t.array, x).astype("int64", copy=False)
    bad = ((arr < 0) | (arr >= classes)) & (arr != ignore_index)

    def out_of_bounds():
        value = int(arr[bad].reshape(-1)[0].item())
        raise IndexError(f"{op}: target {value} is out of bounds for {classes} classes "
                         f"(expected 0 <= target < {classes}, or ignore_index="
                         f"{ignore_index})")
    # NOTE: on a GPU reading the check now would wait for the device at every call; it is
    # queued and raised at the next read of a device value (backend.check), as torch's
    # device-side assert is. CuPy wraps the bad index meanwhile; the loss is then garbage
    # and is never shown, since the next read raises first.
    backend.check(bad.any(), out_of_bounds)
    return Tensor._wrap(arr)


def _log_softmax(xp, x, with_probs):
    """log p, p = softmax(x) over the class axis 1, computed as

        log p = x - max - log Σ exp(x - max)

    so that logits of ±1000 neither overflow nor lose the small classes; also p itself
    (what the gradient needs) when ``with_probs``, else None."""
    shifted = x - x.max(axis=1, keepdims=True)
    exps = xp.exp(shifted)
    total = exps.sum(axis=1, keepdims=True)
    return shifted - xp.log(total), (exps / total if with_probs else None)


def _pick_weights(xp, t2, classes, weight, ignore_index, dtype):
    """For targets (N, S): which count, a safe index for gathering, and w[t] (0 if ignored)."""
    valid = t2 != ignore_index
    # clipped too: a target out of range is an error, but on a GPU it is reported one read
    # later (backend.check), and meanwhile must not index outside the classes
    t_safe = xp.clip(xp.where(valid, t2, 0), 0, classes - 1)
    if weight is None:
        w_t = valid.astype(dtype)
    else:
        w_t = xp.where(valid, weight[t_safe], 0).astype(dtype, copy=False)
    return valid, t_safe, w_t


def _check_binary_target(op, x, y):
    if y.dtype.kind != "f":
        raise TypeError(f"{op}: target must be floating point (0/1 labels or "
                        f"probabilities), got dtype {y.dtype}")
    if y.shape != x.shape:
        raise ValueError(f"{op}: target size {tuple(y.shape)} must equal input size "
                         f"{tuple(x.shape)}")


def _broadcast_constant(op, name, value, x):
    """A weight that broadcasts to x's shape, as a constant raw array in x's dtype."""
    if value is None:
        return None
    if isinstance(value, Tensor) and value.requires_grad and is_grad_enabled():
        raise RuntimeError(f"{op}: {name} cannot require grad: it is a constant (torch does "
                           f"not differentiate it either); pass {name}.detach()")
    w = as_tensor(value, like=x)
    shape = tuple(w.shape)
    ok = len(shape) <= x.ndim and all(a in (1, b) for a, b in zip(shape[::-1], x.shape[::-1]))
    if not ok:
        raise ValueError(f"{op}: {name} of shape {shape} does not broadcast to the input's "
                         f"shape {tuple(x.shape)}")
    return _on_device_of(w.array, x).astype(x.dtype, copy=False)


def _on_device_of(array, x):
    return backend.to_device(array, x.device)


def _clamped_log(xp, v):
    """log v, clamped below at -100 as torch's BCE does (and no warning at v = 0)."""
    positive = v > 0
    return xp.maximum(xp.where(positive, xp.log(xp.where(positive, v, 1)), -100), -100)


def _reduce(xp, loss, reduction, count):
    """Apply the reduction; 'mean' divides by ``count`` (nan when it is 0, as torch)."""
    if reduction == "none":
        return loss
    total = xp.asarray(loss.sum(), dtype=loss.dtype)
    if reduction == "sum":
        return total
    return total / _safe_count(xp, count, loss.dtype)


def _per_element(xp, g, reduction, count):
    """The upstream gradient each element's loss receives: g itself, or g / count."""
    if reduction == "mean":
        return g / _safe_count(xp, count, g.dtype)
    return g


def _safe_count(xp, count, dtype):
    # NOTE: torch returns nan for a mean over nothing (every target ignored). Dividing by
    # nan instead of 0 gives that nan without NumPy's "invalid value" warning.
    count = xp.asarray(count, dtype=dtype)
    return xp.where(count == 0, math.nan, count)
