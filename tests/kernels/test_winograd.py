"""Winograd convolution (kernels/winograd.py, its compiled twin kernels/numba_winograd.py)
and the algorithm seam of conv2d (conv_algorithm=, minicnn.conv_algorithm):

* the transform matrices: the bilinear identity, exactly, and where they come from
  (evaluation at the interpolation points);
* forward, input gradient and weight gradient against the im2col reference and torch,
  over drawn shapes and paddings, both tile sizes, float32 and float64, portable and
  compiled;
* float32 accuracy as stated in the module docstring;
* which algorithm runs, forcing it, and the errors.
"""
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import minicnn as mc
from kernels import dispatch, numba_winograd, winograd
from kernels.im2col import col2im, im2col
from minicnn import functional as F

SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
DTYPES = st.sampled_from([np.float64, np.float32])
# relative to the largest reference value: F(4x4) in float32 rounds at ~1e-5 (stated)
TOL = {np.float64: 1e-12, np.float32: 5e-5}
POINTS = {2: (0, 1, -1, None), 4: (0, 1, -1, 2, -2, None)}       # None: the point ∞
IMPLS = {"portable": winograd, "compiled": numba_winograd}


# ------------------------------------------------------------------ the matrices

def _exact(matrix):
    """A matrix of the module as Fractions (every entry is a multiple of 1/24)."""
    return [[Fraction(round(v * 24), 24) for v in row] for row in matrix]


@pytest.mark.parametrize("m", [2, 4])
def test_matrices_compute_the_correlation_exactly(m):
    """y = Aᵀ[(G g) ⊙ (Bᵀ d)] is y[i] = Σ_k d[i+k]·g[k] for every d and g: the bilinear
    form's coefficients Σ_t Aᵀ[i, t]·G[t, k]·Bᵀ[t, j] are 1 where j = i + k, else 0."""
    AT, G, BT = (_exact(a) for a in winograd.MATRICES[m])
    a = m + 2
    for floats, exact in zip(winograd.MATRICES[m], (AT, G, BT)):   # nothing lost
        assert all(float(e) == f for fr, er in zip(floats, exact) for f, e in zip(fr, er))
    for i in range(m):
        for k in range(3):
            for j in range(a):
                coef = sum(AT[i][t] * G[t][k] * BT[t][j] for t in range(a))
                assert coef == (1 if j == i + k else 0), (i, k, j)


@pytest.mark.parametrize("m", [2, 4])
def test_matrices_come_from_the_interpolation_points(m):
    """Row t of G evaluates the filter at point p (a multiple of (1, p, p²)); column t of
    Aᵀ is (1, p, ..., p^(m-1)); the point ∞ picks the leading coefficient."""
    AT, G, BT = (np.array(a, dtype=np.float64) for a in winograd.MATRICES[m])
    assert AT.shape == (m, m + 2) and G.shape == (m + 2, 3) and BT.shape == (m + 2, m + 2)
    for t, p in enumerate(POINTS[m]):
        if p is None:
            np.testing.assert_array_equal(G[t], [0, 0, 1])
            assert AT[:-1, t].tolist() == [0] * (m - 1) and abs(AT[-1, t]) == 1
            continue
        powers = np.array([p ** e for e in range(3)], dtype=np.float64)
        np.testing.assert_allclose(G[t], G[t, 0] * powers, rtol=0, atol=1e-15)
        np.testing.assert_array_equal(AT[:, t], [p ** e for e in range(m)])
    # Bᵀ and Aᵀ hold small integers: the transforms of data round nothing in float
    assert np.array_equal(BT, np.round(BT)) and np.array_equal(AT, np.round(AT))


@pytest.mark.parametrize("m", [2, 4])
def test_one_tile_in_two_dimensions(rng, m):
    """Y = Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A is the 3x3 correlation of one (m+2)² tile."""
    AT, G, BT = (np.array(a, dtype=np.float64) for a in winograd.MATRICES[m])
    d, g = rng.standard_normal((m + 2, m + 2)), rng.standard_normal((3, 3))
    direct = np.array([[np.sum(d[i:i + 3, j:j + 3] * g) for j in range(m)]
                       for i in range(m)])
    np.testing.assert_allclose(AT @ ((G @ g @ G.T) * (BT @ d @ BT.T)) @ AT.T, direct,
                               rtol=0, atol=1e-12)


# ---------------------------------------------------------- forward and gradient

@st.composite
def winograd_case(draw):
    """(x_shape, O, padding, m): a 3x3 stride-1 geometry with at least one output,
    paddings up to 3 (beyond 2 the input gradient crops), either tile size or the rule."""
    N, C, O = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    PH, PW = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    H = draw(st.integers(max(1, 3 - 2 * PH), 11))
    W = draw(st.integers(max(1, 3 - 2 * PW), 11))
    return (N, C, H, W), O, (PH, PW), draw(st.sampled_from([2, 4, None]))


def _reference_forward(x, w, padding):
    N, C, H, W = x.shape
    cols = im2col(x, 3, 3, PH=padding[0], PW=padding[1])
    OH, OW = cols.shape[-2:]
    return (w.reshape(len(w), -1) @ cols.reshape(N, C * 9, OH * OW)).reshape(
        N, len(w), OH, OW)


def _reference_input_grad(g, w, x_shape, padding):
    N, O, OH, OW = g.shape
    gcols = (w.reshape(O, -1).T @ g.reshape(N, O, OH * OW)).reshape(
        N, x_shape[1], 3, 3, OH, OW)
    return col2im(gcols, x_shape, PH=padding[0], PW=padding[1])


def _reference_weight_grad(x, g, padding):
    N, O, OH, OW = g.shape
    cols = im2col(x, 3, 3, PH=padding[0], PW=padding[1]).reshape(N, -1, OH * OW)
    return (g.reshape(N, O, OH * OW) @ cols.swapaxes(1, 2)).sum(axis=0).reshape(
        O, x.shape[1], 3, 3)


def _close(got, want, dtype):
    assert got.dtype == dtype and got.shape == want.shape
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL[dtype] * scale)


@SETTINGS
@given(winograd_case(), DTYPES, st.sampled_from(sorted(IMPLS)), st.booleans())
def test_forward_and_gradients_equal_im2col(rng, case, dtype, impl, bias):
    x_shape, O, padding, m = case
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal((O, x_shape[1], 3, 3))
    b = rng.standard_normal(O) if bias else None
    want = _reference_forward(x, w, padding) + (0 if b is None else b.reshape(1, O, 1, 1))
    cast = (lambda a: None if a is None else a.astype(dtype))
    got = IMPLS[impl].conv2d_forward(cast(x), cast(w), cast(b), padding, m)
    _close(got, want, dtype)
    g = rng.standard_normal(want.shape)
    gx = IMPLS[impl].conv2d_input_grad(cast(g), cast(w), x_shape, padding, m)
    _close(gx, _reference_input_grad(g, w, x_shape, padding), dtype)
    gw = IMPLS[impl].conv2d_weight_grad(cast(x), cast(g), padding, m)
    _close(gw, _reference_weight_grad(x, g, padding), dtype)


@SETTINGS
@given(winograd_case(), DTYPES, st.sampled_from(["winograd", "winograd_2x2",
                                                  "winograd_4x4"]),
       st.sampled_from(["auto", "reference"]))
def test_conv2d_forced_winograd_equals_torch(torch, case, dtype, algorithm, kernels):
    """Through the op: forward and all three gradients against torch, on the compiled
    ("auto") and the portable ("reference") kernels."""
    x_shape, O, padding, _ = case
    rng = np.random.default_rng(sum(x_shape) + O)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal((O, x_shape[1], 3, 3)).astype(dtype)
    b = rng.standard_normal(O).astype(dtype)
    X, Wt, B = (mc.tensor(a, requires_grad=True) for a in (x, w, b))
    with dispatch.kernels(kernels):
        y = F.conv2d(X, Wt, B, padding=padding, conv_algorithm=algorithm)
        g = rng.standard_normal(y.shape).astype(dtype)
        y.backward(mc.tensor(g))
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.conv2d(tx, tw, tb, padding=padding)
    ty.backward(torch.tensor(g))
    for got, want in [(y, ty), (X.grad, tx.grad), (Wt.grad, tw.grad), (B.grad, tb.grad)]:
        _close(got.numpy(), want.detach().numpy().astype(np.float64), dtype)


@pytest.mark.parametrize("padding", [1, "same"])
def test_unbatched_and_same_padding(rng, torch, padding):
    x, w = rng.standard_normal((3, 6, 5)), rng.standard_normal((2, 3, 3, 3))
    got = F.conv2d(mc.tensor(x), mc.tensor(w), padding=padding, conv_algorithm="winograd")
    want = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), padding=padding)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("impl", sorted(IMPLS))
def test_float32_accuracy_as_stated(rng, impl):
    """The module docstring's figures: in float32, F(2x2) rounds like im2col (~5e-7 of
    the largest output), F(4x4) about twenty times more (~1e-5)."""
    x, w = rng.standard_normal((2, 64, 12, 12)), rng.standard_normal((16, 64, 3, 3))
    exact = _reference_forward(x, w, (1, 1))
    x32, w32 = x.astype(np.float32), w.astype(np.float32)
    error = {}
    for m in (2, 4):
        y = IMPLS[impl].conv2d_forward(x32, w32, None, (1, 1), m)
        error[m] = np.abs(y - exact).max() / np.abs(exact).max()
    im2col32 = np.abs(_reference_forward(x32, w32, (1, 1)) - exact).max() / np.abs(exact).max()
    assert error[2] < 2e-6 and error[4] < 5e-5, error
    assert error[2] < 4 * im2col32 and error[4] > 2 * error[2], (error, im2col32)
    # the weight gradient sums over every tile: the same orders of magnitude
    g = rng.standard_normal(exact.shape)
    exact = _reference_weight_grad(x, g, (1, 1))
    for m in (2, 4):
        gw = IMPLS[impl].conv2d_weight_grad(x32, g.astype(np.float32), (1, 1), m)
        error[m] = np.abs(gw - exact).max() / np.abs(exact).max()
    assert error[2] < 2e-6 and error[4] < 5e-5, error


# ----------------------------------------------------------- choosing the algorithm

def test_choose_tile_counts_products():
    # 8x8: 16 tiles of 16 products (F2) vs 4 of 36 (F4)
    assert winograd.choose_tile(8, 8) == 4
    # 4x4: 4·16 = 64 vs 1·36: F4
    assert winograd.choose_tile(4, 4) == 4
    # 2x2: 1 tile of 16 vs 1 of 36; 6x6: 9·16 = 144 = 4·36, a tie goes to F2
    assert winograd.choose_tile(2, 2) == 2 and winograd.choose_tile(6, 6) == 2
    assert winograd.choose_tile(1, 9) == 2


def test_unsupported_names_every_reason():
    assert winograd.unsupported((4, 3, 3, 3), (1, 1), (1, 1), 1) is None
    reason = winograd.unsupported((4, 1, 5, 3), (2, 1), (1, 2), 3)
    assert all(s in reason for s in ("kernel 5x3", "stride (2, 1)", "dilation (1, 2)",
                                      "groups=3"))


def _recording(monkeypatch):
    """Record which conv2d implementation runs: 'winograd' (portable), 'numba_winograd',
    or 'im2col' (anything else)."""
    calls = []
    for module, name in [(winograd, "winograd"), (numba_winograd, "numba_winograd")]:
        for fn in ("conv2d_forward", "conv2d_input_grad", "conv2d_weight_grad"):
            original = getattr(module, fn)

            def wrapped(*args, _original=original, _name=f"{name}.{fn}"):
                calls.append(_name)
                return _original(*args)
            monkeypatch.setattr(module, fn, wrapped)
    return calls


def _step(x_shape=(2, 3, 6, 6), w_shape=(4, 3, 3, 3), **kw):
    rng = np.random.default_rng(0)
    x = mc.tensor(rng.standard_normal(x_shape), requires_grad=True)
    w = mc.tensor(rng.standard_normal(w_shape), requires_grad=True)
    F.conv2d(x, w, padding=1, **kw).sum().backward()
    return x.grad.numpy(), w.grad.numpy()


@pytest.mark.parametrize("x_shape, winograd", [
    ((32, 64, 32, 32), True), ((32, 128, 16, 16), True), ((32, 256, 8, 8), True),
    ((32, 512, 4, 4), True),        # 32 tiles: just enough
    ((1, 512, 14, 14), False),      # 16 tiles: GEMMs too thin
    ((1, 256, 56, 56), True), ((1, 64, 224, 224), True),
    ((32, 32, 16, 16), False),      # too few channels
])
def test_auto_rule(x_shape, winograd):
    C = x_shape[1]
    want = ("winograd", 4) if winograd else ("im2col", None)
    assert F.auto_algorithm(x_shape, (C, C, 3, 3), (1, 1), (1, 1), 1) == want
    # never where Winograd cannot run
    for w_shape, stride, dilation, groups in [((C, C, 5, 5), (1, 1), (1, 1), 1),
                                              ((C, C, 3, 3), (2, 2), (1, 1), 1),
                                              ((C, C, 3, 3), (1, 1), (2, 2), 1),
                                              ((C, C // 2, 3, 3), (1, 1), (1, 1), 2)]:
        assert F.auto_algorithm(x_shape, w_shape, stride, dilation, groups) == (
            "im2col", None)


def test_auto_rule_refuses_shapes_of_the_wrong_rank():
    with pytest.raises(ValueError, match=r"auto_algorithm: x_shape must have 4 sizes .* "
                                         r"got \(3, 4, 5\)"):
        F.auto_algorithm((3, 4, 5), (4, 4, 3, 3), (1, 1), (1, 1), 1)
    with pytest.raises(ValueError, match="auto_algorithm: w_shape must have 4 sizes"):
        F.auto_algorithm((1, 4, 5, 5), (4, 4, 3), (1, 1), (1, 1), 1)


def test_auto_takes_winograd_on_the_fast_path_only(monkeypatch):
    calls = _recording(monkeypatch)
    rng = np.random.default_rng(0)
    x = mc.tensor(rng.standard_normal((1, 64, 28, 28)))         # 49 tiles, 64 channels
    w = mc.tensor(rng.standard_normal((64, 64, 3, 3)) * 0.05, requires_grad=True)
    with dispatch.kernels("auto"):
        fast_out = F.conv2d(x, w, padding=1)
    assert fast_out.grad_fn.algorithm == ("winograd", 4)
    assert calls == ["numba_winograd.conv2d_forward"]
    calls.clear()
    with dispatch.kernels("reference"):
        ref_out = F.conv2d(x, w, padding=1)
    assert ref_out.grad_fn.algorithm == ("im2col", None) and calls == []
    np.testing.assert_allclose(fast_out.numpy(), ref_out.numpy(), rtol=1e-10, atol=1e-10)


def test_default_is_im2col_for_small_layers_and_forcing_selects(monkeypatch):
    calls = _recording(monkeypatch)
    assert F.get_conv_algorithm() == "auto"
    reference = _step()
    assert calls == []
    with dispatch.kernels("auto"):
        got = _step(conv_algorithm="winograd")
    assert calls == ["numba_winograd.conv2d_forward", "numba_winograd.conv2d_input_grad",
                     "numba_winograd.conv2d_weight_grad"]
    np.testing.assert_allclose(got[0], reference[0], atol=1e-12)
    np.testing.assert_allclose(got[1], reference[1], atol=1e-12)
    calls.clear()
    with dispatch.kernels("reference"):
        _step(conv_algorithm="winograd_4x4")
    assert calls == ["winograd.conv2d_forward", "winograd.conv2d_input_grad",
                     "winograd.conv2d_weight_grad"]


def test_context_manager_sets_and_restores(monkeypatch):
    calls = _recording(monkeypatch)
    with mc.conv_algorithm("winograd"):
        assert F.get_conv_algorithm() == "winograd"
        _step()
        assert len(calls) == 3
        _step(conv_algorithm="im2col")          # the call's own choice wins
        assert len(calls) == 3
        with mc.conv_algorithm("im2col"):
            _step()
            assert len(calls) == 3
        assert F.get_conv_algorithm() == "winograd"
    assert F.get_conv_algorithm() == "auto"
    previous = F.set_conv_algorithm("winograd_2x2")
    try:
        assert previous == ("auto", True)
    finally:
        F.set_conv_algorithm(*previous)


def test_forcing_on_an_unsupported_convolution(monkeypatch):
    x = mc.tensor(np.zeros((1, 2, 7, 7)))
    with pytest.raises(ValueError, match=r"conv2d: conv_algorithm='winograd' needs a 3x3 "
                                         r"kernel.*stride \(2, 2\)"):
        F.conv2d(x, mc.tensor(np.zeros((3, 2, 3, 3))), stride=2, conv_algorithm="winograd")
    with mc.conv_algorithm("winograd_4x4"):
        with pytest.raises(ValueError, match="kernel 5x5"):
            F.conv2d(x, mc.tensor(np.zeros((3, 2, 5, 5))))
        with pytest.raises(ValueError, match="groups=2"):
            F.conv2d(x, mc.tensor(np.zeros((2, 1, 3, 3))), groups=2)
    # strict=False: such layers keep im2col, the rest run Winograd
    calls = _recording(monkeypatch)
    with mc.conv_algorithm("winograd", strict=False):
        F.conv2d(x, mc.tensor(np.ones((3, 2, 3, 3))), stride=2)
        assert calls == []
        F.conv2d(x, mc.tensor(np.ones((3, 2, 3, 3))))
        assert len(calls) == 1


def test_unknown_algorithm_is_an_error():
    x, w = mc.tensor(np.zeros((1, 2, 5, 5))), mc.tensor(np.zeros((3, 2, 3, 3)))
    with pytest.raises(ValueError, match=r"conv2d: conv_algorithm must be one of 'auto', "
                                         r"'im2col', .* got 'fft'"):
        F.conv2d(x, w, conv_algorithm="fft")
    with pytest.raises(ValueError, match="set_conv_algorithm: conv_algorithm must be"):
        with mc.conv_algorithm("Winograd"):
            pass
    assert F.get_conv_algorithm() == "auto"


def test_portable_winograd_runs_on_the_device(monkeypatch, rng):
    """On (fake) CuPy arrays the portable Winograd runs on the device: no host copy, the
    same numbers as on the CPU."""
    from fake_cupy import FakeDeviceArray, install, to_host
    x, w, b = (rng.standard_normal(s) for s in [(2, 3, 7, 6), (4, 3, 3, 3), (4,)])
    want = [_step_arrays(x, w, b, "cpu")]
    install(monkeypatch)
    got = _step_arrays(x, w, b, "cuda")
    assert all(isinstance(a, FakeDeviceArray) for a in got)
    for g, h in zip(got, want[0]):
        np.testing.assert_allclose(to_host(g), h, rtol=0, atol=1e-12)


def _step_arrays(x, w, b, device):
    X, Wt, B = (mc.tensor(a, device=device, requires_grad=True) for a in (x, w, b))
    y = F.conv2d(X, Wt, B, padding=1, conv_algorithm="winograd")
    (y * y).sum().backward()
    return y.array, X.grad.array, Wt.grad.array, B.grad.array


@pytest.mark.parametrize("kernels", ["auto", "reference"])
def test_empty_batch(kernels):
    x = mc.tensor(np.zeros((0, 3, 5, 5)), requires_grad=True)
    w = mc.tensor(np.ones((2, 3, 3, 3)), requires_grad=True)
    b = mc.tensor(np.ones(2), requires_grad=True)
    with dispatch.kernels(kernels):
        y = F.conv2d(x, w, b, padding=1, conv_algorithm="winograd")
        y.sum().backward()
    assert y.shape == (0, 2, 5, 5) and x.grad.shape == (0, 3, 5, 5)
    assert not w.grad.numpy().any() and not b.grad.numpy().any()


def test_a_model_under_the_context_manager(monkeypatch, rng):
    """nn layers call conv2d without naming an algorithm: the block decides; with
    strict=False the strided and 1x1 layers keep im2col, the output is the same."""
    from minicnn import nn
    mc.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.Conv2d(8, 4, 1),
                          nn.Conv2d(4, 4, 3))
    model.double()
    x = mc.tensor(rng.standard_normal((2, 3, 9, 9)))
    want = model(x).numpy()
    calls = _recording(monkeypatch)
    with mc.conv_algorithm("winograd", strict=False):
        got = model(x).numpy()
    assert len(calls) == 2                      # the two 3x3 stride-1 layers
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_every_phase_splits_over_the_blas_thread_count(monkeypatch):
    """The compiled path cuts each phase over as many threads as BLAS would use, read
    before it holds BLAS at one thread (inside, blas_threads() answers 1)."""
    from kernels import _threads
    expected = _threads.blas_threads()
    seen = []
    split = _threads.split

    def recording(count, work, threads=None):
        seen.append(threads)
        return split(count, work, threads)
    monkeypatch.setattr(_threads, "split", recording)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 8, 8))
    w = rng.standard_normal((4, 4, 3, 3))
    numba_winograd.conv2d_forward(x, w, None, (1, 1), 4)
    numba_winograd.conv2d_input_grad(x, w, x.shape, (1, 1), 4)
    numba_winograd.conv2d_weight_grad(x, x, (1, 1), 4)
    assert len(seen) >= 9 and set(seen) == {expected}
