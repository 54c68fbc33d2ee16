"""Where arrays live: the array module (NumPy or CuPy), devices, dtypes and random numbers.

This is the only file in minicnn that imports CuPy, and it does so lazily: a machine
without CuPy or without a GPU runs everything on ``"cpu"`` and only fails, with a clear
message, when ``"cuda"`` is asked for.

Every op finds its array module from its inputs::

    xp = backend.get_array_module(x)      # numpy or cupy
    y = xp.maximum(x, 0)

so one code path serves both.
"""
from __future__ import annotations

import threading

import numpy as np

__all__ = [
    "get_array_module", "Device", "Generator", "device", "is_cuda_available", "cupy",
    "to_device", "device_of", "get_default_dtype", "set_default_dtype",
    "manual_seed", "get_rng", "get_rng_state", "set_rng_state", "erf",
    "check", "flush_checks", "fetch",
    "float16", "float32", "float64", "int8", "int32", "int64", "uint8", "bool_",
]

float16, float32, float64 = np.float16, np.float32, np.float64
int8, int32, int64, uint8, bool_ = np.int8, np.int32, np.int64, np.uint8, np.bool_


# --------------------------------------------------------------------------- CuPy

_cupy = None          # the cupy module once imported successfully
_cupy_error = None    # why it could not be used, once we have tried


def _load_cupy():
    """Import CuPy on first use and check that a GPU is visible; remember the outcome."""
    global _cupy, _cupy_error
    if _cupy is not None or _cupy_error is not None:
        return _cupy
    try:
        import cupy as cp  # noqa: F401  the one place minicnn imports cupy
    except Exception as exc:  # ImportError, or a broken CUDA install raising anything
        _cupy_error = (f"CuPy is not installed or failed to import ({exc.__class__.__name__}: "
                       f"{exc}); install it with `pip install minicnn[gpu]` "
                       "(the cupy-cudaXXx wheel matching your CUDA)")
        return None
    try:
        count = cp.cuda.runtime.getDeviceCount()
    except Exception as exc:
        count, reason = 0, f"{exc.__class__.__name__}: {exc}"
    else:
        reason = "no CUDA device was found"
    if count == 0:
        _cupy_error = f"CuPy is installed but no GPU can be used ({reason})"
        return None
    _cupy = cp
    return _cupy


def is_cuda_available():
    """True when CuPy imports and at least one CUDA device is visible."""
    return _load_cupy() is not None


def cupy():
    """The cupy module, or a RuntimeError that says what is missing."""
    cp = _load_cupy()
    if cp is None:
        raise RuntimeError(f"device 'cuda' was requested but {_cupy_error}")
    return cp


def _is_cupy_array(value):
    # Decided from the type's module so that cupy is never imported just to ask.
    return type(value).__module__.split(".")[0] == "cupy"


def get_array_module(*values):
    """Return ``cupy`` if any value is a CuPy array (or a Tensor holding one), else ``numpy``.

    Tensors are recognised by their ``array`` attribute; anything else (Python numbers,
    None, NumPy arrays) counts as host data.
    """
    for value in values:
        array = getattr(value, "array", value)
        if _is_cupy_array(array):
            return cupy()
    return np


# ------------------------------------------------------------------------ devices

class Device:
    """A place for arrays: ``Device("cpu")``, ``Device("cuda")``, ``Device("cuda:1")``."""

    __slots__ = ("type", "index")

    def __init__(self, spec="cpu"):
        if isinstance(spec, Device):
            self.type, self.index = spec.type, spec.index
            return
        if not isinstance(spec, str):
            raise TypeError(f"device: expected a string such as 'cpu' or 'cuda:0', got {spec!r}")
        name, _, index = spec.strip().lower().partition(":")
        if name not in ("cpu", "cuda"):
            raise ValueError(f"device: expected 'cpu', 'cuda' or 'cuda:N', got {spec!r}")
        if index and (name == "cpu" or not index.isdigit()):
            raise ValueError(f"device: expected 'cpu', 'cuda' or 'cuda:N', got {spec!r}")
        self.type = name
        self.index = int(index) if index else (0 if name == "cuda" else None)

    def __eq__(self, other):
        try:
            other = Device(other)
        except (TypeError, ValueError):
            return NotImplemented
        return self.type == other.type and self.index == other.index

    def __hash__(self):
        return hash((self.type, self.index))

    def __str__(self):
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self):
        return f"device(type='{self.type}'" + ("" if self.index is None else f", index={self.index}") + ")"


def device(spec="cpu"):
    """``minicnn.device("cuda:0")``, as ``torch.device``."""
    return Device(spec)


def device_of(array):
    """The Device an array lives on."""
    if _is_cupy_array(array):
        return Device(f"cuda:{array.device.id}")
    return Device("cpu")


def to_device(array, dev):
    """Return ``array`` on device ``dev`` (no copy when it is already there)."""
    dev = Device(dev)
    if dev.type == "cpu":
        if _is_cupy_array(array):
            flush_checks()
            return array.get()
        return np.asarray(array)
    cp = cupy()
    if dev.index >= cp.cuda.runtime.getDeviceCount():
        raise RuntimeError(f"device {dev} was requested but only "
                           f"{cp.cuda.runtime.getDeviceCount()} CUDA device(s) exist")
    with cp.cuda.Device(dev.index):
        if _is_cupy_array(array) and array.device.id == dev.index:
            return array
        return cp.asarray(array)


# ------------------------------------------------------------------------- dtypes

_default_dtype = np.dtype(np.float32)


def get_default_dtype():
    """The float dtype new tensors get when none is given (float32 unless changed)."""
    return _default_dtype


def set_default_dtype(dtype):
    """Change the default float dtype; only float32 and float64 are accepted."""
    global _default_dtype
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"set_default_dtype: expected float32 or float64, got {dtype}")
    _default_dtype = dtype


# ------------------------------------------------------------------ random numbers
#
# One generator for every device: Philox4x32-10 (kernels/philox.py) keyed by the seed.
# Each draw takes the next blocks of its counter stream and computes them with the array
# module of the device it draws for, so its whole state is (seed, counter): a checkpoint
# holds it on any device, and a seed gives the same dropout masks, initial weights and
# permutations on the CPU and on a GPU.

_MAX_SEED = 2 ** 64 - 1
_FAST_DRAW = 4096         # words from which the CPU draws with the compiled loop


#: standard_normal draws this many pairs at a time (its float64 temporaries: 32 MB)
NORMAL_CHUNK = 1 << 20


class Generator:
    """minicnn's random generator: NumPy's ``Generator`` methods that minicnn uses, drawn
    from a Philox4x32-10 stream keyed by ``seed``; ``counter`` counts the 128-bit blocks
    drawn so far. ``get_rng(xp)`` gives the global one for array module ``xp``; all of
    them share one (seed, counter).

    Every draw starts at a fresh block, and turns words into numbers the same way on
    every device:

    * ``random``: float32 ``(w >> 8) · 2⁻²⁴``; float64 ``((w₀ >> 5) · 2²⁶ + (w₁ >> 6)) · 2⁻⁵³``
      (NumPy's recipe), in [0, 1);
    * ``standard_normal``: Box–Muller on float64 uniforms, ``√(-2 ln(1 - u₀)) ·
      (cos, sin)(2π u₁)``, then the dtype asked for (the bits and uniforms are the same on
      every device; a GPU's cos and log may differ from the CPU's in the last bit);
    * ``integers``: the high 64 bits of ``u · (high - low)`` for a 64-bit word u (bias
      below (high - low) / 2⁶⁴);
    * ``permutation``: a stable argsort of 64-bit words.

    Other NumPy distributions (``beta``, ``choice``, ...) are offered on the host only, by
    a NumPy generator seeded from the next block of the stream.
    """

    def __init__(self, xp=np, state=None):
        self.xp = xp
        self.state = state if state is not None else {"seed": 0, "counter": 0}

    # ------------------------------------------------------------------ words
    def _words(self, nwords):
        """The next ``nwords`` uint32 words of the stream, on this generator's device."""
        from kernels import dispatch, numba_philox, philox
        with _rng_lock:
            start = self.state["counter"]
            self.state["counter"] = start + -(-nwords // 4)
        seed = self.state["seed"]
        key = (seed & 0xFFFFFFFF, seed >> 32)
        if self.xp is np and nwords >= _FAST_DRAW and dispatch.get_kernels() == "auto":
            return numba_philox.random_bits(key, start, nwords)
        return philox.random_bits(self.xp, key, start, nwords)

    def _uint64(self, n):
        words = self._words(2 * n).reshape(n, 2).astype(np.uint64)
        return (words[:, 0] << np.uint64(32)) | words[:, 1]

    def _finish(self, flat, size):
        if size is None:
            return flat[0] if self.xp is np else flat.reshape(())
        return flat.reshape(_size(size))

    # ---------------------------------------------------------- distributions
    def random(self, size=None, dtype=np.float64):
        """Uniform on [0, 1), float32 or float64."""
        dtype = np.dtype(dtype)
        n = _count(size)
        if dtype == np.float32:
            u = (self._words(n) >> np.uint32(8)).astype(np.float32) * np.float32(2.0 ** -24)
        elif dtype == np.float64:
            w = self._words(2 * n).reshape(n, 2)
            top = (w[:, 0] >> np.uint32(5)).astype(np.float64) * 2.0 ** 26
            u = (top + (w[:, 1] >> np.uint32(6)).astype(np.float64)) * 2.0 ** -53
        else:
            raise TypeError(f"random: dtype must be float32 or float64, got {dtype}")
        return self._finish(u, size)

    def standard_normal(self, size=None, dtype=np.float64):
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise TypeError(f"standard_normal: dtype must be float32 or float64, got {dtype}")
        n = _count(size)
        pairs = -(-n // 2)
        xp = self.xp
        z = xp.empty((pairs, 2), dtype)
        # NORMAL_CHUNK pairs at a time, so that the float64 temporaries stay small (a
        # 25088x4096 weight drawn at once took 3.7 GB); each pair uses one counter's
        # four words, so the chunks draw exactly the numbers one draw would
        for p0 in range(0, pairs, NORMAL_CHUNK):
            p1 = min(pairs, p0 + NORMAL_CHUNK)
            u = self.random(2 * (p1 - p0)).reshape(p1 - p0, 2)
            radius = xp.sqrt(-2.0 * xp.log(1.0 - u[:, 0]))      # 1 - u in (0, 1]
            angle = (2.0 * np.pi) * u[:, 1]
            z[p0:p1, 0] = radius * xp.cos(angle)                 # rounded to dtype here
            z[p0:p1, 1] = radius * xp.sin(angle)
        return self._finish(z.reshape(-1)[:n], size)

    def normal(self, loc=0.0, scale=1.0, size=None):
        return loc + scale * self.standard_normal(size)

    def uniform(self, low=0.0, high=1.0, size=None):
        return low + (high - low) * self.random(size)

    def integers(self, low, high=None, size=None, dtype=np.int64, endpoint=False):
        """Integers uniform on [low, high) (``endpoint=True``: [low, high])."""
        from kernels import philox
        if high is None:
            low, high = 0, low
        low, high = int(low), int(high) + bool(endpoint)
        if not -2 ** 63 <= low < high <= 2 ** 63:
            raise ValueError(f"integers: expected low < high within int64, got low={low}, "
                             f"high={high}")
        words = self._uint64(_count(size))
        span = high - low
        offset = words if span == 2 ** 64 else philox.mulhi64(words, span)
        # low + offset in wrapping 64-bit arithmetic, read back as signed
        values = (offset + np.uint64(low % 2 ** 64)).astype(np.int64)
        return self._finish(values.astype(dtype), size)

    def permutation(self, x):
        """A shuffled ``arange(x)``, or a shuffled copy of the array ``x`` along axis 0."""
        n = int(x) if isinstance(x, (int, np.integer)) else len(x)
        order = self.xp.argsort(self._uint64(n), kind="stable")
        return order if isinstance(x, (int, np.integer)) else x[order]

    def __getattr__(self, name):
        if name.startswith("_") or not hasattr(np.random.Generator, name):
            raise AttributeError(f"'Generator' object has no attribute {name!r}")
        if self.xp is not np:
            raise AttributeError(f"Generator.{name} is offered on the host only")
        seed = [int(w) for w in self._words(4)]
        return getattr(np.random.Generator(np.random.PCG64(seed)), name)


def _size(size):
    return (int(size),) if isinstance(size, (int, np.integer)) else tuple(int(s) for s in size)


def _count(size):
    return 1 if size is None else int(np.prod(_size(size), dtype=np.int64))


_rng_lock = threading.Lock()
_rng_state = {"seed": 0, "counter": 0}
_rngs = {}


def manual_seed(seed):
    """Seed minicnn's generator (every device): the stream restarts at block 0 of the
    key ``seed`` (0 <= seed < 2**64, as torch)."""
    if (not isinstance(seed, (int, np.integer)) or isinstance(seed, bool)
            or not 0 <= seed <= _MAX_SEED):
        raise ValueError(f"manual_seed: expected an integer in [0, 2**64), got {seed!r}")
    with _rng_lock:
        _rng_state.update(seed=int(seed), counter=0)


def get_rng(xp=np):
    """The seeded generator drawing arrays of module ``xp`` (numpy or cupy); one stream."""
    key = xp.__name__
    if key not in _rngs or _rngs[key].xp is not xp:
        _rngs[key] = Generator(xp, _rng_state)
    return _rngs[key]


def get_rng_state():
    """The generator's state as plain data (JSON-able), for checkpoints:
    ``{"seed": int, "counter": int}`` (blocks drawn)."""
    with _rng_lock:
        return dict(_rng_state)


def set_rng_state(state):
    """Restore what :func:`get_rng_state` returned."""
    if "counter" not in state:
        raise ValueError("set_rng_state: this state has no 'counter' (a checkpoint written "
                         "before minicnn's generator became Philox); it cannot resume "
                         "the random stream exactly")
    with _rng_lock:
        _rng_state.update(seed=int(state["seed"]), counter=int(state["counter"]))


# ----------------------------------------------------------- reading device values
#
# A read of a GPU value (``.item()``, ``.get()``, ``bool(x)``) waits until the device has
# finished everything queued before it: a few such waits per training step keep the GPU
# idle while Python catches up. So argument checks that need the data (a class index out
# of range, a NaN) are queued on the device and read together with the next value that
# is read anyway, and the Trainer reads its running numbers once per progress-bar refresh.

_pending_checks = []          # (flag, raise_error) queued by check() for device arrays
_MAX_PENDING = 256            # read them anyway after this many, so the queue stays small


def check(flag, raise_error):
    """Call ``raise_error()`` (which raises) if the 0-d boolean array ``flag`` is true.

    A host flag is checked now. A device flag is queued and checked at the next
    :func:`flush_checks` (``Tensor.item()``, the Trainer's reads, :func:`fetch`), as CUDA
    reports a device-side assert at the next synchronisation: the error then names the
    op and the value, one read later than on the CPU.
    """
    if not _is_cupy_array(flag):
        if bool(flag):
            raise_error()
        return
    _pending_checks.append((flag, raise_error))
    if len(_pending_checks) >= _MAX_PENDING:
        flush_checks()


def flush_checks():
    """Read every queued device check (one transfer) and raise the first that failed."""
    if not _pending_checks:
        return
    pending = _pending_checks[:]
    del _pending_checks[:len(pending)]
    xp = get_array_module(pending[0][0])
    failed = xp.stack([flag for flag, _ in pending]).get()
    for (_, raise_error), bad in zip(pending, failed):
        if bad:
            raise_error()


def fetch(arrays):
    """Host (NumPy) copies of ``arrays`` (small device or host arrays, e.g. the losses of
    the last steps): one transfer per dtype, after :func:`flush_checks`."""
    flush_checks()
    out = [None] * len(arrays)
    groups = {}
    for i, a in enumerate(arrays):
        if _is_cupy_array(a):
            groups.setdefault(a.dtype, []).append(i)
        else:
            out[i] = np.asarray(a)
    for indices in groups.values():
        xp = get_array_module(arrays[indices[0]])
        host = xp.concatenate([arrays[i].reshape(-1) for i in indices]).get()
        start = 0
        for i in indices:
            size = arrays[i].size
            out[i] = host[start:start + size].reshape(arrays[i].shape)
            start += size
    return out


# ------------------------------------------------------------ array-module helpers

def scatter_add(target, index, values):
    """``target[index] += values`` where repeated indices add up (NumPy's ``add.at``).

    CuPy spells this ``cupyx.scatter_add``; this is the one place that knows.
    """
    if _is_cupy_array(target):
        import cupyx  # cupy's companion module, only reachable with cupy installed
        cupyx.scatter_add(target, index, values)
    else:
        np.add.at(target, index, values)
    return target


def erf(array):
    """The error function, elementwise, on the device ``array`` lives on (NumPy has none).

    CPU: numba's compiled ``math.erf`` (kernels/special.py). GPU:
    ``cupyx.scipy.special.erf``; should cupyx be missing (a CPU stand-in for CuPy), the
    portable series of kernels/special.py, written with the array module's arithmetic.
    """
    from kernels import special
    if not _is_cupy_array(array):
        return special.erf_cpu(array)
    try:
        import cupyx.scipy.special  # cupy's companion module, only with cupy installed
    except ImportError:
        return special.erf_reference(get_array_module(array), array)
    return cupyx.scipy.special.erf(array)
