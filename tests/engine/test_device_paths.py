"""The GPU path beyond the ops (issue 13): augmentation, random constructors, index bounds,
state dicts and the gpu extra, checked with the fake CuPy of fake_cupy.py."""
import ast
import pathlib

import numpy as np
import pytest

import minicnn as mc

from fake_cupy import FakeDeviceArray, install, to_device, to_host

ROOT = pathlib.Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------ gpu extra

def _extra(name):
    tree = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == name:
                    return ast.literal_eval(value)
    raise AssertionError(f"setup.py declares no '{name}' extra")


def test_gpu_extra_installs_what_cupy_14_needs():
    gpu = _extra("gpu")
    cupy = [r for r in gpu if r.startswith("cupy-cuda12x")]
    assert cupy and cupy[0].startswith("cupy-cuda12x[ctk]"), gpu
    assert ">=14" in cupy[0], gpu
    assert any(r.replace(" ", "").startswith("numpy>=2") for r in gpu), gpu


# ------------------------------------------------------------------- randperm

def test_randperm_on_device_needs_no_generator_permutation(monkeypatch):
    install(monkeypatch)
    mc.manual_seed(0)
    p = mc.randperm(10, device="cuda")
    assert isinstance(p.array, FakeDeviceArray)
    assert p.dtype == np.int64
    assert sorted(to_host(p.array).tolist()) == list(range(10))
    mc.manual_seed(0)
    assert np.array_equal(to_host(mc.randperm(10, device="cuda").array), to_host(p.array))


def test_randperm_on_cpu_keeps_its_values():
    mc.manual_seed(3)
    expected = np.random.Generator(np.random.PCG64(3)).permutation(7)
    assert mc.randperm(7).tolist() == expected.tolist()


def test_randperm_refuses_a_negative_n():
    with pytest.raises(ValueError, match="randperm: n must be a non-negative integer"):
        mc.randperm(-1)
