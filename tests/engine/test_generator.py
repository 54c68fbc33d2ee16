"""minicnn's generator (backend.Generator): one Philox4x32-10 stream keyed by the seed, its
state (seed, counter), the same numbers on the CPU and on the (fake) GPU."""
import numpy as np
import pytest

import minicnn as mc
from minicnn import backend
from kernels import dispatch, philox

from fake_cupy import FakeDeviceArray, install, to_host


def _draws(device):
    """Every kind of draw minicnn makes, in order, as host arrays."""
    mc.manual_seed(1234)
    xp = np if device == "cpu" else backend.cupy()
    rng = backend.get_rng(xp)
    out = [rng.random(7, dtype=np.float32), rng.random((2, 3)), rng.standard_normal(5),
           rng.standard_normal(4, dtype=np.float32), rng.integers(3, 10, size=9),
           rng.integers(0, 2 ** 63 - 1, size=2), rng.permutation(11),
           mc.rand(3, device=device).array, mc.randn(2, 2, device=device).array,
           mc.randint(0, 5, (4,), device=device).array, mc.randperm(6, device=device).array]
    model = mc.nn.Sequential(mc.nn.Conv2d(2, 3, 3), mc.nn.Dropout(0.5)).to(device)
    x = mc.ones(4, 2, 5, 5, device=device)
    out += [p.array for p in model.parameters()] + [model(x).array]
    out.append(mc.nn.functional.dropout2d(x, 0.5).array)
    return [to_host(a) if isinstance(a, FakeDeviceArray) else np.asarray(a) for a in out]


def test_cpu_and_device_draw_the_same_stream(monkeypatch):
    host = _draws("cpu")
    install(monkeypatch)
    device = _draws("cuda")
    assert len(host) == len(device)
    for k, (h, d) in enumerate(zip(host, device)):
        assert h.dtype == d.dtype and h.shape == d.shape, k
        np.testing.assert_array_equal(h, d, err_msg=f"draw {k}")


def test_the_state_is_seed_and_counter_and_restores_on_the_device(monkeypatch):
    install(monkeypatch)
    cp = backend.cupy()
    mc.manual_seed(9)
    assert backend.get_rng_state() == {"seed": 9, "counter": 0}
    backend.get_rng(cp).random(10, dtype=np.float32)          # 10 words: 3 blocks
    state = backend.get_rng_state()
    assert state == {"seed": 9, "counter": 3}
    first = to_host(mc.nn.functional.dropout(mc.ones(50, device="cuda"), 0.5).array)
    mc.manual_seed(2)
    backend.get_rng(np).random(100)
    backend.set_rng_state(state)
    again = to_host(mc.nn.functional.dropout(mc.ones(50, device="cuda"), 0.5).array)
    np.testing.assert_array_equal(first, again)
    with pytest.raises(ValueError, match="no 'counter'"):
        backend.set_rng_state({"seed": 0, "numpy": {}})


def test_words_are_the_philox_stream_of_the_seed():
    seed = 2 ** 40 + 5
    mc.manual_seed(seed)
    rng = backend.get_rng(np)
    rng.random(3, dtype=np.float32)                           # block 0
    u = rng.random(6, dtype=np.float32)                       # blocks 1 and 2
    words = philox.random_bits(np, (seed % 2 ** 32, seed >> 32), 1, 6)
    np.testing.assert_array_equal(u, (words >> 8).astype(np.float32) * np.float32(2 ** -24))
    assert backend.get_rng_state()["counter"] == 3


def test_the_compiled_and_reference_draws_agree():
    mc.manual_seed(5)
    fast = backend.get_rng(np).random(10_000)
    mc.manual_seed(5)
    with dispatch.kernels("reference"):
        reference = backend.get_rng(np).random(10_000)
    np.testing.assert_array_equal(fast, reference)


def test_manual_seed_keeps_its_meaning():
    mc.manual_seed(3)
    a = mc.randn(20)
    mc.manual_seed(3)
    assert np.array_equal(a.numpy(), mc.randn(20).numpy())
    mc.manual_seed(4)
    assert not np.array_equal(a.numpy(), mc.randn(20).numpy())
    mc.manual_seed(2 ** 64 - 1)
    for bad in (-1, 2 ** 64, 1.5, True):
        with pytest.raises(ValueError, match="manual_seed"):
            mc.manual_seed(bad)


def test_the_distributions_have_their_moments_and_ranges():
    mc.manual_seed(0)
    rng = backend.get_rng(np)
    n = 200_000
    for dtype in (np.float32, np.float64):
        u = rng.random(n, dtype=dtype)
        assert u.dtype == dtype and u.min() >= 0 and u.max() < 1
        assert abs(u.mean() - 0.5) < 0.005 and abs(u.var() - 1 / 12) < 0.002
        z = rng.standard_normal(n, dtype=dtype)
        assert z.dtype == dtype and abs(z.mean()) < 0.01 and abs(z.var() - 1) < 0.02
        assert abs((np.abs(z) < 1).mean() - 0.6827) < 0.005
    k = rng.integers(-3, 4, size=n)
    assert k.dtype == np.int64 and k.min() == -3 and k.max() == 3
    counts = np.bincount(k + 3) / n
    assert np.all(np.abs(counts - 1 / 7) < 0.005)
    assert rng.integers(0, 2, endpoint=True, size=1000).max() == 2
    big = rng.integers(0, 2 ** 63 - 1, size=1000)
    assert big.min() >= 0 and big.max() > 2 ** 62
    p = rng.permutation(1000)
    assert sorted(p.tolist()) == list(range(1000))
    assert isinstance(rng.uniform(2.0, 3.0), (float, np.floating))
    assert 2.0 <= rng.uniform(2.0, 3.0) < 3.0 and rng.normal(5.0, 0.0) == 5.0


def test_numpys_other_distributions_come_from_the_stream_on_the_host():
    mc.manual_seed(8)
    a = backend.get_rng(np).beta(0.4, 0.4, size=3)
    mc.manual_seed(8)
    assert np.array_equal(a, backend.get_rng(np).beta(0.4, 0.4, size=3))
    assert backend.get_rng_state()["counter"] == 1
    with pytest.raises(AttributeError):
        backend.get_rng(np).no_such_distribution


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 7, 10])
def test_standard_normal_in_chunks_draws_the_one_draw_numbers(monkeypatch, dtype, n):
    """Box-Muller done NORMAL_CHUNK pairs at a time (to bound its temporaries) gives,
    and consumes, exactly what the whole draw at once gives: written out here in full."""
    def fresh():
        return backend.Generator(np, {"seed": 11, "counter": 3})
    pairs = -(-n // 2)
    u = fresh().random(2 * pairs).reshape(pairs, 2)
    radius = np.sqrt(-2.0 * np.log(1.0 - u[:, 0]))
    angle = 2.0 * np.pi * u[:, 1]
    want = np.stack([radius * np.cos(angle), radius * np.sin(angle)], 1).reshape(-1)[:n]
    for chunk in (1, 2, 1 << 20):
        monkeypatch.setattr(backend, "NORMAL_CHUNK", chunk)
        rng = fresh()
        got = rng.standard_normal(n, dtype=dtype)
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, want.astype(dtype))
        assert rng.state["counter"] == 3 + pairs        # one counter (4 words) per pair
