"""``minicnn.save`` / ``minicnn.load``: checkpoints that never run code when loaded.

A checkpoint is one ``.npz`` file (a zip of ``.npy`` arrays, NumPy's own format):

* every array or Tensor in the object is stored as its own entry ``a0``, ``a1``, ...;
* the object's structure -- nested dicts, lists, tuples, numbers, strings, None, and
  where each array goes -- is stored as JSON text in the entry ``__minicnn__``.

Loading reads the JSON with ``json`` and the arrays with ``numpy.load(...,
allow_pickle=False)``: neither can execute anything, unlike ``pickle`` (which
``torch.load`` used by default for years). The price: only plain data can be saved,
which is all a state dict, an optimizer's state, a scheduler's state, an RNG state or an
epoch counter are.

Saving is atomic: the file is written under a temporary name in the same folder, flushed
to disk (``fsync``), then renamed over the target with ``os.replace``. A crash or a full
disk during a save leaves the previous checkpoint as it was.
"""
from __future__ import annotations

import json
import math
import os
import secrets
import zipfile

import numpy as np

from .. import backend
from ..autograd import Tensor

__all__ = ["save", "load", "CheckpointError"]

FORMAT = "minicnn-checkpoint"
VERSION = 1
_STRUCTURE = "__minicnn__"


class CheckpointError(ValueError):
    """A file that is not a readable minicnn checkpoint."""


# ---------------------------------------------------------------------- save

def save(obj, f):
    """Write ``obj`` to ``f`` (a path, written atomically, or a binary file object).

    ``obj`` may nest dicts (any str/int/float/bool/None keys), lists and tuples of:
    minicnn Tensors, NumPy (or CuPy) arrays and scalars, Python numbers (ints of any
    size), strings, booleans and None. Anything else raises TypeError naming where it is.
    """
    arrays = {}
    structure = {"format": FORMAT, "version": VERSION,
                 "object": _encode(obj, arrays, "obj")}
    text = json.dumps(structure, allow_nan=True).encode("utf-8")
    arrays[_STRUCTURE] = np.frombuffer(text, dtype=np.uint8)
    if hasattr(f, "write"):
        np.savez(f, **arrays)
        return
    path = os.fspath(f)
    folder = os.path.dirname(os.path.abspath(path))
    # Not tempfile.mkstemp, which makes the file 0600: created like any new file (0644
    # under the usual umask), the checkpoint has the mode of the run's other files.
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{secrets.token_hex(8)}.npz.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)           # atomic: readers see the old file or the new one
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_folder(folder)


def _fsync_folder(folder):
    """Make the rename itself durable (POSIX); harmless where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _encode(value, arrays, where):
    """JSON for ``value``; arrays go to ``arrays`` and are referenced by name.

    JSON objects always carry a tag (``dict``, ``tuple``, ``array``, ...), so a plain JSON
    list is a Python list and a plain JSON number/string/bool/null is itself.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"float": repr(value)}
    if isinstance(value, Tensor):
        return {"tensor": _store(value.array, arrays, where),
                "requires_grad": bool(value.requires_grad)}
    if isinstance(value, (np.ndarray, np.generic)) or backend._is_cupy_array(value):
        name = _store(value, arrays, where)
        return {"scalar" if isinstance(value, np.generic) else "array": name}
    if isinstance(value, dict):
        items = []
        for key, item in value.items():
            if not (key is None or isinstance(key, (str, int, float, bool))):
                raise TypeError(f"save: dict key {key!r} at {where} is a "
                                f"{type(key).__name__}; keys must be str, int, float, bool "
                                "or None")
            items.append([_encode(key, arrays, where),
                          _encode(item, arrays, f"{where}[{key!r}]")])
        return {"dict": items}
    if isinstance(value, list):
        return [_encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, tuple):
        return {"tuple": [_encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(value)]}
    raise TypeError(f"save: cannot store a {type(value).__module__}.{type(value).__name__} "
                    f"at {where}; checkpoints hold only Tensors, arrays, numbers, strings, "
                    "bools, None, and dicts/lists/tuples of them (call .state_dict() on "
                    "modules and optimizers)")


def _store(value, arrays, where):
    array = backend.to_device(value, "cpu") if not isinstance(value, np.generic) \
        else np.asarray(value)
    if array.dtype.hasobject or array.dtype.kind in "USV":
        raise TypeError(f"save: the array at {where} has dtype {array.dtype}; only numeric "
                        "and boolean arrays can be saved")
    name = f"a{len(arrays)}"
    arrays[name] = array
    return name


# ---------------------------------------------------------------------- load

def load(f, map_location=None):
    """Read what :func:`save` wrote. Tensors come back as Tensors (on ``map_location``,
    default the CPU), arrays as NumPy arrays, everything else as saved.

    Raises :class:`CheckpointError` (naming the file and the problem) for a file that is
    truncated, corrupt, not a minicnn checkpoint, or holds pickled/object data.
    """
    name = getattr(f, "name", None) if hasattr(f, "read") else os.fspath(f)
    label = repr(name) if name else "the checkpoint"
    if not hasattr(f, "read"):
        if not os.path.exists(name):
            raise FileNotFoundError(f"load: no such file: {name!r}")
        if os.path.isdir(name):
            raise IsADirectoryError(f"load: {name!r} is a folder, not a checkpoint file")
    device = backend.Device(map_location) if map_location is not None else None
    _check_signature(f, label)
    try:
        npz = np.load(f, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise CheckpointError(f"load: {label} holds a single array (.npy), not a minicnn "
                                  "checkpoint")
        with npz:
            files = set(npz.files)
            if _STRUCTURE not in files:
                raise CheckpointError(f"load: {label} is a .npz file but not a minicnn "
                                      f"checkpoint (no '{_STRUCTURE}' entry; entries: "
                                      f"{sorted(files)[:8]})")
            structure = _read_structure(npz[_STRUCTURE], label)
            return _decode(structure["object"], npz, files, device, label)
    except CheckpointError:
        raise
    except zipfile.BadZipFile as exc:
        raise CheckpointError(f"load: {label} is corrupt or truncated (bad zip archive: "
                              f"{exc})") from None
    except (EOFError, OSError, ValueError, KeyError, zipfile.LargeZipFile) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        reason = str(exc)
        if "allow_pickle" in reason:
            reason = ("it contains pickled (object) data, which minicnn refuses to load "
                      "because unpickling can run arbitrary code")
        raise CheckpointError(f"load: cannot read {label}: {reason}") from None


def _check_signature(f, label):
    """Refuse anything that is not a zip archive before NumPy tries to interpret it."""
    if hasattr(f, "read"):
        position = f.tell()
        head = f.read(4)
        f.seek(position)
    else:
        with open(f, "rb") as handle:
            head = handle.read(4)
    if head in (b"PK\x03\x04", b"PK\x05\x06"):
        return
    if not head:
        raise CheckpointError(f"load: {label} is empty (0 bytes)")
    if head[:1] == b"\x80":
        what = ("a Python pickle (e.g. written by torch.save or pickle.dump); minicnn never "
                "unpickles, as that can run arbitrary code")
    elif head.startswith(b"\x93NUM"):
        what = "a single .npy array"
    else:
        what = f"not a .npz archive (it starts with bytes {head!r}, not the zip signature)"
    raise CheckpointError(f"load: {label} is not a minicnn checkpoint: {what}")


def _read_structure(entry, label):
    if not isinstance(entry, np.ndarray) or entry.dtype != np.uint8 or entry.ndim != 1:
        raise CheckpointError(f"load: {label} has a damaged structure entry (expected the "
                              f"JSON text as a uint8 array, got {type(entry).__name__})")
    try:
        structure = json.loads(entry.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"load: {label} has a damaged structure entry ({exc})") from None
    if not isinstance(structure, dict) or structure.get("format") != FORMAT:
        raise CheckpointError(f"load: {label} is not a minicnn checkpoint (format "
                              f"{structure.get('format') if isinstance(structure, dict) else None!r})")
    if structure.get("version", 0) > VERSION:
        raise CheckpointError(f"load: {label} was written by a newer minicnn (format version "
                              f"{structure['version']}; this one reads up to {VERSION})")
    if "object" not in structure:
        raise CheckpointError(f"load: {label} has no object in its structure entry")
    return structure


def _decode(node, npz, files, device, label):
    if isinstance(node, list):
        return [_decode(v, npz, files, device, label) for v in node]
    if not isinstance(node, dict):
        return node
    if "dict" in node:
        return {_decode(k, npz, files, device, label): _decode(v, npz, files, device, label)
                for k, v in node["dict"]}
    if "tuple" in node:
        return tuple(_decode(v, npz, files, device, label) for v in node["tuple"])
    if "float" in node:
        return float(node["float"])
    for kind in ("tensor", "array", "scalar"):
        if kind in node:
            name = node[kind]
            if name not in files:
                raise CheckpointError(f"load: {label} is damaged: array entry {name!r} "
                                      "is missing")
            array = npz[name]
            if not isinstance(array, np.ndarray):
                raise CheckpointError(f"load: {label} is damaged: entry {name!r} is not a "
                                      ".npy array")
            if kind == "scalar":
                return array[()]
            if device is not None:
                array = backend.to_device(array, device)
            if kind == "array":
                return array
            t = Tensor._wrap(array)
            return t.requires_grad_(True) if node.get("requires_grad") and \
                array.dtype.kind == "f" else t
    raise CheckpointError(f"load: {label} is damaged: unknown structure node {node!r}")

