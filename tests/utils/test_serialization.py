"""minicnn.save / minicnn.load: round trips, atomic writes, and clear refusals of damaged,
foreign or pickled files (loading never runs code)."""
import json
import os
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

import minicnn
from minicnn.utils.serialization import CheckpointError


def _checkpoint():
    return {
        "model": {"conv.weight": minicnn.randn(2, 1, 3, 3),
                  "bn.num_batches_tracked": minicnn.tensor(7),
                  "half": np.arange(3, dtype=np.float16)},
        "optimizer": {"state": {0: {"momentum_buffer": np.ones((2, 3), np.float64),
                                    "step": 12}},
                      "param_groups": [{"lr": 0.1, "betas": (0.9, 0.999), "params": [0, 1],
                                        "nesterov": False, "name": None}]},
        "scheduler": {"last_epoch": 3, "best": float("inf"), "nan": float("nan")},
        "rng": minicnn.backend.get_rng_state(),           # 128-bit integers inside
        "epoch": 4, "flags": [True, None, "text", 2.5], "scalar": np.int64(2 ** 40),
        "mask": np.array([True, False]),
    }


def test_round_trip_keeps_structure_values_and_dtypes(tmp_path):
    obj = _checkpoint()
    path = tmp_path / "ckpt.npz"
    minicnn.save(obj, path)
    back = minicnn.load(path)
    model = back["model"]
    assert isinstance(model["conv.weight"], minicnn.Tensor)
    assert np.array_equal(model["conv.weight"].numpy(), obj["model"]["conv.weight"].numpy())
    assert model["conv.weight"].dtype == np.float32
    assert model["bn.num_batches_tracked"].dtype == np.int64
    assert model["bn.num_batches_tracked"].item() == 7
    assert model["half"].dtype == np.float16 and isinstance(model["half"], np.ndarray)
    state = back["optimizer"]["state"]
    assert list(state) == [0] and state[0]["step"] == 12                 # int keys kept
    assert state[0]["momentum_buffer"].dtype == np.float64
    group = back["optimizer"]["param_groups"][0]
    assert group["betas"] == (0.9, 0.999) and isinstance(group["betas"], tuple)
    assert group["params"] == [0, 1] and group["name"] is None and group["nesterov"] is False
    assert back["scheduler"]["best"] == float("inf") and np.isnan(back["scheduler"]["nan"])
    assert back["rng"] == obj["rng"]
    assert back["scalar"] == 2 ** 40 and back["scalar"].dtype == np.int64
    assert back["flags"] == [True, None, "text", 2.5] and back["epoch"] == 4
    assert back["mask"].dtype == np.bool_


def test_rng_state_restores_the_random_stream(tmp_path):
    minicnn.manual_seed(5)
    minicnn.rand(3)
    minicnn.save({"rng": minicnn.backend.get_rng_state()}, tmp_path / "r.npz")
    expected = minicnn.rand(4).numpy()
    minicnn.manual_seed(99)
    minicnn.backend.set_rng_state(minicnn.load(tmp_path / "r.npz")["rng"])
    assert np.array_equal(minicnn.rand(4).numpy(), expected)


def test_a_module_state_dict_loads_back_into_a_model(tmp_path):
    from minicnn import nn
    model = nn.Sequential(nn.Linear(3, 2))
    minicnn.save(model.state_dict(), tmp_path / "m.pt")               # name kept as given
    other = nn.Sequential(nn.Linear(3, 2))
    other.load_state_dict(minicnn.load(tmp_path / "m.pt"))
    assert np.array_equal(other[0].weight.numpy(), model[0].weight.numpy())
    assert os.listdir(tmp_path) == ["m.pt"]                          # no temp file left


def test_file_objects(tmp_path):
    import io
    buffer = io.BytesIO()
    minicnn.save({"a": [1, 2]}, buffer)
    buffer.seek(0)
    assert minicnn.load(buffer) == {"a": [1, 2]}


def test_unsupported_objects_are_refused_with_their_location(tmp_path):
    with pytest.raises(TypeError, match=r"cannot store a builtins.object at obj\['a'\]\[1\]"):
        minicnn.save({"a": [1, object()]}, tmp_path / "x.npz")
    with pytest.raises(TypeError, match="dtype object"):
        minicnn.save({"a": np.array([{}, 1], dtype=object)}, tmp_path / "x.npz")
    with pytest.raises(TypeError, match="keys must be"):
        minicnn.save({(1, 2): 3}, tmp_path / "x.npz")
    assert not os.path.exists(tmp_path / "x.npz")


# ------------------------------------------------------------------- atomicity

def test_failed_save_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    minicnn.save({"epoch": 1, "w": np.zeros(4)}, path)

    def crash(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated"):
        minicnn.save({"epoch": 2, "w": np.ones(4)}, path)
    assert minicnn.load(path)["epoch"] == 1
    assert os.listdir(tmp_path) == ["ckpt.npz"]                   # temp file removed


def test_process_killed_mid_write_leaves_the_previous_checkpoint(tmp_path):
    """A real crash: the process dies (no cleanup, no exception handlers) after writing
    half of the new checkpoint's bytes."""
    path = tmp_path / "ckpt.npz"
    minicnn.save({"epoch": 1, "w": np.zeros(10)}, path)
    script = textwrap.dedent(f"""
        import os, numpy as np, minicnn
        real_savez = np.savez
        def dying_savez(f, **arrays):
            real_savez(f, **arrays)
            f.seek(0)
            f.truncate(f.tell() + 100)       # half-written file
            f.flush()
            os._exit(9)                      # killed: no finally, no cleanup
        np.savez = dying_savez
        minicnn.save({{"epoch": 2, "w": np.ones(100000)}}, {str(path)!r})
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert result.returncode == 9, result.stderr.decode()
    back = minicnn.load(path)
    assert back["epoch"] == 1 and np.array_equal(back["w"], np.zeros(10))


# ------------------------------------------------------------- bad files

def test_truncated_file_is_reported(tmp_path):
    path = tmp_path / "ckpt.npz"
    minicnn.save(_checkpoint(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(CheckpointError, match=r"ckpt.npz' is corrupt or truncated"):
        minicnn.load(path)


def test_corrupted_bytes_are_reported(tmp_path):
    path = tmp_path / "ckpt.npz"
    minicnn.save({"w": np.zeros(1000)}, path)
    data = bytearray(path.read_bytes())
    data[200:260] = b"\xff" * 60                               # inside the array entry
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="ckpt.npz"):
        minicnn.load(path)


def test_random_and_empty_files_are_not_checkpoints(tmp_path):
    path = tmp_path / "random.bin"
    path.write_bytes(np.random.default_rng(0).bytes(500))
    with pytest.raises(CheckpointError, match="random.bin' is not a minicnn checkpoint: not a "
                                               ".npz archive"):
        minicnn.load(path)
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        minicnn.load(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no such file"):
        minicnn.load(tmp_path / "missing.npz")


def test_foreign_npz_and_pickles_are_refused_without_running_code(tmp_path):
    np.savez(tmp_path / "plain.npz", x=np.ones(2))
    with pytest.raises(CheckpointError, match="not a minicnn checkpoint .no '__minicnn__'"):
        minicnn.load(tmp_path / "plain.npz")
    marker = tmp_path / "pwned"
    import pickle

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"w": Payload()}))
    with pytest.raises(CheckpointError, match="Python pickle"):
        minicnn.load(tmp_path / "evil.pt")
    assert not marker.exists()


def test_npz_with_an_object_array_is_refused(tmp_path):
    structure = json.dumps({"format": "minicnn-checkpoint", "version": 1,
                            "object": {"array": "a0"}}).encode()
    path = tmp_path / "obj.npz"
    np.savez(path, __minicnn__=np.frombuffer(structure, np.uint8),
             a0=np.array([{"x": 1}, None], dtype=object))
    with pytest.raises(CheckpointError, match="pickled .object. data"):
        minicnn.load(path)


def test_newer_format_and_missing_entries_are_reported(tmp_path):
    def write(structure, **arrays):
        text = json.dumps(structure).encode()
        np.savez(tmp_path / "c.npz", __minicnn__=np.frombuffer(text, np.uint8), **arrays)

    write({"format": "minicnn-checkpoint", "version": 99, "object": 1})
    with pytest.raises(CheckpointError, match="newer minicnn"):
        minicnn.load(tmp_path / "c.npz")
    write({"format": "minicnn-checkpoint", "version": 1, "object": {"tensor": "a7"}})
    with pytest.raises(CheckpointError, match="'a7' is missing"):
        minicnn.load(tmp_path / "c.npz")
    with zipfile.ZipFile(tmp_path / "z.npz", "w") as z:
        z.writestr("__minicnn__.npy", b"garbage")
    with pytest.raises(CheckpointError, match="z.npz"):
        minicnn.load(tmp_path / "z.npz")
