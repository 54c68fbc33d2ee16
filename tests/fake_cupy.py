"""A stand-in for CuPy that runs on the CPU, so the GPU code path can be tested without a GPU.

``FakeDeviceArray`` is a NumPy array subclass whose type claims to come from the ``cupy``
package: ``backend.get_array_module`` therefore answers with ``FakeCupy``, a module that
forwards to NumPy but returns ``FakeDeviceArray`` results. An op that keeps to ``xp`` keeps
producing device arrays; one that calls ``np.`` on data (or pulls data to the host) produces
a plain ``numpy.ndarray`` somewhere, which the tests detect.
"""
import sys
import threading
import types

import numpy as np


_state = threading.local()


class _allowed:
    """Inside: NumPy may compute on device arrays (we are in an xp call or an array method)."""

    def __enter__(self):
        _state.depth = getattr(_state, "depth", 0) + 1

    def __exit__(self, *exc):
        _state.depth -= 1
        return False


def _inside():
    return getattr(_state, "depth", 0) > 0


def _plain(value):
    if isinstance(value, FakeDeviceArray):
        return value.view(np.ndarray)
    if isinstance(value, (tuple, list)):
        return type(value)(_plain(v) for v in value)
    return value


class FakeDeviceArray(np.ndarray):
    """An array that 'lives on the GPU' as far as minicnn can tell.

    NumPy functions called on it directly (``np.maximum(x, 0)``, ``np.concatenate``) raise,
    as they would pull a real CuPy array to the host or fail; operators, methods and the
    fake ``xp`` module work.
    """

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

    def __getattribute__(self, name):
        attr = super().__getattribute__(name)
        if callable(attr) and not name.startswith("__"):
            def method(*args, **kwargs):
                with _allowed():
                    return attr(*args, **kwargs)
            return method
        return attr

    def get(self):                       # cupy's device-to-host copy
        with _allowed():
            return self.view(np.ndarray).copy()

    @property
    def device(self):
        return types.SimpleNamespace(id=0)


def _operator(name):
    base = getattr(np.ndarray, name)

    def op(self, *args):
        with _allowed():
            return base(self, *args)
    op.__name__ = name
    return op


for _name in ("add", "radd", "iadd", "sub", "rsub", "isub", "mul", "rmul", "imul",
              "truediv", "rtruediv", "itruediv", "floordiv", "rfloordiv", "mod", "pow",
              "rpow", "ipow", "matmul", "rmatmul", "neg", "pos", "abs", "invert", "and",
              "rand", "iand", "or", "ror", "ior", "xor", "lt", "le", "gt", "ge", "eq", "ne",
              "getitem", "setitem", "bool", "float", "int", "index"):
    setattr(FakeDeviceArray, f"__{_name}__", _operator(f"__{_name}__"))

FakeDeviceArray.__module__ = "cupy._fake"


def to_device(a):
    return np.asarray(a).view(FakeDeviceArray)


def to_host(a):
    """A plain NumPy copy of a device array (for assertions)."""
    with _allowed():
        return np.array(a.view(np.ndarray), copy=True)


def _wrap(value):
    if isinstance(value, np.ndarray) and not isinstance(value, FakeDeviceArray):
        return value.view(FakeDeviceArray)
    if isinstance(value, np.generic):      # CuPy reductions give 0-d arrays, not scalars
        return np.asarray(value).view(FakeDeviceArray)
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


class _Forward:
    """Forwards attribute access to a NumPy namespace, wrapping array results."""

    def __init__(self, target, name):
        self._target, self.__name__ = target, name

    def __getattr__(self, name):
        attr = getattr(self._target, name)
        if isinstance(attr, types.ModuleType):
            return _Forward(attr, f"{self.__name__}.{name}")
        if isinstance(attr, type) or not callable(attr):
            return attr
        if isinstance(attr, np.ufunc):
            return _UFunc(attr)

        def call(*args, **kwargs):
            with _allowed():
                return _wrap(attr(*args, **kwargs))
        return call


class _UFunc:
    def __init__(self, ufunc):
        self._ufunc = ufunc

    def __call__(self, *args, **kwargs):
        with _allowed():
            return _wrap(self._ufunc(*args, **kwargs))

    def __getattr__(self, name):
        attr = getattr(self._ufunc, name)
        if not callable(attr):
            return attr

        def call(*a, **k):
            with _allowed():
                return _wrap(attr(*a, **k))
        return call


class _Generator(_Forward):
    """``cupy.random.Generator``: NumPy's, less what CuPy's lacks (``permutation``)."""

    _MISSING = ("permutation",)

    def __getattr__(self, name):
        if name in self._MISSING:
            raise AttributeError(f"'cupy.random.Generator' object has no attribute '{name}'")
        return super().__getattr__(name)


class _Random:
    """``cupy.random.default_rng(seed)`` returning device arrays."""

    @staticmethod
    def default_rng(seed):
        return _Generator(np.random.default_rng(seed), "cupy.random.Generator")


class FakeCupyModule(_Forward):
    def __init__(self):
        super().__init__(np, "cupy")
        self.random = _Random()
        self.cuda = types.SimpleNamespace(
            runtime=types.SimpleNamespace(getDeviceCount=lambda: 1),
            Device=lambda index=0: _NullContext())

    def asarray(self, a, dtype=None):
        if isinstance(a, FakeDeviceArray) and dtype is None:
            return a
        with _allowed():
            return _wrap(np.asarray(_plain(a), dtype=dtype))


class _NullContext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _holds_device_array(value):
    if isinstance(value, FakeDeviceArray):
        return True
    return isinstance(value, (list, tuple)) and any(_holds_device_array(v) for v in value)


def refuse_host_conversion(monkeypatch):
    """Make ``np.asarray``/``np.array``/``np.asanyarray`` refuse device arrays, as they do
    on real CuPy ("Implicit conversion to a NumPy array is not allowed")."""
    for name in ("asarray", "array", "asanyarray"):
        original = getattr(np, name)

        def strict(a, *args, _original=original, _name=name, **kwargs):
            if not _inside() and _holds_device_array(a):
                raise TypeError(f"numpy.{_name} was called on a device array: implicit "
                                "conversion to a NumPy array is not allowed (use "
                                "backend.to_device(x, 'cpu'))")
            return _original(a, *args, **kwargs)
        monkeypatch.setattr(np, name, strict)


def install(monkeypatch):
    """Make minicnn.backend believe CuPy and a GPU are present (the fake ones)."""
    from minicnn import backend
    fake = FakeCupyModule()
    monkeypatch.setattr(backend, "_cupy", fake)
    monkeypatch.setattr(backend, "_cupy_error", None)
    monkeypatch.setitem(sys.modules, "cupy", fake)   # for kernels that look the module up

    def scatter_add(target, index, values):      # what cupyx.scatter_add does
        with _allowed():
            np.add.at(target.view(np.ndarray), _plain(index), _plain(values))
        return target
    monkeypatch.setattr(backend, "scatter_add", scatter_add)
    return fake
