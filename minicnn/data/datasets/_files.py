"""Finding dataset files on disk, and reading pickles without running code.

Nothing here downloads anything: minicnn reads files the user already has, and when they
are missing says which files, where it looked, and where to get them.
"""
from __future__ import annotations

import gzip
import io
import os
import pickle

import numpy as np

__all__ = ["find_files", "read_bytes", "safe_pickle_load", "RefusedPickleError"]


def find_files(dataset, root, subdirs, alternatives, source):
    """Locate one file per entry of ``alternatives`` in the first of ``root/<subdir>``
    that holds them all.

    ``alternatives``: for each needed file, a tuple of accepted names (``x`` or
    ``x.gz``). Returns the list of paths. Raises FileNotFoundError naming the missing
    files, every folder searched, and ``source`` (where to get the data).
    """
    if root is None:
        raise ValueError(f"{dataset}: root is required (the folder holding the {dataset} "
                         f"files); get them from {source}")
    root = os.path.expanduser(os.fspath(root))
    folders = [os.path.join(root, s) if s else root for s in subdirs]
    best = None
    for folder in folders:
        found, missing = [], []
        for names in alternatives:
            path = next((os.path.join(folder, n) for n in names
                         if os.path.isfile(os.path.join(folder, n))), None)
            (found if path else missing).append(path or " or ".join(names))
        if not missing:
            return found
        if best is None or len(missing) < len(best[1]):
            best = (folder, missing)
    looked = "\n  ".join(folders)
    raise FileNotFoundError(
        f"{dataset}: missing file(s): {', '.join(best[1])}\n"
        f"looked in:\n  {looked}\n"
        f"minicnn does not download data sets; get the files from {source} and put them "
        f"in one of those folders (or pass root=/ --data-dir to where they are)")


def read_bytes(path):
    """The file's content, gunzipped when it is a gzip file (detected by its magic bytes,
    not by its name)."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (EOFError, OSError, gzip.BadGzipFile) as exc:
            raise ValueError(f"{path}: corrupt or truncated gzip file ({exc})") from None
    return raw


# ------------------------------------------------------------ safe unpickling

class RefusedPickleError(pickle.UnpicklingError):
    """A pickle asked for something other than plain data."""


def _latin1_encode(text, encoding="latin1"):
    # Python 3 writes bytes into protocol-2 pickles as _codecs.encode(text, "latin1").
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise RefusedPickleError(f"_codecs.encode called with encoding {encoding!r}")
    return text.encode("latin1")


def _allowed_globals():
    """The only callables a data pickle may name: NumPy's array/dtype rebuilders."""
    allowed = {("_codecs", "encode"): _latin1_encode,
               ("numpy", "ndarray"): np.ndarray,
               ("numpy", "dtype"): np.dtype}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = _reconstruct
        allowed[(module, "scalar")] = _scalar
    for module in ("numpy.core.numeric", "numpy._core.numeric"):
        allowed[(module, "_frombuffer")] = _frombuffer
    return allowed


def _reconstruct(subtype, shape, dtype):
    if subtype is not np.ndarray:
        raise RefusedPickleError(f"array subclass {subtype!r} refused")
    return np.ndarray.__new__(np.ndarray, shape, dtype)


def _scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise RefusedPickleError(f"numpy scalar of dtype {dtype!r} refused")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _frombuffer(buffer, dtype, shape, order):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise RefusedPickleError(f"array of dtype {dtype!r} refused")
    return np.frombuffer(buffer, dtype=dtype).reshape(shape, order=order)


class _DataUnpickler(pickle.Unpickler):
    """Admits only NumPy arrays, dtypes, and Python's own containers, strings and numbers
    (those need no global lookup at all). Any other class or function -- the way a
    malicious pickle runs code -- raises RefusedPickleError before anything is called."""

    def __init__(self, file, **kwargs):
        super().__init__(file, **kwargs)
        self._allowed = _allowed_globals()

    def find_class(self, module, name):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise RefusedPickleError(f"refusing to load '{module}.{name}': only NumPy arrays "
                                     "and plain Python data are allowed") from None


def safe_pickle_load(path):
    """Unpickle ``path`` with the restricted unpickler (``encoding="bytes"`` as the CIFAR
    "python version" files, written by Python 2, need)."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        data = _DataUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except RefusedPickleError as exc:
        raise RefusedPickleError(f"{path}: {exc}") from None
    except Exception as exc:
        raise ValueError(f"{path}: not a readable pickle file ({type(exc).__name__}: "
                         f"{exc})") from None
    if isinstance(data, np.ndarray) and data.dtype.hasobject:
        raise RefusedPickleError(f"{path}: object arrays are refused")
    return data
