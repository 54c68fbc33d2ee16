"""``minicnn.load_torch_checkpoint``: PyTorch ``.pt``/``.pth`` files read into NumPy arrays,
without importing torch and without running code from the file.

What ``torch.save`` writes (the default since PyTorch 1.6) is a zip archive with one top
folder (its name varies: ``archive``, the file's stem, ...)::

    <top>/data.pkl        the object's structure, a pickle
    <top>/data/<key>      one raw storage per key: the elements, back to back
    <top>/byteorder       "little" or "big": how those elements were written
    <top>/version, ...    bookkeeping this reader does not need

A tensor in ``data.pkl`` is a call ``torch._utils._rebuild_tensor_v2(storage,
storage_offset, size, stride, ...)`` whose storage is a *persistent id*
``('storage', torch.FloatStorage, key, location, numel)``. Several tensors may share one
storage (views, slices, transposes), so each is rebuilt from its offset and strides.

Pickle is a small program: every class or function it names is looked up (``find_class``)
and called. ``torch.load(weights_only=False)`` will call anything, which is how a malicious
checkpoint runs a command. This reader's unpickler answers ``find_class`` only for the
names a tensor file needs -- the tensor and parameter rebuilders, ``OrderedDict``, the
storage types and dtypes, ``_codecs.encode`` for bytes -- each bound to this module's own
harmless code, and refuses every other name with :class:`UnsafeCheckpointError` before
anything is called.

Older files (PyTorch < 1.6, or ``_use_new_zipfile_serialization=False``) are the *legacy*
format: several pickles in a row, then the storages, always little-endian. torchvision's
released detection weights (e.g. ``maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth``) date from
2019, before the zip format, so this format is read too, by the same restricted
unpickler. Only the tar format of PyTorch < 0.4 is refused (re-save it with a current
``torch.save``).

Element types: float32/64 and float16 stay as they are; bfloat16, which NumPy lacks,
becomes float32 (exactly: a bfloat16 is the top half of a float32) with a warning; the
integer, bool and complex types map to NumPy's. Quantized and float8 tensors are refused.
"""
from __future__ import annotations

import _compat_pickle
import collections
import io
import os
import pickle
import tarfile
import warnings
import zipfile

import numpy as np

__all__ = ["load_torch_checkpoint", "TorchCheckpointError", "UnsafeCheckpointError"]

_WHO = "load_torch_checkpoint"
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C     # the first pickle of a legacy torch.save file
_LEGACY_PROTOCOL = 1001


class TorchCheckpointError(ValueError):
    """A file that is not a readable PyTorch checkpoint (truncated, corrupt, ...)."""


class UnsafeCheckpointError(pickle.UnpicklingError):
    """The checkpoint's pickle names a class or function other than tensor plumbing."""


def load_torch_checkpoint(path):
    """Read the PyTorch checkpoint at ``path`` (what ``torch.save`` wrote).

    Returns what ``torch.load(path, map_location="cpu")`` would, with every tensor a
    NumPy array of its own (C-contiguous, writeable, native byte order; tensors that
    shared a storage in the file no longer share memory): a state dict comes back as the
    ``OrderedDict`` of ``name -> ndarray`` in the file's order, ready for
    ``model.load_state_dict``. A training checkpoint such as ``{"model": state_dict,
    "epoch": 3}`` comes back with that nesting (pass ``ckpt["model"]`` on); plain Python
    values (numbers, strings, lists, ...) come back as themselves. ``nn.Parameter`` s
    become arrays like any tensor; a scalar tensor is a 0-d array.

    Raises :class:`UnsafeCheckpointError` (a ``pickle.UnpicklingError``) naming the file
    and the refused name when the pickle asks for any class or function beyond tensors and
    containers -- e.g. a whole pickled ``nn.Module``, or a payload that would run a
    command -- and :class:`TorchCheckpointError` for files that cannot be read.
    """
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(f"{_WHO}: path should be a file path (str or os.PathLike), got "
                        f"{type(path).__name__}")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{_WHO}: no such file: {path!r}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{_WHO}: {path!r} is a folder, not a checkpoint file")
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        raise TorchCheckpointError(f"{_WHO}: {path!r} is empty (0 bytes)")
    if zipfile.is_zipfile(path):
        reader = _ZipReader(path)
    elif head[:1] == b"\x80":
        reader = _LegacyReader(path)
    elif head[:4] == b"PK\x03\x04":
        raise TorchCheckpointError(f"{_WHO}: {path!r} is a damaged zip archive (truncated, "
                                   "or not written completely)")
    elif tarfile.is_tarfile(path):
        raise TorchCheckpointError(f"{_WHO}: {path!r} is in the tar format of PyTorch < 0.4, "
                                   "which this reader does not handle; load it with that "
                                   "torch and re-save it with a current torch.save")
    else:
        raise TorchCheckpointError(f"{_WHO}: {path!r} is not a PyTorch checkpoint: it is "
                                   f"neither a zip archive nor a pickle (it starts with "
                                   f"{head!r})")
    try:
        obj = reader.read()
    except UnsafeCheckpointError as exc:
        if repr(path) in str(exc):
            raise
        raise UnsafeCheckpointError(f"{exc} (file {path!r})") from None
    except TorchCheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError,
            AttributeError, zipfile.BadZipFile, OSError, RecursionError) as exc:
        raise TorchCheckpointError(f"{_WHO}: cannot read {path!r}: {type(exc).__name__}: "
                                   f"{exc}") from None
    if reader.widened_bfloat16:
        warnings.warn(f"{_WHO}: {reader.widened_bfloat16} bfloat16 tensor(s) in {path!r} "
                      "were converted to float32 (exactly; NumPy has no bfloat16)",
                      stacklevel=2)
    return obj


# ----------------------------------------------------------------- element types

# torch's storage class name -> NumPy element type ("bfloat16": read as uint16, widened).
_STORAGE_DTYPES = {
    "FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8",
    "BoolStorage": "bool", "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128",
}
# torch dtypes as _rebuild_tensor_v3 names them (the types without a storage class).
_TORCH_DTYPES = {
    "float32": "float32", "float64": "float64", "float16": "float16",
    "bfloat16": "bfloat16", "int64": "int64", "int32": "int32", "int16": "int16",
    "int8": "int8", "uint8": "uint8", "bool": "bool", "complex64": "complex64",
    "complex128": "complex128", "uint16": "uint16", "uint32": "uint32", "uint64": "uint64",
}


def _numpy_dtype(name, byteorder):
    """The NumPy type of the stored elements (bfloat16 is stored as its 16 bits)."""
    dtype = np.dtype("uint16" if name == "bfloat16" else name)
    return dtype.newbyteorder("<" if byteorder == "little" else ">")


class _Sealed:
    """Objects a pickle receives from this reader: its BUILD opcode (which sets attributes
    on an object it holds) is refused, so nothing can alter a checked tensor record or
    the rebuilders afterwards."""

    __slots__ = ()

    def __setstate__(self, state):
        raise UnsafeCheckpointError(f"{_WHO}: the pickle tries to set the state of "
                                    f"{type(self).__name__.lstrip('_')}, which no torch "
                                    "file does")


class _Call(_Sealed):
    """One of this reader's functions as the pickle sees it."""

    __slots__ = ("fn",)

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)


class _StorageType(_Sealed):
    """What ``torch.FloatStorage`` (or ``torch.uint16``, or ``UntypedStorage``) stands for
    in a pickle: only an element type name. ``None`` is the untyped (byte) storage."""

    __slots__ = ("dtype_name", "torch_name")

    def __init__(self, dtype_name, torch_name):
        self.dtype_name, self.torch_name = dtype_name, torch_name

    def __repr__(self):
        return self.torch_name


class _Storage(_Sealed):
    """One storage's elements as a 1-D array (filled later in the legacy format)."""

    __slots__ = ("dtype_name", "numel", "key", "array")

    def __init__(self, dtype_name, numel, key):
        self.dtype_name, self.numel, self.key = dtype_name, numel, key
        self.array = None


class _TensorRecord(_Sealed):
    """A tensor as the pickle describes it; made an array once every storage is read."""

    __slots__ = ("storage", "offset", "size", "stride", "dtype_name")

    def __init__(self, storage, offset, size, stride, dtype_name=None):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride
        self.dtype_name = dtype_name or storage.dtype_name


# ----------------------------------------------------------------- unpickling

class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the names in ``self._allowed``: bound methods and fresh objects of
    this reader, never torch's (or anything else's) code."""

    def __init__(self, file, reader):
        super().__init__(file, encoding="utf-8")
        self._reader = reader
        self._allowed = reader.allowed_globals()

    def find_class(self, module, name):
        # protocol-2 pickles use Python 2's names (__builtin__.eval); say Python 3's
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        try:
            return self._allowed[(module, name)]
        except KeyError:
            pass
        hint = ""
        if module.startswith("__torch__") or module.startswith("torch.jit"):
            hint = " (a TorchScript archive: save model.state_dict() with torch.save instead)"
        elif module.startswith("torch.nn") or module.startswith("torchvision"):
            hint = (" (a whole pickled model: load it in torch and save model.state_dict() "
                    "instead)")
        elif name.startswith("_rebuild_qtensor") or "QInt" in name or "QUInt" in name:
            hint = " (quantized tensors are not supported)"
        elif module == "torch" and name.startswith("float8"):
            hint = " (float8 tensors are not supported)"
        raise UnsafeCheckpointError(
            f"{_WHO}: refusing '{module}.{name}' in {self._reader.path!r}: a checkpoint may "
            "name only tensors, storages, OrderedDict and plain Python data; anything else "
            f"could run code when unpickled{hint}")

    def persistent_load(self, pid):
        return self._reader.persistent_load(pid)


class _Reader:
    """What both formats share: the allowed names, tensor records, and materialising."""

    def __init__(self, path):
        self.path = path
        self.storages = {}
        self.widened_bfloat16 = 0

    def allowed_globals(self):
        allowed = {
            ("collections", "OrderedDict"): collections.OrderedDict,
            ("torch._utils", "_rebuild_tensor"): _Call(self._rebuild_tensor),
            ("torch._utils", "_rebuild_tensor_v2"): _Call(self._rebuild_tensor_v2),
            ("torch._utils", "_rebuild_tensor_v3"): _Call(self._rebuild_tensor_v3),
            ("torch._utils", "_rebuild_parameter"): _Call(self._rebuild_parameter),
            ("torch._utils", "_rebuild_parameter_with_state"): _Call(self._rebuild_parameter),
            ("_codecs", "encode"): _Call(self._latin1_encode),
            ("torch", "UntypedStorage"): _StorageType(None, "torch.UntypedStorage"),
            ("torch.storage", "UntypedStorage"): _StorageType(None, "torch.UntypedStorage"),
        }
        for name, dtype_name in _STORAGE_DTYPES.items():
            # torch.cuda.*Storage: a legacy file saved from the GPU; read onto the CPU.
            for module in ("torch", "torch.cuda"):
                allowed[(module, name)] = _StorageType(dtype_name, f"{module}.{name}")
        for name, dtype_name in _TORCH_DTYPES.items():
            allowed[("torch", name)] = _StorageType(dtype_name, f"torch.{name}")
        return allowed

    def unpickler(self, file):
        return _RestrictedUnpickler(file, self)

    # -- the functions a pickle may call (keyword names as in torch._utils)

    @staticmethod
    def _latin1_encode(text, encoding="latin1"):
        # protocol 2 writes bytes b as _codecs.encode(b.decode("latin1"), "latin1")
        if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
            raise UnsafeCheckpointError(f"{_WHO}: _codecs.encode called with "
                                        f"({type(text).__name__}, {encoding!r})")
        return text.encode("latin1")

    def _rebuild_tensor(self, storage, storage_offset, size, stride):
        return self._record(storage, storage_offset, size, stride)

    def _rebuild_tensor_v2(self, storage, storage_offset, size, stride, requires_grad=False,
                           backward_hooks=None, metadata=None):
        return self._record(storage, storage_offset, size, stride)

    def _rebuild_tensor_v3(self, storage, storage_offset, size, stride, requires_grad,
                           backward_hooks, dtype, metadata=None):
        if not isinstance(dtype, _StorageType) or dtype.dtype_name is None:
            raise TorchCheckpointError(f"{_WHO}: {self.path!r}: _rebuild_tensor_v3 expects a "
                                       f"torch dtype, got {dtype!r}")
        return self._record(storage, storage_offset, size, stride, dtype.dtype_name)

    @staticmethod
    def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
        return data                        # an nn.Parameter is its tensor here

    def _record(self, storage, offset, size, stride, dtype_name=None):
        where = f"{_WHO}: {self.path!r}: tensor"
        if not isinstance(storage, _Storage):
            raise TorchCheckpointError(f"{where} rebuilt from a {type(storage).__name__}, "
                                       "not a storage")
        if not (isinstance(size, tuple) and isinstance(stride, tuple)
                and len(size) == len(stride)
                and all(type(n) is int and n >= 0 for n in size + stride)
                and type(offset) is int and offset >= 0):
            raise TorchCheckpointError(f"{where} with size {size!r}, stride {stride!r}, "
                                       f"offset {offset!r}: expected tuples of equal length "
                                       "of non-negative ints and a non-negative offset")
        if storage.dtype_name is None and dtype_name is None:
            raise TorchCheckpointError(f"{where} on an untyped storage without a dtype")
        return _TensorRecord(storage, offset, size, stride, dtype_name)

    # -- storages

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and isinstance(pid[2], str)
                and type(pid[4]) is int and pid[4] >= 0):
            raise TorchCheckpointError(f"{_WHO}: {self.path!r}: unexpected persistent id "
                                       f"{pid!r:.200} (expected ('storage', <storage type>, "
                                       "key, location, numel))")
        return self.storage(pid)

    def storage(self, pid):
        raise NotImplementedError

    def materialize(self, obj):
        """``obj`` with every tensor record replaced by its array (in place for dicts and
        lists; a pickle can make containers hold themselves, hence ``seen``)."""
        seen = {}

        def walk(value):
            if isinstance(value, _TensorRecord):
                return self.array(value)
            if isinstance(value, _Storage):      # a storage saved on its own: its elements
                return self.array(_TensorRecord(value, 0, (value.numel,), (1,)))
            if not isinstance(value, (dict, list, tuple, set, frozenset)):
                return value
            if id(value) in seen:
                return seen[id(value)]
            if isinstance(value, dict):
                seen[id(value)] = value
                for k in list(value):
                    value[k] = walk(value[k])
                return value
            if isinstance(value, list):
                seen[id(value)] = value
                value[:] = [walk(v) for v in value]
                return value
            seen[id(value)] = value            # tuples and sets cannot hold themselves
            result = type(value)(walk(v) for v in value)
            seen[id(value)] = result
            return result

        return walk(obj)

    def array(self, record):
        """The tensor's elements gathered from its storage by offset and strides."""
        storage = record.storage
        data = storage.array                    # uint8 bytes for an untyped storage
        dtype = _numpy_dtype(record.dtype_name, self.byteorder)
        if storage.dtype_name is None:
            usable = len(data) - len(data) % dtype.itemsize
            data = data[:usable].view(dtype)
        numel = int(np.prod(record.size, dtype=np.int64))
        if numel == 0:
            result = np.empty(record.size, dtype=dtype.newbyteorder("="))
        else:
            last = record.offset + sum((n - 1) * s for n, s in zip(record.size, record.stride))
            if last >= len(data):
                raise TorchCheckpointError(
                    f"{_WHO}: {self.path!r}: a tensor of size {record.size} (stride "
                    f"{record.stride}, offset {record.offset}) reaches element {last} of "
                    f"storage {storage.key!r}, which holds {len(data)}")
            view = np.lib.stride_tricks.as_strided(
                data[record.offset:], shape=record.size,
                strides=tuple(s * dtype.itemsize for s in record.stride), writeable=False)
            result = np.array(view, dtype=dtype.newbyteorder("="), order="C")
        if record.dtype_name == "bfloat16":
            self.widened_bfloat16 += 1
            result = (result.astype(np.uint32) << 16).view(np.float32)
        return result


class _ZipReader(_Reader):
    """The zip format: ``<top>/data.pkl`` and ``<top>/data/<key>``."""

    def read(self):
        with zipfile.ZipFile(self.path) as zf:
            self.zf = zf
            names = zf.namelist()
            tops = [n[: -len("/data.pkl")] for n in names
                    if n.endswith("/data.pkl") and n.count("/") == 1]
            if any(n.endswith("/constants.pkl") for n in names):
                raise TorchCheckpointError(
                    f"{_WHO}: {self.path!r} is a TorchScript archive (torch.jit.save), which "
                    "holds code; save model.state_dict() with torch.save instead")
            if len(tops) != 1:
                raise TorchCheckpointError(
                    f"{_WHO}: {self.path!r} is a zip archive but not a torch.save file: "
                    f"expected one '<folder>/data.pkl' entry, found {len(tops)} (entries: "
                    f"{names[:6]})")
            self.top = tops[0]
            self.byteorder = "little"            # files from before the byteorder entry
            if f"{self.top}/byteorder" in names:
                self.byteorder = zf.read(f"{self.top}/byteorder").decode("ascii", "replace")
                if self.byteorder not in ("little", "big"):
                    raise TorchCheckpointError(f"{_WHO}: {self.path!r}: unknown byte order "
                                               f"{self.byteorder!r} (expected little/big)")
            obj = self.unpickler(io.BytesIO(zf.read(f"{self.top}/data.pkl"))).load()
            return self.materialize(obj)

    def storage(self, pid):
        kind, key, numel = pid[1], pid[2], pid[4]
        if key not in self.storages:
            name = f"{self.top}/data/{key}"
            try:
                raw = self.zf.read(name)
            except KeyError:
                raise TorchCheckpointError(f"{_WHO}: {self.path!r}: the storage {name!r} "
                                           "is missing from the archive") from None
            storage = _Storage(kind.dtype_name, numel, key)
            itemsize = 1 if kind.dtype_name is None else \
                _numpy_dtype(kind.dtype_name, "little").itemsize
            if len(raw) < numel * itemsize:
                raise TorchCheckpointError(
                    f"{_WHO}: {self.path!r}: storage {name!r} has {len(raw)} bytes, "
                    f"{numel} elements of {itemsize} bytes expected (truncated file?)")
            storage.array = np.frombuffer(raw, dtype=np.uint8) if kind.dtype_name is None \
                else np.frombuffer(raw, _numpy_dtype(kind.dtype_name, self.byteorder), numel)
            self.storages[key] = storage
        return self.storages[key]


class _LegacyReader(_Reader):
    """The format before PyTorch 1.6: pickles of the magic number, the protocol version,
    the system info, the object and the storage keys, then each storage as an int64
    element count and its elements, little-endian."""

    byteorder = "little"

    def read(self):
        with open(self.path, "rb") as f:
            stream = io.BytesIO(f.read())
        magic = self.unpickler(stream).load()
        if magic != _LEGACY_MAGIC:
            raise TorchCheckpointError(f"{_WHO}: {self.path!r} is a pickle but not a "
                                       "torch.save file (no PyTorch magic number)")
        protocol = self.unpickler(stream).load()
        if protocol != _LEGACY_PROTOCOL:
            raise TorchCheckpointError(f"{_WHO}: {self.path!r}: legacy protocol "
                                       f"{protocol!r}, this reader knows {_LEGACY_PROTOCOL}")
        self.unpickler(stream).load()                 # system info: endianness, type sizes
        self.views = []
        obj = self.unpickler(stream).load()
        keys = self.unpickler(stream).load()
        view_keys = {view.key for view, *_ in self.views}
        if not isinstance(keys, list) or set(keys) != set(self.storages) - view_keys:
            raise TorchCheckpointError(f"{_WHO}: {self.path!r}: the storage list does not "
                                       "match the storages the object uses")
        for key in keys:
            storage = self.storages[key]
            itemsize = _numpy_dtype(storage.dtype_name, "little").itemsize
            count = np.frombuffer(stream.read(8), "<i8")
            raw = stream.read(storage.numel * itemsize)
            if len(count) != 1 or count[0] != storage.numel or \
                    len(raw) != storage.numel * itemsize:
                raise TorchCheckpointError(f"{_WHO}: {self.path!r}: storage {key!r} is "
                                           "truncated or does not match its declared size")
            storage.array = np.frombuffer(raw, _numpy_dtype(storage.dtype_name, "little"))
        for view, root, offset, size in self.views:
            if offset < 0 or offset + size > root.numel:
                raise TorchCheckpointError(f"{_WHO}: {self.path!r}: a storage view "
                                           f"[{offset}, {offset + size}) of {root.key!r} "
                                           f"outside its {root.numel} elements")
            view.array = root.array[offset:offset + size]
        return self.materialize(obj)

    def storage(self, pid):
        kind, key, numel = pid[1], pid[2], pid[4]
        if kind.dtype_name is None:
            raise TorchCheckpointError(f"{_WHO}: {self.path!r}: untyped storage in a legacy "
                                       "file")
        view = pid[5] if len(pid) > 5 else None
        if key not in self.storages:
            self.storages[key] = _Storage(kind.dtype_name, numel, key)
        root = self.storages[key]
        if view is None:
            return root
        # (view_key, offset, size): part of the root storage, shared by its tensors
        if not (isinstance(view, tuple) and len(view) == 3 and isinstance(view[0], str)
                and all(type(v) is int for v in view[1:])):
            raise TorchCheckpointError(f"{_WHO}: {self.path!r}: bad storage view {view!r}")
        view_key, offset, size = view
        if view_key not in self.storages:
            self.storages[view_key] = _Storage(kind.dtype_name, size, view_key)
            self.views.append((self.storages[view_key], root, offset, size))
        return self.storages[view_key]
