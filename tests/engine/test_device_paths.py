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


def test_test_extra_installs_the_cupy_the_fake_reads_its_names_from():
    import fake_cupy
    text = (ROOT / "setup.py").read_text(encoding="utf-8")
    test = text[text.index('"test":'):text.index('"gpu":')]      # TRAIN + [...]: text
    assert '"cupy-cuda12x>=14; ' in test, test
    assert "permutation" not in fake_cupy.GENERATOR_NAMES          # read from CuPy 14
    assert {"asnumpy", "scatter_add"} <= fake_cupy.CUPY_NAMES | fake_cupy.CUPYX_NAMES
    assert "resize" not in fake_cupy.NDARRAY_NAMES and "get" in fake_cupy.NDARRAY_NAMES


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


def test_randperm_is_the_same_on_cpu_and_device(monkeypatch):
    mc.manual_seed(3)
    host = mc.randperm(50).tolist()
    install(monkeypatch)
    mc.manual_seed(3)
    assert to_host(mc.randperm(50, device="cuda").array).tolist() == host
    assert sorted(host) == list(range(50)) and host != list(range(50))


def test_randperm_refuses_a_negative_n():
    with pytest.raises(ValueError, match="randperm: n must be a non-negative integer"):
        mc.randperm(-1)


# ------------------------------------------------------------ MixUp and CutMix

def _mixed(transform, images, labels):
    from minicnn.data import _random
    with _random.using_generator(np.random.default_rng(5)):
        return transform(images, labels)


@pytest.mark.parametrize("make", ["MixUp", "CutMix"])
@pytest.mark.parametrize("as_tensor", [False, True])
def test_batch_mixing_keeps_a_device_batch_on_its_device(make, as_tensor, monkeypatch):
    from minicnn.data import transforms
    rng = np.random.default_rng(0)
    images = rng.random((4, 3, 8, 8)).astype(np.float32)
    labels = np.array([0, 2, 1, 2])
    transform = getattr(transforms, make)(alpha=1.0, num_classes=3)
    wrap = mc.Tensor._wrap if as_tensor else (lambda a: a)
    host_x, host_t = _mixed(transform, wrap(images.copy()), wrap(labels.copy()))
    install(monkeypatch)
    dev_x, dev_t = _mixed(transform, wrap(to_device(images.copy())),
                          wrap(to_device(labels.copy())))
    unwrap = (lambda t: t.array) if as_tensor else (lambda a: a)
    for host, dev in ((host_x, dev_x), (host_t, dev_t)):
        assert isinstance(unwrap(dev), FakeDeviceArray), f"{make} pulled the batch to the host"
        np.testing.assert_array_equal(to_host(unwrap(dev)), np.asarray(unwrap(host)))


def test_batch_mixing_moves_host_labels_to_the_batch_device(monkeypatch):
    from minicnn.data import transforms
    install(monkeypatch)
    images = to_device(np.ones((2, 1, 4, 4), dtype=np.float32))
    _, targets = _mixed(transforms.MixUp(num_classes=2), images, np.array([0, 1]))
    assert isinstance(targets, FakeDeviceArray)
    np.testing.assert_allclose(to_host(targets).sum(axis=1), 1.0, rtol=1e-6)


# ------------------------------------------------ host conversions of device arrays

def _small_model():
    mc.manual_seed(0)
    return mc.nn.Sequential(mc.nn.Linear(3, 4), mc.nn.BatchNorm1d(4), mc.nn.Linear(4, 2))


def test_a_device_state_dict_loads_into_a_cpu_model_and_trains(monkeypatch):
    from fake_cupy import refuse_host_conversion
    source, model = _small_model(), _small_model()
    for p in source.parameters():
        p.array[...] = p.array + 0.5
    host_state = {k: v.array.copy() for k, v in source.state_dict().items()}
    install(monkeypatch)
    refuse_host_conversion(monkeypatch)
    device_state = {k: mc.Tensor._wrap(to_device(v.copy())) for k, v in host_state.items()}
    model.load_state_dict(device_state)
    for k, v in model.state_dict().items():
        assert type(v.array) is np.ndarray, f"{k} is not a host array after loading"
        np.testing.assert_array_equal(v.array, host_state[k])
    opt = mc.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = mc.Tensor(np.random.default_rng(1).standard_normal((5, 3)).astype(np.float32))
    model(x).sum().backward()
    opt.step()
    # an optimizer state saved on the GPU loads into the CPU optimizer too
    state = opt.state_dict()
    for s in state["state"].values():
        s["momentum_buffer"] = to_device(np.array(s["momentum_buffer"], copy=True))
    fresh = mc.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    fresh.load_state_dict(state)
    fresh.step()
    assert all(type(p.array) is np.ndarray for p in model.parameters())


def test_a_tensor_from_a_list_of_device_values_stays_on_the_device(monkeypatch):
    from fake_cupy import refuse_host_conversion
    install(monkeypatch)
    refuse_host_conversion(monkeypatch)
    items = [mc.Tensor._wrap(to_device(np.array(1.5))), to_device(np.array(2.5))]
    t = mc.tensor(items)
    assert isinstance(t.array, FakeDeviceArray)
    np.testing.assert_array_equal(to_host(t.array), [1.5, 2.5])
    assert type(mc.tensor(items, device="cpu").array) is np.ndarray


# ------------------------------------------------------------- index bounds

@pytest.mark.parametrize("on_device", [False, True])
@pytest.mark.parametrize("index, bad, dim", [
    (np.array([0, 3]), 3, 0),
    ((slice(None), np.array([-5, 1])), -5, 1),
    ((Ellipsis, np.array([4])), 4, 1),
    ((None, np.array([1]), np.array([0, 9])), 9, 1),
])
def test_out_of_range_integer_index_raises_on_both_devices(on_device, index, bad, dim,
                                                           monkeypatch):
    x = np.arange(12.0).reshape(3, 4)
    if on_device:
        install(monkeypatch)
        x = to_device(x)
        index = tuple(to_device(i) if isinstance(i, np.ndarray) else i for i in index) \
            if isinstance(index, tuple) else to_device(index)
    t = mc.Tensor._wrap(x)
    size = (3, 4)[dim]
    message = f"index {bad} is out of bounds for dimension {dim} with size {size}"
    with pytest.raises(IndexError, match=f"getitem: {message}"):
        mc.nn.functional.getitem(t, index)
    with pytest.raises(IndexError, match=f"index_put: {message}"):
        mc.nn.functional.index_put(t, index, 0.0)
    with pytest.raises(IndexError, match=f"setitem: {message}"):      # outside a graph
        t[index] = 0.0


def test_in_range_negative_indices_still_work(monkeypatch):
    install(monkeypatch)
    t = mc.Tensor._wrap(to_device(np.arange(12.0).reshape(3, 4)))
    out = t[:, to_device(np.array([-4, 3]))]
    np.testing.assert_array_equal(to_host(out.array), [[0, 3], [4, 7], [8, 11]])
