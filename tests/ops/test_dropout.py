"""dropout and dropout2d: statistics of the masks, seeded reproducibility, the exact edge
cases (p=0, p=1, eval), whole-channel structure, gradients (the same mask as the forward
pass, checked against torch multiplying by minicnn's mask, and by finite differences),
and every error."""
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import minicnn as mc
from minicnn import functional as F
from minicnn.utils.gradcheck import gradcheck
from minicnn.utils.torch_compare import compare_with_torch

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def _seeded(fn, seed):
    """fn with minicnn re-seeded before every call: one mask for every evaluation."""
    def run(*args):
        mc.manual_seed(seed)
        return fn(*args)
    return run


# ===================================================================== statistics

@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_drops_a_fraction_p_and_preserves_the_mean(p):
    y = F.dropout(mc.ones(400, 500, dtype=mc.float64), p).numpy()   # 200 000 units
    dropped = y == 0
    # binomial standard deviations: fraction ≈ 1.1e-3, mean ≤ 4.5e-3; bounds are ~8σ
    assert abs(dropped.mean() - p) < 0.01
    assert abs(y.mean() - 1.0) < 0.04
    np.testing.assert_array_equal(y[~dropped], 1 / (1 - p))      # inverted scaling


@pytest.mark.parametrize("p", [0.25, 0.6])
def test_dropout2d_drops_a_fraction_p_of_channels(p):
    y = F.dropout2d(mc.ones(200, 100, 2, 3, dtype=mc.float64), p).numpy()
    per_channel = y.reshape(200, 100, 6)
    # whole channels: every (n, c) slice is all zero or all 1/(1-p)
    assert (per_channel.min(-1) == per_channel.max(-1)).all()
    assert set(np.unique(per_channel)) <= {0.0, 1 / (1 - p)}
    assert abs((per_channel[..., 0] == 0).mean() - p) < 0.03     # 20 000 channels
    assert abs(y.mean() - 1.0) < 0.06


# ================================================================= reproducibility

def test_manual_seed_fixes_the_mask_and_successive_calls_differ():
    x = mc.randn(6, 7, dtype=mc.float64)
    mc.manual_seed(11)
    a, b = F.dropout(x, 0.5).numpy(), F.dropout(x, 0.5).numpy()
    mc.manual_seed(11)
    a2 = F.dropout(x, 0.5).numpy()
    mc.manual_seed(12)
    c = F.dropout(x, 0.5).numpy()
    np.testing.assert_array_equal(a, a2)
    assert not np.array_equal(a == 0, b == 0)
    assert not np.array_equal(a == 0, c == 0)


def test_mask_does_not_depend_on_dtype():
    x = np.random.default_rng(0).standard_normal((5, 4, 3, 2))
    mc.manual_seed(3)
    y64 = F.dropout2d(mc.tensor(x), 0.4).numpy()
    mc.manual_seed(3)
    y32 = F.dropout2d(mc.tensor(x.astype(np.float32)), 0.4)
    assert y32.dtype == np.float32
    np.testing.assert_array_equal(y64 == 0, y32.numpy() == 0)


# ====================================================================== edge cases

@pytest.mark.parametrize("fn", [F.dropout, F.dropout2d])
def test_p_zero_and_eval_are_the_identity(fn):
    x = mc.randn(3, 4, 2, 2, requires_grad=True)
    assert fn(x, 0.0) is x
    assert fn(x, 0.7, training=False) is x
    assert fn(x, 1.0, training=False) is x


@pytest.mark.parametrize("fn", [F.dropout, F.dropout2d])
def test_p_one_gives_exact_zeros_and_zero_gradient(fn):
    x = mc.tensor(np.array([[[[1e30, -2.0], [0.5, 3.0]]]]), requires_grad=True)
    y = fn(x, 1.0)
    assert not np.isnan(y.numpy()).any()
    np.testing.assert_array_equal(y.numpy(), 0.0)
    y.backward(mc.tensor(np.ones((1, 1, 2, 2))))
    np.testing.assert_array_equal(x.grad.numpy(), 0.0)


def test_inplace_is_accepted_and_computes_out_of_place():
    x = mc.ones(4, 5)
    y = F.dropout(x, 0.5, inplace=True)
    assert y is not x
    np.testing.assert_array_equal(x.numpy(), 1.0)
    assert (y.numpy() == 0).any()


def test_empty_input_and_no_grad():
    x = mc.zeros(0, 3)
    assert F.dropout(x, 0.5) is x
    with mc.no_grad():
        y = F.dropout(mc.ones(4, 4, requires_grad=True), 0.5)
    assert not y.requires_grad


# ======================================================================= gradients

def _compare_with_torch_same_mask(torch, op, shape, p, seed):
    """``op(x, p)`` against torch multiplying x by the mask minicnn draws with the same
    seed (the two libraries' random streams differ), in float64 and float32."""
    mc_fn = _seeded(lambda x: op(x, p), seed)

    def torch_fn(x):
        mask = mc_fn(mc.ones(*shape, dtype=str(x.dtype)[6:])).numpy()
        return x * torch.from_numpy(mask.copy())
    x = np.random.default_rng(seed).standard_normal(shape)
    compare_with_torch(mc_fn, torch_fn, [x])
    compare_with_torch(mc_fn, torch_fn, [x], dtype=np.float32)


@SETTINGS
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=4),
       p=st.floats(0.05, 0.95), seed=st.integers(0, 2**16))
def test_dropout_matches_torch_with_the_same_mask(torch, shape, p, seed):
    _compare_with_torch_same_mask(torch, F.dropout, shape, p, seed)


@SETTINGS
@given(shape=st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 3),
                       st.integers(1, 3)),
       p=st.floats(0.05, 0.95), seed=st.integers(0, 2**16))
def test_dropout2d_matches_torch_with_the_same_mask(torch, shape, p, seed):
    _compare_with_torch_same_mask(torch, F.dropout2d, shape, p, seed)


def test_dropout_eval_and_p_one_match_torch(torch):
    x = np.random.default_rng(0).standard_normal((3, 4, 2, 2))
    for mc_fn, th_fn in [(F.dropout, torch.nn.functional.dropout),
                         (F.dropout2d, torch.nn.functional.dropout2d)]:
        compare_with_torch(lambda a: mc_fn(a, 1.0), lambda a: th_fn(a, 1.0), [x])
        compare_with_torch(lambda a: mc_fn(a, 0.3, training=False),
                           lambda a: th_fn(a, 0.3, training=False), [x])


@pytest.mark.parametrize("fn,shape", [(F.dropout, (3, 4)), (F.dropout2d, (2, 3, 2, 2))])
def test_dropout_gradcheck_with_fixed_mask(fn, shape):
    x = mc.tensor(np.random.default_rng(0).standard_normal(shape), requires_grad=True)
    gradcheck(_seeded(lambda a: fn(a, 0.4), 5), x)


def test_gradient_is_the_forward_mask():
    x = mc.tensor(np.random.default_rng(1).standard_normal((2, 3, 4, 4)), requires_grad=True)
    y = F.dropout2d(x, 0.5)
    g = np.random.default_rng(2).standard_normal(y.shape)
    y.backward(mc.tensor(g))
    mask = y.numpy() / x.numpy()
    np.testing.assert_allclose(x.grad.numpy(), g * mask, rtol=1e-6)


# ====================================================================== dropout2d ranks

def test_dropout2d_3d_input_is_read_as_n_c_l_with_a_warning():
    with pytest.warns(UserWarning, match=r"dropout2d: received a 3-D input.*\(N, C, L\)"):
        y = F.dropout2d(mc.ones(8, 6, 5), 0.5).numpy()
    # the mask varies along dims 0 and 1 and is constant along the last (as torch)
    assert (y.min(-1) == y.max(-1)).all()
    assert len(np.unique(y[:, :, 0])) == 2


@pytest.mark.parametrize("shape", [(6, 8), (3, 4, 2, 2, 2)])
def test_dropout2d_other_ranks_warn_and_drop_dim1(shape):
    with pytest.warns(UserWarning, match=r"dropout2d: received a \d-D input"):
        y = F.dropout2d(mc.ones(*shape), 0.5).numpy()
    flat = y.reshape(shape[0], shape[1], -1)
    assert (flat.min(-1) == flat.max(-1)).all()


def test_dropout2d_4d_input_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        F.dropout2d(mc.ones(2, 3, 2, 2), 0.5)


# =========================================================================== errors

@pytest.mark.parametrize("fn", [F.dropout, F.dropout2d])
@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan"), "0.5", None])
def test_p_outside_zero_one_is_rejected(fn, p):
    with pytest.raises(ValueError, match=fn.__name__ + r": dropout probability p has to be "
                                                       r"between 0 and 1, but got"):
        fn(mc.ones(2, 3, 2, 2), p)


def test_dropout_errors_on_rank_and_dtype():
    with pytest.raises(RuntimeError, match=r"dropout2d: feature dropout requires at least 2 "
                                           r"dimensions.*\(5,\)"):
        F.dropout2d(mc.ones(5), 0.5)
    with pytest.raises(TypeError, match=r"dropout: expected a floating-point input"):
        F.dropout(mc.tensor([1, 2, 3]), 0.5)
