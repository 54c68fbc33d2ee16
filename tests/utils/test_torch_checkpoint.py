"""minicnn.load_torch_checkpoint: files written by torch.save in the test read back equal
to torch.load's answer (both file formats, every dtype, views sharing a storage, big-endian
files), a state dict loads into a zoo model, and malicious or damaged files are refused
without running anything."""
import builtins
import io
import os
import pickle
import re
import subprocess
import zipfile

import numpy as np
import pytest

import minicnn
from minicnn.models import resnet
from minicnn.utils.torch_checkpoint import TorchCheckpointError, UnsafeCheckpointError

from model_twin import randomize_, torch_twin

FORMATS = ["zip", "legacy"]


def save(torch, obj, path, fmt="zip"):
    torch.save(obj, path, _use_new_zipfile_serialization=(fmt == "zip"))
    return path


def assert_same(got, want, torch, where="obj"):
    """``got`` (from load_torch_checkpoint) equals ``want`` (from torch.load)."""
    if isinstance(want, torch.Tensor):
        assert isinstance(got, np.ndarray), where
        if want.dtype == torch.bfloat16:
            assert got.dtype == np.float32, where
            want = want.float()
        expected = want.detach().numpy()
        assert got.dtype == expected.dtype and got.shape == expected.shape, where
        np.testing.assert_array_equal(got, expected, err_msg=where)
        assert got.flags.c_contiguous and got.flags.writeable, where
    elif isinstance(want, dict):
        assert type(got) is type(want) and list(got) == list(want), where
        for k in want:
            assert_same(got[k], want[k], torch, f"{where}[{k!r}]")
    elif isinstance(want, (list, tuple)):
        assert type(got) is type(want) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same(g, w, torch, f"{where}[{i}]")
    else:
        assert got == want and type(got) is type(want), where


def mixed_checkpoint(torch):
    g = torch.Generator().manual_seed(0)
    base = torch.randn(4, 6, generator=g, dtype=torch.float64)
    flat = torch.arange(24, dtype=torch.float32)
    tensors = {
        "float32": torch.randn(3, 5, generator=g),
        "float64": base,
        "float16": torch.randn(7, generator=g).half(),
        "bfloat16": torch.randn(2, 3, generator=g).bfloat16(),
        "int64": torch.arange(-5, 5),
        "int32": torch.arange(6, dtype=torch.int32).reshape(2, 3),
        "int16": torch.tensor([-3, 300], dtype=torch.int16),
        "int8": torch.tensor([-128, 127], dtype=torch.int8),
        "uint8": torch.tensor([0, 255], dtype=torch.uint8),
        "bool": torch.tensor([[True, False], [False, True]]),
        "complex64": torch.randn(3, generator=g, dtype=torch.complex64),
        # views of one storage: transposed, sliced with an offset, strided, expanded
        "base.t": base.t(),
        "base.slice": base[1:3, 2:5],
        "base.every_other": base[:, ::2],
        "flat.view": flat.view(2, 3, 4).permute(2, 0, 1),
        "flat.tail": flat[20:],
        "flat.expanded": flat[:3].unsqueeze(0).expand(4, 3),
        "empty": torch.empty(0, 3),
        "empty.slice": flat[5:5],
        "scalar": torch.tensor(2.5),
        "long.scalar": torch.tensor(7),
        "parameter": torch.nn.Parameter(torch.ones(2, 2)),
    }
    return {"tensors": tensors, "epoch": 3, "lr": 0.125, "name": "run-1", "none": None,
            "flag": True, "bytes": b"\x00\xffabc",
            "list": [flat[:2], (base[0], 5), {"deep": flat[3:4]}]}


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_equals_torch_load(torch, tmp_path, fmt):
    path = save(torch, mixed_checkpoint(torch), tmp_path / "mixed.pt", fmt)
    with pytest.warns(UserWarning, match="1 bfloat16 tensor.*float32"):
        got = minicnn.load_torch_checkpoint(path)
    want = torch.load(path, weights_only=True)
    assert_same(got, want, torch)
    # views come back as arrays of their own: writing one leaves the others alone
    got["tensors"]["base.t"][0, 0] = 99.0
    assert got["tensors"]["float64"][0, 0] == want["tensors"]["float64"][0, 0].item()


def test_dtypes_without_a_storage_class(torch, tmp_path):
    """uint16/32/64 are written through _rebuild_tensor_v3 on an untyped storage."""
    obj = {"u16": torch.tensor([1, 65535], dtype=torch.uint16),
           "u32": torch.tensor([[7, 2 ** 32 - 1]], dtype=torch.uint32),
           "u64": torch.tensor([2 ** 63], dtype=torch.uint64),
           "u16.view": torch.arange(10).to(torch.uint16)[3:9:2]}
    path = save(torch, obj, tmp_path / "unsigned.pt")
    got = minicnn.load_torch_checkpoint(path)
    assert [got[k].dtype for k in obj] == [np.uint16, np.uint32, np.uint64, np.uint16]
    for k, t in obj.items():
        np.testing.assert_array_equal(got[k], t.numpy())


@pytest.mark.parametrize("fmt", FORMATS)
def test_state_dict_keeps_order_and_metadata(torch, tmp_path, fmt):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4),
                                torch.nn.Linear(4, 2))
    sd = model.state_dict()
    path = save(torch, sd, tmp_path / "sd.pth", fmt)
    got = minicnn.load_torch_checkpoint(path)
    assert type(got) is type(sd) and list(got) == list(sd)
    assert got._metadata == sd._metadata     # torchvision's version hooks read these
    assert got["1.num_batches_tracked"].dtype == np.int64


def rewrite_zip(src, dst, change):
    """Copy the archive ``src`` to ``dst``; ``change(name, data)`` -> (name, data) or None."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            out = change(info.filename, zin.read(info.filename))
            if out is not None:
                zout.writestr(out[0], out[1])
    return dst


def test_big_endian_file(torch, tmp_path):
    """A file written on a big-endian machine: byteorder 'big', every element swapped."""
    obj = {"f": torch.randn(3, 4).t(), "d": torch.randn(5, dtype=torch.float64),
           "h": torch.randn(2).half(), "b": torch.randn(3).bfloat16(),
           "i": torch.arange(-3, 3), "u8": torch.tensor([1, 2], dtype=torch.uint8)}
    little = save(torch, obj, tmp_path / "little.pt")
    sizes = {"f": 4, "d": 8, "h": 2, "b": 2, "i": 8, "u8": 1}
    # storages are numbered in the order the tensors are pickled
    itemsize = {str(i): sizes[k] for i, k in enumerate(obj)}

    def swap(name, data):
        if name.endswith("/byteorder"):
            return name, b"big"
        key = name.rsplit("/", 1)[-1]
        if "/data/" in name:
            return name, np.frombuffer(data, f"<u{itemsize[key]}").byteswap().tobytes()
        return name, data

    big = rewrite_zip(little, tmp_path / "big.pt", swap)
    with pytest.warns(UserWarning, match="bfloat16"):
        got = minicnn.load_torch_checkpoint(big)
    assert_same(got, torch.load(little), torch)
    assert all(a.dtype.isnative for a in got.values())


def test_any_top_folder_name(torch, tmp_path):
    buffer = io.BytesIO()
    torch.save({"w": torch.arange(3.0)}, buffer)          # top folder 'archive'
    (tmp_path / "a.pt").write_bytes(buffer.getvalue())
    renamed = rewrite_zip(tmp_path / "a.pt", tmp_path / "b.pt",
                          lambda n, d: ("my model v2/" + n.split("/", 1)[1], d))
    for path in (tmp_path / "a.pt", renamed):
        np.testing.assert_array_equal(minicnn.load_torch_checkpoint(path)["w"], [0, 1, 2])


def test_resnet18_state_dict_file_loads_into_the_zoo_model(torch, tmp_path):
    """A torch resnet18 (the zoo's source on torch.nn, BN statistics randomised) saved with
    torch.save: minicnn's resnet18 loads the file and answers as torch does."""
    twin = randomize_(torch_twin(resnet, torch).resnet18(num_classes=10), torch).eval()
    path = save(torch, twin.state_dict(), tmp_path / "resnet18.pth")
    model = resnet.resnet18(num_classes=10).eval()
    model.load_state_dict(minicnn.load_torch_checkpoint(path))
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        want = twin(torch.from_numpy(x)).numpy()
    with minicnn.no_grad():
        got = model(minicnn.tensor(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------- malicious files

class RunsCommand:
    """Unpickling this runs ``touch <marker>`` through os.system."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


class Evals:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.eval, (f"open({self.marker!r}, 'w').close()",)


class Popens:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return subprocess.Popen, (["touch", self.marker],)


class NestedPickle:
    """A pickle that unpickles another pickle (which would run the command)."""

    def __init__(self, marker):
        self.inner = pickle.dumps(RunsCommand(marker))

    def __reduce__(self):
        return pickle.loads, (self.inner,)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("payload, refused", [
    (RunsCommand, "posix.system"), (Evals, "builtins.eval"),
    (Popens, "subprocess.Popen"), (NestedPickle, "_?pickle.loads")])
def test_code_in_the_pickle_is_refused_and_never_runs(torch, tmp_path, fmt, payload,
                                                      refused):
    marker = tmp_path / "marker"
    obj = {"weight": torch.ones(2), "payload": payload(marker)}
    path = save(torch, obj, tmp_path / "evil.pt", fmt)
    with pytest.raises(UnsafeCheckpointError) as info:
        minicnn.load_torch_checkpoint(path)
    assert re.search(f"refusing '{refused}' in .*evil.pt", str(info.value))
    assert not marker.exists()
    ran = torch.load(path, weights_only=False)["payload"]   # the payload is real:
    if isinstance(ran, subprocess.Popen):                     # torch runs it
        ran.wait()
    assert marker.exists()


def test_hand_written_data_pkl_is_refused(torch, tmp_path):
    """data.pkl replaced in a genuine archive: a plain pickle of the payload, and the
    protocol-0 INST form that names the function without GLOBAL."""
    marker = tmp_path / "marker"
    good = save(torch, {"w": torch.ones(2)}, tmp_path / "good.pt")
    inst = f"(S'touch {marker}'\nios\nsystem\n.".encode()
    for i, pkl in enumerate([pickle.dumps(RunsCommand(marker), protocol=4), inst]):
        bad = rewrite_zip(good, tmp_path / f"bad{i}.pt",
                          lambda n, d: (n, pkl if n.endswith("/data.pkl") else d))
        with pytest.raises(UnsafeCheckpointError, match=r"'(posix|os)\.system'"):
            minicnn.load_torch_checkpoint(bad)
    assert not marker.exists()


def test_a_plain_pickle_file_is_refused(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps(RunsCommand(marker)))
    with pytest.raises(UnsafeCheckpointError, match="posix.system"):
        minicnn.load_torch_checkpoint(path)
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")   # torch.jit
def test_whole_model_and_torchscript_are_refused_with_advice(torch, tmp_path):
    model = torch.nn.Linear(2, 3)
    path = save(torch, model, tmp_path / "model.pt")
    with pytest.raises(UnsafeCheckpointError, match="torch.nn.modules.linear.Linear.*"
                                                    "state_dict"):
        minicnn.load_torch_checkpoint(path)
    torch.jit.save(torch.jit.script(model), tmp_path / "scripted.pt")
    with pytest.raises(TorchCheckpointError, match="TorchScript"):
        minicnn.load_torch_checkpoint(tmp_path / "scripted.pt")


# ----------------------------------------------------------------- damaged files

def test_damaged_files_give_clear_errors(torch, tmp_path):
    good = save(torch, {"w": torch.arange(100.0)}, tmp_path / "good.pt")
    raw = good.read_bytes()
    legacy = save(torch, {"w": torch.arange(100.0)}, tmp_path / "legacy.pt", "legacy")
    cases = {
        "empty.pt": (b"", "empty"),
        "text.pt": (b"hello, not a checkpoint", "neither a zip archive nor a pickle"),
        "cut.pt": (raw[: len(raw) // 2], "damaged zip archive"),
        "cut_legacy.pt": (legacy.read_bytes()[:-40], "truncated"),
        "cut_pickle.pt": (legacy.read_bytes()[:30], "cannot read"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(TorchCheckpointError, match=message):
            minicnn.load_torch_checkpoint(tmp_path / name)
    short = rewrite_zip(good, tmp_path / "short.pt",
                        lambda n, d: (n, d[:100] if "/data/" in n else d))
    with pytest.raises(TorchCheckpointError, match="has 100 bytes, 100 elements of 4"):
        minicnn.load_torch_checkpoint(short)
    missing = rewrite_zip(good, tmp_path / "missing.pt",
                          lambda n, d: None if "/data/" in n else (n, d))
    with pytest.raises(TorchCheckpointError, match="storage .*data/0.* missing"):
        minicnn.load_torch_checkpoint(missing)
    other_zip = tmp_path / "other.zip"
    with zipfile.ZipFile(other_zip, "w") as z:
        z.writestr("readme.txt", "hi")
    with pytest.raises(TorchCheckpointError, match="not a torch.save file"):
        minicnn.load_torch_checkpoint(other_zip)
    with pytest.raises(FileNotFoundError, match="no such file"):
        minicnn.load_torch_checkpoint(tmp_path / "absent.pt")
    with pytest.raises(IsADirectoryError):
        minicnn.load_torch_checkpoint(tmp_path)
    with pytest.raises(TypeError, match="load_torch_checkpoint: path should be a file path"):
        minicnn.load_torch_checkpoint(123)


def handmade_checkpoint(path, offset, size, after=b""):
    """A zip checkpoint with a hand-written data.pkl: {'w': a float tensor at ``offset``
    of ``size`` elements on a storage of 4}, ``after`` inserted after the tensor."""
    storage = (b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\n"
               b"X\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x04tQ")
    tensor = (b"ctorch._utils\n_rebuild_tensor_v2\n(" + storage
              + bytes([ord("K"), offset, ord("K"), size]) + b"\x85K\x01\x85\x89}tR")
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02}X\x01\x00\x00\x00w" + tensor + after
                   + b"s.")
        z.writestr("archive/data/0", np.arange(4, dtype="<f4").tobytes())
    return path


def test_hand_written_tensors(tmp_path):
    """The hand-made file reads; a tensor past its storage, or a pickle that edits a
    tensor after it was checked (BUILD), is refused."""
    ok = minicnn.load_torch_checkpoint(handmade_checkpoint(tmp_path / "ok.pt", 1, 3))
    np.testing.assert_array_equal(ok["w"], [1, 2, 3])
    with pytest.raises(TorchCheckpointError, match=r"reaches element 4 of storage '0', "
                                                   r"which holds 4"):
        minicnn.load_torch_checkpoint(handmade_checkpoint(tmp_path / "past.pt", 2, 3))
    edit = b"}X\x06\x00\x00\x00offsetJ\x9c\xff\xff\xffsb"      # BUILD {'offset': -100}
    with pytest.raises(UnsafeCheckpointError, match="set the state of TensorRecord.*edit.pt"):
        minicnn.load_torch_checkpoint(handmade_checkpoint(tmp_path / "edit.pt", 0, 3, edit))
