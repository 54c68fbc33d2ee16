"""A strict stand-in for CuPy that runs on the CPU, so the GPU code path is tested without a GPU.

``FakeDeviceArray`` is a NumPy array subclass whose type claims to come from the ``cupy``
package: ``backend.get_array_module`` therefore answers with ``FakeCupyModule``, a module that
computes with NumPy but returns ``FakeDeviceArray`` results. An op that keeps to ``xp`` keeps
producing device arrays. The fake is as strict as real CuPy where that is what catches bugs:

* **Only CuPy's names.** The module functions, the ndarray methods and attributes, the
  ``cupy.random`` module and ``cupy.random.Generator``'s methods, and the ``cupyx`` names
  the fake offers are read from the installed ``cupy`` package (it imports without a GPU),
  never from a hand list: a NumPy-only name (``Generator.permutation``, ``ndarray.resize``,
  ``cupy.nanquantile``) raises AttributeError, and a keyword a CuPy function's signature
  lacks raises TypeError.
* **No silent trip to the host.** NumPy functions and ufuncs called on device arrays raise
  (``__array_function__``/``__array_ufunc__``), and so do ``np.asarray``/``np.array``/...
  (``__array__`` raises, and :func:`install` makes NumPy's constructors refuse device
  arrays, as CuPy's "Implicit conversion to a NumPy array is not allowed").
* **Host synchronisations are counted** (:func:`count_syncs`): ``.item()``, ``.get()``,
  ``.tolist()``, ``float()``/``int()``/``bool()``/``format()`` of a device array,
  ``cupy.asnumpy``; each is a wait for the device on a real GPU. Host-to-device copies
  (``cupy.asarray`` of host data, a Python number included) are counted beside them.
* **float32 stays float32** inside :func:`forbid_float64`: any float64 device array made
  there raises, naming the call.
* Indexing a device array with an integer gives a 0-d device array, reductions give 0-d
  device arrays (as CuPy), and a device array is no Python index (CuPy has no ``__index__``).
"""
import contextlib
import inspect
import os
import sys
import threading
import traceback
import types

import numpy as np

try:
    import cupy as _real
    import cupyx as _real_x
    import cupyx.scipy.special as _real_special
except ImportError as exc:    # the test extra installs it: without it the fake cannot be strict
    raise ImportError("tests/fake_cupy.py reads CuPy's names from the installed cupy package: "
                      "pip install -e '.[test]' (cupy-cuda12x imports without a GPU)") from exc

#: the names real CuPy has, read from the installed package
CUPY_NAMES = frozenset(n for n in dir(_real) if not n.startswith("_"))
NDARRAY_NAMES = frozenset(dir(_real.ndarray))
RANDOM_NAMES = frozenset(n for n in dir(_real.random) if not n.startswith("_"))
GENERATOR_NAMES = frozenset(n for n in dir(_real.random.Generator) if not n.startswith("_"))
CUPYX_NAMES = frozenset(n for n in dir(_real_x) if not n.startswith("_"))
SPECIAL_NAMES = frozenset(n for n in dir(_real_special) if not n.startswith("_"))

_state = threading.local()
_HERE = os.path.abspath(__file__)


class _allowed:
    """Inside: NumPy may compute on device arrays (we are in an xp call or an array method)."""

    def __enter__(self):
        _state.depth = getattr(_state, "depth", 0) + 1

    def __exit__(self, *exc):
        _state.depth -= 1
        return False


def _inside():
    return getattr(_state, "depth", 0) > 0


# ------------------------------------------------------------- what is counted

class SyncRecord:
    """What happened inside :func:`count_syncs`: ``syncs`` (device -> host reads) and
    ``uploads`` (host -> device copies), each a list of ``(what, where)``."""

    def __init__(self):
        self.syncs, self.uploads = [], []

    def __repr__(self):
        return (f"{len(self.syncs)} host sync(s): {self.syncs}; "
                f"{len(self.uploads)} upload(s): {self.uploads}")


def _caller():
    """file:line of the first frame outside this file (what to blame)."""
    for frame in reversed(traceback.extract_stack()[:-1]):
        if os.path.abspath(frame.filename) != _HERE:
            return f"{os.path.relpath(frame.filename)}:{frame.lineno}"
    return "?"


def _note(kind, what):
    record = getattr(_state, "record", None)
    if record is not None and not _inside():
        getattr(record, kind).append((what, _caller()))


@contextlib.contextmanager
def count_syncs():
    """``with count_syncs() as record:`` counts host synchronisations and uploads."""
    previous = getattr(_state, "record", None)
    _state.record = record = SyncRecord()
    try:
        yield record
    finally:
        _state.record = previous


@contextlib.contextmanager
def forbid_float64():
    """Inside, making a float64 device array raises (a float32 run must stay float32)."""
    previous = getattr(_state, "no_float64", False)
    _state.no_float64 = True
    try:
        yield
    finally:
        _state.no_float64 = previous


def _check_dtype(array, what):
    if getattr(_state, "no_float64", False) and array.dtype in (np.float64, np.complex128):
        raise AssertionError(f"{what} made a {array.dtype} device array in a float32 run "
                             f"(at {_caller()})")


# ------------------------------------------------------------------ the array

def _plain(value):
    if isinstance(value, FakeDeviceArray):
        return np.ndarray.view(value, np.ndarray)
    if isinstance(value, (tuple, list)):
        return type(value)(_plain(v) for v in value)
    return value


def _host(array):
    return np.ndarray.view(array, np.ndarray)


def _refuse_host_operands(label, args):
    """CuPy refuses NumPy arrays mixed with its own (``TypeError: Unsupported type``)."""
    for a in args:
        if type(a) is np.ndarray or (isinstance(a, (list, tuple))
                                     and any(type(v) is np.ndarray for v in a)):
            raise TypeError(f"{label}: Unsupported type <class 'numpy.ndarray'> (a host array "
                            "mixed with device arrays)")


class FakeDeviceArray(np.ndarray):
    """An array that 'lives on the GPU' as far as minicnn can tell."""

    def __array_finalize__(self, obj):
        _check_dtype(self, "an array operation")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if not _inside():
            raise AssertionError(f"numpy.{ufunc.__name__}.{method} was called directly on a "
                                 "device array (use xp = backend.get_array_module(x))")
        if "out" in kwargs:
            kwargs["out"] = tuple(_plain(o) for o in kwargs["out"])
        result = getattr(ufunc, method)(*_plain(inputs), **kwargs)
        return _wrap(result)

    def __array_function__(self, func, types_, args, kwargs):
        if not _inside():
            raise AssertionError(f"numpy.{func.__name__} was called directly on a device "
                                 "array (use xp = backend.get_array_module(x))")
        with _allowed():
            return _wrap(func(*_plain(args), **{k: _plain(v) for k, v in kwargs.items()}))

    def __array__(self, dtype=None, copy=None):
        if not _inside():
            raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use "
                            "`.get()` to construct a NumPy array explicitly.")
        return _host(self) if dtype is None else _host(self).astype(dtype)

    def __getattribute__(self, name):
        if not name.startswith("__") and name not in NDARRAY_NAMES and not _inside():
            raise AttributeError(f"'cupy.ndarray' object has no attribute '{name}'")
        attr = super().__getattribute__(name)
        if callable(attr) and not name.startswith("__") and name not in _HOST_METHODS:
            def method(*args, **kwargs):
                with _allowed():
                    return _wrap(attr(*args, **kwargs))
            return method
        return attr

    def __getitem__(self, key):
        with _allowed():
            return _wrap(np.ndarray.__getitem__(self, _plain(key)))

    def __setitem__(self, key, value):
        with _allowed():
            np.ndarray.__setitem__(self, _plain(key), _plain(value))

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    # the reads that wait for the device
    def get(self):
        _note("syncs", "get()")
        with _allowed():
            return _host(self).copy()

    def item(self, *args):
        _note("syncs", "item()")
        with _allowed():
            return _host(self).item(*args)

    def tolist(self):
        _note("syncs", "tolist()")
        with _allowed():
            return _host(self).tolist()

    def __bool__(self):
        _note("syncs", "bool()")
        with _allowed():
            return bool(_host(self))

    def __float__(self):
        _note("syncs", "float()")
        with _allowed():
            return float(_host(self))

    def __int__(self):
        _note("syncs", "int()")
        with _allowed():
            return int(_host(self))

    def __format__(self, spec):
        _note("syncs", "format()")
        with _allowed():
            return format(_host(self).item() if self.ndim == 0
                          else _host(self), spec)

    def __index__(self):
        if _inside():
            return int(_host(self))
        raise TypeError("'cupy.ndarray' object cannot be interpreted as an integer (CuPy "
                        "arrays have no __index__)")

    @property
    def device(self):
        return types.SimpleNamespace(id=0)


_HOST_METHODS = frozenset({"get", "item", "tolist"})


def _operator(name):
    base = getattr(np.ndarray, name)

    def op(self, *args):
        _refuse_host_operands(name, args)
        with _allowed():
            return _wrap(base(self, *_plain(args)))
    op.__name__ = name
    return op


for _name in ("add", "radd", "iadd", "sub", "rsub", "isub", "mul", "rmul", "imul",
              "truediv", "rtruediv", "itruediv", "floordiv", "rfloordiv", "ifloordiv", "mod",
              "rmod", "pow", "rpow", "ipow", "matmul", "rmatmul", "neg", "pos", "abs",
              "invert", "and", "rand", "iand", "or", "ror", "ior", "xor", "rxor", "ixor",
              "lshift", "rshift", "ilshift", "irshift", "lt", "le", "gt", "ge", "eq", "ne"):
    setattr(FakeDeviceArray, f"__{_name}__", _operator(f"__{_name}__"))

FakeDeviceArray.__module__ = "cupy._fake"


def to_device(a):
    """A device copy of host data, for test set-up (not counted)."""
    with _allowed():
        return np.array(a).view(FakeDeviceArray)


def to_host(a):
    """A plain NumPy copy of a device array (for assertions; not counted)."""
    with _allowed():
        return np.array(_host(a), copy=True)


def _wrap(value):
    if isinstance(value, np.ndarray) and not isinstance(value, FakeDeviceArray):
        return value.view(FakeDeviceArray)
    if isinstance(value, np.generic):      # CuPy gives 0-d arrays, not scalars
        return np.asarray(value).view(FakeDeviceArray)
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


def _holds_host_data(value):
    if isinstance(value, FakeDeviceArray):
        return False
    if isinstance(value, (list, tuple)):
        return any(_holds_host_data(v) for v in value)
    return isinstance(value, (np.ndarray, np.generic, int, float, complex, bool))


# ----------------------------------------------------------------- the modules

def _accepted_keywords(real):
    """The keyword names a real CuPy callable accepts, or None when it takes any (or its
    signature cannot be read: ufuncs and other compiled callables)."""
    try:
        params = inspect.signature(real).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return frozenset(p.name for p in params)


class _Namespace:
    """A CuPy namespace: only ``names`` (read from the real module), computed by
    ``target`` (a NumPy namespace), array results wrapped as device arrays."""

    def __init__(self, name, names, target, real):
        self.__name__, self._names, self._target, self._real = name, names, target, real

    def __getattr__(self, name):
        if name.startswith("__") or name not in self._names:
            raise AttributeError(f"module '{self.__name__}' has no attribute '{name}'")
        attr = getattr(self._target, name)
        if isinstance(attr, type) or not callable(attr):
            return attr
        accepted = _accepted_keywords(getattr(self._real, name, None))
        label = f"{self.__name__}.{name}"

        def call(*args, **kwargs):
            if accepted is not None and not set(kwargs) <= accepted:
                raise TypeError(f"{label}() got unexpected keyword argument(s) "
                                f"{sorted(set(kwargs) - accepted)}")
            if any(_holds_device_array(a) for a in args):
                _refuse_host_operands(label, args)
            with _allowed():
                result = _wrap(attr(*_plain(args), **{k: _plain(v) for k, v in kwargs.items()}))
            for r in result if isinstance(result, (tuple, list)) else (result,):
                if isinstance(r, FakeDeviceArray):
                    _check_dtype(r, label)
            return result
        if isinstance(attr, np.ufunc):
            return _UFunc(attr, label)
        return call


class _UFunc:
    def __init__(self, ufunc, label):
        self._ufunc, self._label = ufunc, label

    def __call__(self, *args, **kwargs):
        if any(_holds_device_array(a) for a in args):
            _refuse_host_operands(self._label, args)
        with _allowed():
            result = _wrap(self._ufunc(*_plain(args), **kwargs))
        for r in result if isinstance(result, tuple) else (result,):
            if isinstance(r, FakeDeviceArray):
                _check_dtype(r, self._label)
        return result

    def __getattr__(self, name):
        attr = getattr(self._ufunc, name)
        if not callable(attr):
            return attr

        def call(*a, **k):
            with _allowed():
                return _wrap(attr(*a, **k))
        return call


class _Generator(_Namespace):
    """``cupy.random.Generator``: NumPy's, with only the methods CuPy's has."""

    def __init__(self, seed):
        super().__init__("cupy.random.Generator", GENERATOR_NAMES,
                         np.random.default_rng(seed), _real.random.Generator)


class FakeCupyModule(_Namespace):
    """``cupy``: NumPy's functions under CuPy's names, returning device arrays."""

    ndarray = FakeDeviceArray

    def __init__(self):
        super().__init__("cupy", CUPY_NAMES, np, _real)
        self.random = _Namespace("cupy.random", RANDOM_NAMES, np.random, _real.random)
        self.random.default_rng = _Generator
        self.cuda = types.SimpleNamespace(
            runtime=types.SimpleNamespace(getDeviceCount=lambda: 1),
            Device=lambda index=0: contextlib.nullcontext())

    def asarray(self, a, dtype=None, order=None, *, blocking=False):
        if isinstance(a, FakeDeviceArray):
            return a if dtype is None else a.astype(dtype, copy=False)
        if _holds_host_data(a):
            _note("uploads", f"asarray({type(a).__name__})")
        with _allowed():
            result = _wrap(np.array(_plain(a), dtype=dtype))
        _check_dtype(result, "cupy.asarray")
        return result

    def array(self, a, dtype=None, copy=True, order="K", subok=False, ndmin=0, *,
              blocking=False):
        if _holds_host_data(a):
            _note("uploads", f"array({type(a).__name__})")
        with _allowed():
            result = _wrap(np.array(_plain(a), dtype=dtype, copy=copy, ndmin=ndmin))
        _check_dtype(result, "cupy.array")
        return result

    def asnumpy(self, a, stream=None, order="C", out=None, *, blocking=True):
        if isinstance(a, FakeDeviceArray):
            _note("syncs", "asnumpy()")
            return to_host(a)
        return np.asarray(a)

    def get_array_module(self, *args):
        return self if any(isinstance(a, FakeDeviceArray) for a in args) else np


def _fake_cupyx():
    def scatter_add(target, index, values):
        with _allowed():
            np.add.at(_host(target), _plain(index), _plain(values))

    def erf(x):
        from kernels import special
        with _allowed():
            return _wrap(special.erf_cpu(to_host(x)))

    cupyx = types.ModuleType("cupyx")
    cupyx.scatter_add = scatter_add
    cupyx.scipy = types.ModuleType("cupyx.scipy")
    cupyx.scipy.special = types.ModuleType("cupyx.scipy.special")
    cupyx.scipy.special.erf = erf
    assert "scatter_add" in CUPYX_NAMES and "erf" in SPECIAL_NAMES
    return cupyx


# ------------------------------------------------------------------ installing

_HOST_CONSTRUCTORS = ("asarray", "array", "asanyarray", "ascontiguousarray", "asfortranarray")


def _holds_device_array(value):
    if isinstance(value, FakeDeviceArray):
        return True
    return isinstance(value, (list, tuple)) and any(_holds_device_array(v) for v in value)


def refuse_host_conversion(monkeypatch):
    """Make NumPy's array constructors refuse device arrays, as they do on real CuPy
    ("Implicit conversion to a NumPy array is not allowed"). :func:`install` does this."""
    for name in _HOST_CONSTRUCTORS:
        original = getattr(np, name)
        original = getattr(original, "_fake_original", original)

        def strict(a, *args, _original=original, _name=name, **kwargs):
            if not _inside() and _holds_device_array(a):
                raise TypeError(f"numpy.{_name} was called on a device array: implicit "
                                "conversion to a NumPy array is not allowed (use "
                                "backend.to_device(x, 'cpu'))")
            return _original(a, *args, **kwargs)
        strict._fake_original = original
        monkeypatch.setattr(np, name, strict)


def install(monkeypatch):
    """Make minicnn.backend believe CuPy and a GPU are present (the fake ones)."""
    from minicnn import backend
    fake = FakeCupyModule()
    cupyx = _fake_cupyx()
    monkeypatch.setattr(backend, "_cupy", fake)
    monkeypatch.setattr(backend, "_cupy_error", None)
    # device checks queued in this test (backend.check) end with it
    monkeypatch.setattr(backend, "_pending_checks", [])
    monkeypatch.setitem(sys.modules, "cupy", fake)   # for code that looks the module up
    monkeypatch.setitem(sys.modules, "cupyx", cupyx)
    monkeypatch.setitem(sys.modules, "cupyx.scipy", cupyx.scipy)
    monkeypatch.setitem(sys.modules, "cupyx.scipy.special", cupyx.scipy.special)
    refuse_host_conversion(monkeypatch)
    return fake


def record_device_to_host(monkeypatch):
    """Install the fake CuPy and record every ``backend.to_device`` call: the returned list
    gets True for each copy of a device array (to the host), False for a host one."""
    from minicnn import backend
    install(monkeypatch)
    copies = []
    real = backend.to_device

    def counting(array, device):
        copies.append(backend._is_cupy_array(array))
        return real(array, device)
    monkeypatch.setattr(backend, "to_device", counting)
    return copies
