"""Special functions NumPy lacks: the error function erf, for the exact GELU.

    erf(x) = 2/√π ∫₀ˣ e^(-t²) dt

Two routines compute it:

* ``erf_cpu(x)``: NumPy arrays, through numba's compiled ``math.erf`` (the C library's
  erf, correctly rounded to within an ulp). Compiled on first use and cached on disk.
* ``erf_reference(xp, x)``: any array module, written only with ``xp`` arithmetic. Slower
  (about sixty elementwise passes), but it runs wherever ``xp`` does; it is what a device
  without a compiled erf falls back on, and what tests check the fast paths against.

On CuPy, ``minicnn.backend.erf`` uses ``cupyx.scipy.special.erf`` instead.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["erf_cpu", "erf_reference"]

_erf_ufunc = None


def _erf_scalar(v):
    return math.erf(v)


def erf_cpu(x):
    """erf of a NumPy array, elementwise, in the array's dtype (float16 via float32)."""
    global _erf_ufunc
    if _erf_ufunc is None:
        import numba    # imported on first use: `import minicnn` should not pay for it
        _erf_ufunc = numba.vectorize(["float32(float32)", "float64(float64)"],
                                     cache=True)(_erf_scalar)
    x = np.asarray(x)
    if x.dtype.kind != "f":
        raise TypeError(f"erf: expected a floating-point array, got dtype {x.dtype}")
    return _erf_ufunc(x).astype(x.dtype, copy=False)


# Where the two formulas of erf_reference meet: below it the series needs few terms and
# has no cancellation, above it the continued fraction converges fast.
_SPLIT = 2.5
_TERMS = 60


def erf_reference(xp, x):
    """erf with array-module arithmetic only (accurate to a few units in the last place).

    For |x| < 2.5, a series whose terms are all positive (so nothing cancels):

        erf(x) = 2/√π · e^(-x²) · Σₙ (2x²)ⁿ x / (1·3·5···(2n+1))

    For |x| ≥ 2.5, erf(x) = 1 - erfc(x) with erfc's continued fraction

        erfc(x) = e^(-x²)/√π · 1/(x + ½/(x + 1/(x + (3/2)/(x + 2/(x + ...)))))

    evaluated from its tail. Beyond |x| = 6, erfc(x) < 2e-17 and erf is ±1 in float64.
    Computed in float64, returned in ``x``'s dtype.
    """
    dtype = x.dtype
    v = x.astype(np.float64)
    a = xp.abs(v)
    # NOTE: clip before squaring, so that huge inputs cannot overflow x² (a warning).
    a = xp.minimum(a, 10.0)
    small = a < _SPLIT
    s = xp.where(small, a, 0.0)            # the series only ever sees |x| < 2.5
    two_s2 = 2.0 * s * s
    term = s.copy()
    total = s.copy()
    for n in range(1, _TERMS):
        term = term * two_s2 / (2 * n + 1)
        total = total + term
    series = (2.0 / math.sqrt(math.pi)) * xp.exp(-s * s) * total

    b = xp.where(small, _SPLIT, a)          # the fraction only ever sees |x| ≥ 2.5
    fraction = b.copy()
    for k in range(_TERMS, 0, -1):
        fraction = b + (k / 2.0) / fraction
    erfc = xp.exp(-b * b) / (math.sqrt(math.pi) * fraction)

    result = xp.where(small, series, 1.0 - erfc)
    result = xp.copysign(result, v)         # odd function; keeps the sign of -0.0
    result = xp.where(xp.isnan(v), v, result)
    return result.astype(dtype, copy=False)
