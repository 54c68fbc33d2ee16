"""Fused optimizer updates: the fast path of SGD and Adam/AdamW on the CPU.

The readable updates in ``sgd.py`` and ``adam.py`` are written as whole-array
expressions, one per line of the paper's formulas. Each line is a pass over memory, and
several make a temporary: SGD with momentum and weight decay reads and writes every
parameter's worth of memory about ten times per step, Adam about twenty. Here each
update is one compiled loop that reads w, g and the state once and writes them once,
element by element, on every core.

The loops compute exactly what the readable code computes, operation for operation and
in the same order, in the parameter's dtype: every hyper-parameter is rounded to that
dtype first (as NumPy rounds a Python float meeting a float32 array), ``np.sqrt`` keeps
float32 float32, and numba contracts no multiply-add into an FMA (it does not without
``fastmath``). IEEE arithmetic is deterministic, so the results are equal bit for bit
(tests/optim/test_fused.py checks it).

When it runs (``fused=`` of the optimizers, as torch's): ``None`` (default) takes it for
every parameter whose weight and gradient are C-contiguous NumPy float32/float64 arrays
of one dtype while ``kernels.dispatch`` is in "auto" mode, and the readable code for the
others; ``False`` never; ``True`` always, and a parameter it cannot take is an error.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from kernels import _threads, dispatch

__all__ = ["usable", "check_fusable", "state_array", "sgd_step", "adam_step"]

# below this many elements in a step the threads cost more than they save
_THREADED = 1 << 16


def usable(w, g):
    """True when the fused loops can update weight ``w`` with gradient ``g``."""
    return (dispatch.use_fast(w, g) and w.dtype == g.dtype and w.shape == g.shape
            and w.flags.c_contiguous and g.flags.c_contiguous and w.flags.writeable)


def check_fusable(name, index, w, g):
    """With ``fused=True``: a clear error when parameter ``index`` cannot be fused."""
    if not usable(w, g):
        raise ValueError(f"{name}: fused=True needs C-contiguous NumPy float32/float64 "
                         f"weights and gradients of one dtype (the compiled CPU loop) and "
                         f"kernels in 'auto' mode, but parameter {index} is a "
                         f"{type(w).__name__} of {w.dtype} with a {g.dtype} gradient "
                         f"(kernels: {dispatch.get_kernels()!r}); use fused=None or False")


def state_array(state, key, w):
    """``state[key]`` as the fused loops need it: a C-contiguous NumPy array of w's dtype
    and shape (replaced in ``state`` by such a copy if it is not one, e.g. after a user
    stored a view there), so that the loop's writes land in the state itself."""
    a = state[key]
    if not (type(a) is np.ndarray and a.dtype == w.dtype and a.shape == w.shape
            and a.flags.c_contiguous and a.flags.writeable):
        a = state[key] = np.array(a, dtype=w.dtype, order="C").reshape(w.shape)
    return a


# ---------------------------------------------------------------- compiled loops
#
# Each loop is compiled once per combination of the options that select a branch
# (weight decay or not, momentum or not, ...): they are constants of the closure, so the
# compiler drops the branches not taken and vectorises the rest. NOTE: with the options
# as run-time flags instead, the branches stayed in the loop and it ran about 2x slower
# (measured on an 11M-element SGD step), no faster than the NumPy lines it replaces.
# NOTE: the index is unsigned: numba checks a signed index for a negative value (to wrap
# it around), and that check keeps LLVM from vectorising the loop at all (as in
# kernels/numba_conv.py).

def _compile(py_func):
    import numba            # only when a fused step first runs: import minicnn stays light
    # error_model="numpy": x / 0 gives inf or NaN as in NumPy, where numba's default
    # (Python's ZeroDivisionError) puts a test in the loop that stops vectorisation
    return numba.njit(cache=True, nogil=True, error_model="numpy")(py_func)


@functools.lru_cache(maxsize=None)
def _sgd_loop(use_decay, use_momentum, first, nesterov, maximize):
    def loop(w, g, b, lo, hi, lr, mu, damp, decay):
        """sgd.py's update of w[lo:hi] (flat), b the momentum buffer; one pass."""
        for k in range(lo, hi):
            i = np.uintp(k)         # see the NOTE above on unsigned indices
            gi = g[i]
            if maximize:
                gi = -gi
            if use_decay:
                gi = gi + decay * w[i]                  # g + λ·w
            if use_momentum:
                if first:
                    bi = gi                             # b ← g
                else:
                    bi = b[i] * mu + damp * gi          # b ← μ·b + (1 - τ)·g
                b[i] = bi
                if nesterov:
                    gi = gi + mu * bi                   # d ← g + μ·b
                else:
                    gi = bi
            w[i] = w[i] - lr * gi
    return _compile(loop)


@functools.lru_cache(maxsize=None)
def _adam_loop(use_decay, decoupled, amsgrad, maximize):
    def loop(w, g, m, v, v_max, lo, hi, step_size, beta1, one_m_beta1, beta2, one_m_beta2,
             bias2_sqrt, eps, decay, shrink):
        """adam.py's update of w[lo:hi] (flat) with its moments m, v (and v_max)."""
        for k in range(lo, hi):
            i = np.uintp(k)
            gi = g[i]
            if maximize:
                gi = -gi
            wi = w[i]
            if use_decay:
                if decoupled:
                    wi = wi * shrink                    # AdamW: w ← w·(1 - lr·λ)
                else:
                    gi = gi + decay * wi                # g ← g + λ·w
            mi = m[i] * beta1 + one_m_beta1 * gi
            m[i] = mi
            vi = v[i] * beta2 + one_m_beta2 * (gi * gi)
            v[i] = vi
            if amsgrad:
                vm = v_max[i]
                if vi > vm or vi != vi:                 # np.maximum: NaN wins
                    vm = vi
                v_max[i] = vm
                vi = vm
            denom = np.sqrt(vi) / bias2_sqrt + eps
            w[i] = wi - step_size * mi / denom
    return _compile(loop)


# ------------------------------------------------------------------ the steps

def _flat(a):
    return a.reshape(-1)


def _run(items, update):
    """Call ``update(k, lo, hi)`` over every element of every item (item k has
    ``items[k]`` elements), the elements of all items cut into one chunk per core."""
    starts = np.cumsum([0] + list(items))
    total = int(starts[-1])

    def work(lo, hi):
        for k, n in enumerate(items):
            a, b = max(lo, starts[k]), min(hi, starts[k] + n)
            if a < b:
                update(k, int(a - starts[k]), int(b - starts[k]))

    _threads.split(total, work, None if total >= _THREADED else 1)


def sgd_step(batch, lr, mu, tau, decay, nesterov, maximize):
    """One SGD step for ``batch``: a list of (w, g, buffer, first) with buffer the
    momentum buffer (None without momentum) and first True on its first step."""
    if not batch:
        return
    dtype = batch[0][0].dtype.type
    args = (dtype(lr), dtype(mu), dtype(1 - tau), dtype(decay))
    flat = [(_flat(w), _flat(g), _flat(w if b is None else b),
             _sgd_loop(decay != 0, mu != 0, bool(first), bool(nesterov), bool(maximize)))
            for w, g, b, first in batch]

    def update(k, lo, hi):
        w, g, b, loop = flat[k]
        loop(w, g, b, lo, hi, *args)

    _run([w.size for w, *_ in batch], update)


def adam_step(batch, lr, beta1, beta2, eps, decay, decoupled, amsgrad, maximize):
    """One Adam step for ``batch``: a list of (w, g, m, v, v_max or None, t) with t the
    parameter's step count after this step."""
    if not batch:
        return
    dtype = batch[0][0].dtype.type
    flat = [(_flat(w), _flat(g), _flat(m), _flat(v), _flat(v if vm is None else vm), t)
            for w, g, m, v, vm, t in batch]
    common = (dtype(beta1), dtype(1 - beta1), dtype(beta2), dtype(1 - beta2))
    tail = (dtype(eps), dtype(decay), dtype(1 - lr * decay))
    loop = _adam_loop(decay != 0, bool(decoupled), bool(amsgrad), bool(maximize))
    # the step count is per parameter (a group's parameters can differ after an
    # add_param_group or a partial load), and with it the bias corrections
    per_t = {}
    for *_, t in batch:
        if t not in per_t:
            per_t[t] = (dtype(lr / (1 - beta1 ** t)), dtype(math.sqrt(1 - beta2 ** t)))

    def update(k, lo, hi):
        w, g, m, v, vm, t = flat[k]
        step_size, bias2_sqrt = per_t[t]
        loop(w, g, m, v, vm, lo, hi, step_size, *common, bias2_sqrt, *tail)

    _run([w.size for w, *_ in batch], update)
