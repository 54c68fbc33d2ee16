"""The fused ops against torch and against minicnn's own unfused composition:
relu_max_pool2d = max_pool2d(relu(x)) and batch_norm_relu = relu(batch_norm(x)), values
and every gradient (float64 tight, float32 loose) over hypothesis-drawn shapes, windows
and hyper-parameters; ties, all-negative windows, padding, -inf and NaN; the running
statistics; finite differences; and the errors, which name the fused op."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import minicnn as mc
from minicnn import functional as F
from minicnn.utils.gradcheck import gradcheck
from minicnn.utils.torch_compare import compare_with_torch
from strategies import pool2d_arguments
# bn_setups: batch_norm's drawn shapes and hyper-parameters
from test_normalization import F32_MAX_AMPLIFICATION, bn_setups, float32_amplification

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
DTYPES = (np.float64, np.float32)


def _reaches_input(shape, kw):
    """Whether every window of this pool reads the input (dilated windows may not;
    both ops refuse those, see test_errors)."""
    try:
        F.max_pool2d(mc.zeros(*shape), **kw)
    except ValueError:
        return False
    return True


def _pool_input(rng, shape, kind):
    """'ties': small integers, many equal maxima, zeros and all-negative windows;
    'negative': every value below 0 (every output 0, no gradient); 'mixed': normal."""
    if kind == "ties":
        return rng.integers(-3, 3, size=shape).astype(float)
    if kind == "negative":
        return -rng.random(shape) - 0.1
    return rng.standard_normal(shape)


# ============================================================== relu_max_pool2d

@SETTINGS
@given(pool2d_arguments(), st.sampled_from(["ties", "negative", "mixed"]),
       st.integers(0, 2**31))
def test_relu_max_pool2d_matches_torch(torch, case, kind, seed):
    shape, kw = case
    if not _reaches_input(shape, kw):
        return
    x = _pool_input(np.random.default_rng(seed), shape, kind)
    tF = torch.nn.functional
    for dtype in DTYPES:
        # ties: torch's max pooling of relu(x) takes the first of equal maxima, as the
        # fused op does, and every value is exact, so float32 too compares tightly
        compare_with_torch(lambda v: F.relu_max_pool2d(v, **kw),
                           lambda v: tF.max_pool2d(tF.relu(v), **kw), [x], dtype=dtype,
                           name=f"relu_max_pool2d {kw}")


@SETTINGS
@given(pool2d_arguments(), st.integers(0, 2**31), st.sampled_from(DTYPES),
       st.booleans())
def test_relu_max_pool2d_equals_the_unfused_ops_bit_for_bit(case, seed, dtype, special):
    # against minicnn's own max_pool2d(relu(x)), with -inf and NaN too (torch's relu
    # passes a NaN's gradient on, minicnn's relu does not: the fused op is minicnn's)
    shape, kw = case
    if not _reaches_input(shape, kw):
        return
    rng = np.random.default_rng(seed)
    x = rng.integers(-3, 3, size=shape).astype(dtype)
    if special:
        x[rng.random(shape) < 0.15] = -np.inf
        x[rng.random(shape) < 0.1] = np.nan
    g = rng.standard_normal(F.max_pool2d(mc.tensor(x), **kw).shape).astype(dtype)
    results = []
    for fn in (lambda v: F.relu_max_pool2d(v, **kw), lambda v: F.max_pool2d(F.relu(v), **kw)):
        t = mc.tensor(x, requires_grad=True)
        out = fn(t)
        out.backward(mc.tensor(g))
        results.append((out.numpy(), t.grad.numpy()))
        with mc.no_grad():                         # the forward without argmax bookkeeping
            np.testing.assert_array_equal(fn(mc.tensor(x)).numpy(), out.numpy())
    (fused, fused_grad), (plain, plain_grad) = results
    assert fused.dtype == dtype and fused_grad.dtype == dtype
    np.testing.assert_array_equal(fused, plain)              # NaN in the same places
    np.testing.assert_array_equal(fused_grad, plain_grad)


def test_relu_max_pool2d_hand_values():
    # window 1: all negative -> 0, no gradient; window 2: tie at 2 -> the first one;
    # window 3: 0 and negatives -> 0, no gradient (relu'(0) = 0); window 4: padding never wins
    x = mc.tensor([[[[-1.0, -2.0, 2.0, 2.0],
                     [-3.0, -0.5, 1.0, 0.0],
                     [0.0, -1.0, -7.0, 3.0],
                     [-2.0, -4.0, -1.0, -2.0]]]], requires_grad=True)
    out = F.relu_max_pool2d(x, 2)
    np.testing.assert_array_equal(out.numpy(), [[[[0.0, 2.0], [0.0, 3.0]]]])
    out.backward(mc.tensor([[[[10.0, 20.0], [30.0, 40.0]]]]))
    want = np.zeros((4, 4))
    want[0, 2], want[2, 3] = 20.0, 40.0
    np.testing.assert_array_equal(x.grad.numpy()[0, 0], want)
    # padding: a window of negatives beside the pad gives 0, not the pad's -inf
    y = F.relu_max_pool2d(mc.tensor(-np.ones((1, 1, 3, 3))), 3, stride=1, padding=1)
    np.testing.assert_array_equal(y.numpy(), np.zeros((1, 1, 3, 3)))


def test_relu_max_pool2d_unbatched_and_integers(torch):
    x = np.random.default_rng(3).standard_normal((2, 5, 6))
    tF = torch.nn.functional
    compare_with_torch(lambda v: F.relu_max_pool2d(v, 2, padding=1),
                       lambda v: tF.max_pool2d(tF.relu(v), 2, padding=1), [x])
    ints = np.arange(-12, 12).reshape(1, 2, 3, 4)
    got = F.relu_max_pool2d(mc.tensor(ints), 2, ceil_mode=True)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got.numpy(),
                                  tF.max_pool2d(tF.relu(torch.tensor(ints).double()), 2,
                                                ceil_mode=True).numpy())


@pytest.mark.parametrize("kw", [dict(kernel_size=2), dict(kernel_size=3, stride=1, padding=1),
                                dict(kernel_size=(2, 3), stride=(1, 2), dilation=(2, 1),
                                     ceil_mode=True)])
def test_relu_max_pool2d_gradcheck(kw):
    # distinct values away from 0 and from each other: finite differences never cross a
    # kink of relu or of the max
    rng = np.random.default_rng(7)
    x = (rng.permutation(40) - 19.5) * 0.05
    gradcheck(lambda v: F.relu_max_pool2d(v, **kw),
              mc.tensor(x.reshape(2, 2, 5, 2), requires_grad=True))


def test_relu_max_pool2d_errors():
    x = mc.randn(1, 2, 4, 4)
    with pytest.raises(ValueError, match=r"relu_max_pool2d: expected a 3-D \(C, H, W\) or "
                                         r"4-D"):
        F.relu_max_pool2d(mc.randn(4, 4), 2)
    with pytest.raises(ValueError, match=r"relu_max_pool2d: padding .* must be at most half"):
        F.relu_max_pool2d(x, 2, padding=2)
    with pytest.raises(ValueError, match=r"relu_max_pool2d: .*kernel_size"):
        F.relu_max_pool2d(x, 0)
    with pytest.raises(ValueError, match=r"relu_max_pool2d: .*stride"):
        F.relu_max_pool2d(x, 2, stride=0)
    with pytest.raises(ValueError, match=r"relu_max_pool2d: the output would be empty"):
        F.relu_max_pool2d(x, 5)
    with pytest.raises(ValueError, match=r"relu_max_pool2d: output column 0 would pool "
                                         r"nothing but padding"):
        F.relu_max_pool2d(mc.zeros(1, 2, 1, 1), (1, 2), padding=(0, 1), dilation=(1, 2))
    with pytest.raises(ValueError, match=r"relu_max_pool2d: channels, height and width must "
                                         r"be non-zero"):
        F.relu_max_pool2d(mc.zeros(1, 0, 4, 4), 2)
    with pytest.raises(TypeError, match=r"relu_max_pool2d"):
        F.relu_max_pool2d(mc.tensor(np.ones((1, 1, 2, 2), dtype=bool)), 2)


def test_relu_max_pool2d_empty_batch():
    x = mc.zeros(0, 3, 4, 4, requires_grad=True)
    out = F.relu_max_pool2d(x, 2)
    assert out.shape == (0, 3, 2, 2)
    out.sum().backward()
    assert x.grad.shape == (0, 3, 4, 4)


# ============================================================== batch_norm_relu

def _bn_relu_pair(torch, s, fused=True):
    """minicnn's batch_norm_relu (or relu(batch_norm)) and torch's relu(batch_norm),
    each returning the output and the updated copies of the running statistics."""
    kw = dict(training=s["training"], momentum=s["momentum"], eps=s["eps"])

    def mc_fn(x, rm, rv, w, b):
        rm, rv = rm.clone(), rv.clone()
        w, b = (w, b) if s["affine"] else (None, None)
        y = (F.batch_norm_relu(x, rm, rv, w, b, **kw) if fused
             else F.relu(F.batch_norm(x, rm, rv, w, b, **kw)))
        return y, rm, rv

    def th_fn(x, rm, rv, w, b):
        rm, rv = rm.clone(), rv.clone()
        w, b = (w, b) if s["affine"] else (None, None)
        tF = torch.nn.functional
        return tF.relu(tF.batch_norm(x, rm, rv, w, b, **kw)), rm, rv
    return mc_fn, th_fn


def _bn_inputs(s):
    rng = np.random.default_rng(s["seed"])
    c = s["shape"][1]
    return [rng.standard_normal(s["shape"]), rng.standard_normal(c), rng.random(c) + 0.5,
            rng.standard_normal(c), rng.standard_normal(c)]


@SETTINGS
@given(setup=bn_setups())
def test_batch_norm_relu_matches_torch(torch, setup):
    inputs = _bn_inputs(setup)
    mc_fn, th_fn = _bn_relu_pair(torch, setup)
    grads = [True, False, False, setup["affine"], setup["affine"]]
    compare_with_torch(mc_fn, th_fn, inputs, grads)
    x = inputs[0]
    amplification = (float32_amplification(x, (0,) + tuple(range(2, x.ndim)), setup["eps"])
                     if setup["training"] else 0.0)
    if amplification < F32_MAX_AMPLIFICATION:
        compare_with_torch(mc_fn, th_fn, inputs, grads, dtype=np.float32, rtol=1e-4,
                           atol=1e-4)


@SETTINGS
@given(setup=bn_setups(), dtype=st.sampled_from(DTYPES))
def test_batch_norm_relu_equals_relu_of_batch_norm(setup, dtype):
    # against minicnn's own unfused pair: the same output, gradients and statistics (up
    # to the order of float sums: relu's mask is applied inside the reductions)
    inputs = [mc.tensor(a.astype(dtype)) for a in _bn_inputs(setup)]
    g = np.random.default_rng(1).standard_normal(setup["shape"]).astype(dtype)
    results = []
    for fused in (True, False):
        leaves = [mc.tensor(t.numpy(), requires_grad=i in (0, 3, 4) and
                            (i == 0 or setup["affine"])) for i, t in enumerate(inputs)]
        y, rm, rv = _bn_relu_pair(None, setup, fused)[0](*leaves)
        y.backward(mc.tensor(g))
        results.append([y.numpy(), rm.numpy(), rv.numpy()]
                       + [t.grad.numpy() for t in leaves if t.requires_grad])
    tight = dict(rtol=1e-12, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-5)
    for got, want in zip(*results):
        assert got.dtype == want.dtype
        np.testing.assert_allclose(got, want, **tight)
    assert (results[0][0] >= 0).all()


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_relu_gradcheck(training):
    rng = np.random.default_rng(0)
    x = mc.tensor(rng.standard_normal((4, 3, 2, 2)), requires_grad=True)
    w = mc.tensor(rng.standard_normal(3), requires_grad=True)
    b = mc.tensor(rng.standard_normal(3), requires_grad=True)
    rm, rv = rng.standard_normal(3), rng.random(3) + 0.5

    def fn(x, w, b):
        return F.batch_norm_relu(x, mc.tensor(rm), mc.tensor(rv), w, b, training=training)
    gradcheck(fn, x, w, b)


def test_batch_norm_relu_running_stats_follow_torch_over_steps(torch):
    rng = np.random.default_rng(5)
    rm, rv = mc.zeros(3, dtype=mc.float64), mc.ones(3, dtype=mc.float64)
    trm, trv = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    array_before = rm.array
    for step in range(4):
        x = 3 * rng.standard_normal((4, 3, 5)) + step
        F.batch_norm_relu(mc.tensor(x), rm, rv, training=True, momentum=0.2)
        torch.nn.functional.batch_norm(torch.tensor(x), trm, trv, training=True, momentum=0.2)
    assert rm.array is array_before                     # updated in place
    np.testing.assert_allclose(rm.numpy(), trm.numpy(), rtol=1e-12)
    np.testing.assert_allclose(rv.numpy(), trv.numpy(), rtol=1e-12)
    with mc.no_grad():                                  # no graph: statistics still move
        F.batch_norm_relu(mc.tensor(x), rm, rv, training=True)
    assert not np.allclose(rm.numpy(), trm.numpy())


def test_batch_norm_relu_empty_batch_keeps_statistics():
    rm, rv = mc.zeros(3), mc.ones(3)
    x = mc.zeros(0, 3, 2, 2, requires_grad=True)
    w = mc.ones(3, requires_grad=True)
    y = F.batch_norm_relu(x, rm, rv, w, None, training=True)
    y.sum().backward()
    assert y.shape == (0, 3, 2, 2) and w.grad.tolist() == [0.0, 0.0, 0.0]
    assert rm.tolist() == [0.0] * 3 and rv.tolist() == [1.0] * 3


def test_batch_norm_relu_errors():
    x = mc.randn(2, 3, 4)
    with pytest.raises(RuntimeError, match=r"batch_norm_relu: running_mean should contain 3"):
        F.batch_norm_relu(x, mc.zeros(4), mc.ones(3), training=True)
    with pytest.raises(RuntimeError, match=r"batch_norm_relu: expected weight of shape \(3,\)"):
        F.batch_norm_relu(x, mc.zeros(3), mc.ones(3), mc.ones(4), training=True)
    with pytest.raises(ValueError, match=r"batch_norm_relu: Expected more than 1 value"):
        F.batch_norm_relu(mc.randn(1, 3), mc.zeros(3), mc.ones(3), training=True)
    with pytest.raises(ValueError, match=r"batch_norm_relu: expected input of shape \(N, C\)"):
        F.batch_norm_relu(mc.randn(3), mc.zeros(3), mc.ones(3))
    with pytest.raises(RuntimeError, match=r"batch_norm_relu: running_mean and running_var "
                                           r"must be given in evaluation mode"):
        F.batch_norm_relu(x, None, None, training=False)
    with pytest.raises(TypeError, match=r"batch_norm_relu: momentum must be a number"):
        F.batch_norm_relu(x, mc.zeros(3), mc.ones(3), training=True, momentum=None)
    with pytest.raises(TypeError, match=r"batch_norm_relu: weight dtype float64 does not "
                                        r"match"):
        F.batch_norm_relu(x, mc.zeros(3), mc.ones(3), mc.ones(3, dtype=mc.float64),
                          training=True)
    with pytest.raises(TypeError, match=r"batch_norm_relu: expected a floating-point input"):
        F.batch_norm_relu(mc.tensor([[1, 2], [3, 4]]), None, None, training=True)
