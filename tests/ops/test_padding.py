"""pad: the reflect, replicate and circular modes against torch over drawn shapes and
amounts (negative ones included where torch is consistent), float64 tight and float32
loose, with every gradient; the scatter behind their backward; torch's limits as errors;
and constant padding still as before."""
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

import minicnn as mc
from minicnn import functional as F
from minicnn.functional.padding import source_index, take, take_backward
from minicnn.utils.gradcheck import gradcheck
from minicnn.utils.torch_compare import compare_with_torch

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
SEEDS = st.integers(0, 2**31 - 1)


@st.composite
def padding_setup(draw):
    """A mode, an input shape and amounts within torch's limits for that mode."""
    mode = draw(st.sampled_from(["reflect", "replicate", "circular"]))
    k = draw(st.integers(1, 3))                        # dimensions padded
    ndim = k + draw(st.integers(1, 2))                 # torch: (k+1)-D or (k+2)-D input
    shape = tuple(draw(st.integers(1, 3)) for _ in range(ndim - k)) + \
        tuple(draw(st.integers(1, 5)) for _ in range(k))
    amounts = []
    for d in range(k):
        n = shape[-1 - d]
        if mode == "reflect":        # |amount| < n, crops allowed
            lo, hi = draw(st.integers(-(n - 1), n - 1)), draw(st.integers(-(n - 1), n - 1))
        elif mode == "replicate":
            lo, hi = draw(st.integers(-(n - 1), 6)), draw(st.integers(-(n - 1), 6))
        else:                        # circular: wrap at most once; no crop beside a pad
            lo, hi = draw(st.integers(0, n)), draw(st.integers(0, n))
            if draw(st.booleans()) and n > 2:
                lo, hi = -draw(st.integers(0, (n - 1) // 2)), -draw(st.integers(0, (n - 1) // 2))
        assume(n + lo + hi >= 1)
        amounts += [lo, hi]
    return mode, shape, tuple(amounts)


@SETTINGS
@given(setup=padding_setup(), seed=SEEDS)
def test_pad_modes_match_torch(setup, seed, torch):
    mode, shape, amounts = setup
    x = np.random.default_rng(seed).standard_normal(shape)
    for dtype in (np.float64, np.float32):
        compare_with_torch(lambda a: F.pad(a, amounts, mode=mode),
                           lambda a: torch.nn.functional.pad(a, amounts, mode=mode), [x],
                           dtype=dtype, name=f"pad {mode} {shape} {amounts}")


def test_reflect_replicate_circular_on_a_row():
    row = mc.tensor(np.arange(1.0, 5.0).reshape(1, 4))      # a b c d = 1 2 3 4
    assert F.pad(row, (2, 2), mode="reflect").numpy().tolist() == [[3, 2, 1, 2, 3, 4, 3, 2]]
    assert F.pad(row, (2, 2), mode="replicate").numpy().tolist() == [[1, 1, 1, 2, 3, 4, 4, 4]]
    assert F.pad(row, (2, 2), mode="circular").numpy().tolist() == [[3, 4, 1, 2, 3, 4, 1, 2]]


def test_replicate_edge_collects_every_copy_of_its_gradient():
    x = mc.tensor(np.zeros((1, 3)), requires_grad=True)
    F.pad(x, (4, 2), mode="replicate").backward(mc.tensor(np.arange(9.0).reshape(1, 9)))
    # outputs 0..4 read x[0], 5 reads x[1], 6..8 read x[2]
    np.testing.assert_array_equal(x.grad.numpy(), [[0 + 1 + 2 + 3 + 4, 5, 6 + 7 + 8]])


@settings(max_examples=60, deadline=None)
@given(index=st.lists(st.integers(0, 5), min_size=1, max_size=12), axis=st.integers(0, 2),
       seed=SEEDS)
def test_take_backward_is_the_adjoint_of_take(index, axis, seed):
    rng = np.random.default_rng(seed)
    shape = [2, 3, 4]
    shape[axis] = len(index)
    g = rng.standard_normal(shape)
    expected_shape = list(shape)
    expected_shape[axis] = 6
    expected = np.zeros(expected_shape)
    moved = np.moveaxis(expected, axis, 0)
    np.add.at(moved, np.array(index), np.moveaxis(g, axis, 0))
    np.testing.assert_allclose(take_backward(np, g, index, 6, axis), expected, rtol=1e-12)
    # and take, its forward, is NumPy's take
    x = rng.standard_normal(expected_shape)
    np.testing.assert_array_equal(take(np, x, index, axis), np.take(x, index, axis=axis))


def test_source_index():
    assert source_index("reflect", 4, 3, 3) == [3, 2, 1, 0, 1, 2, 3, 2, 1, 0]
    assert source_index("reflect", 5, -2, 1) == [2, 3, 4, 3]
    assert source_index("replicate", 3, 2, -1) == [0, 0, 0, 1]
    assert source_index("circular", 3, 3, 1) == [0, 1, 2, 0, 1, 2, 0]


@pytest.mark.parametrize("mode,amounts,shape", [
    ("reflect", (2, 1, 1, 3), (2, 1, 4, 5)),
    ("replicate", (3, 0, 1, 2), (1, 2, 3, 3)),
    ("circular", (1, 3, 2, 0), (1, 1, 3, 4)),
    ("reflect", (1, 2, 0, 1, 1, 0), (1, 1, 2, 3, 3)),
])
def test_finite_differences(mode, amounts, shape, rng):
    gradcheck(lambda a: F.pad(a, amounts, mode=mode),
              mc.tensor(rng.standard_normal(shape), requires_grad=True))


def test_constant_mode_unchanged(torch, rng):
    x = rng.standard_normal((2, 3, 4))
    for kw in ({}, {"value": None}, {"value": 1.5}):
        compare_with_torch(lambda a: F.pad(a, (1, 2, -1, 1), **kw),
                           lambda a: torch.nn.functional.pad(a, (1, 2, -1, 1), **kw), [x])


# ---------------------------------------------------------------------------- errors

def test_reflect_padding_must_be_smaller_than_the_dimension():
    with pytest.raises(ValueError, match=r"'reflect' padding must be smaller than the size.*\(3, 0\) for dimension 2 of size 3"):
        F.pad(mc.tensor(np.zeros((1, 2, 3))), (3, 0), mode="reflect")


def test_circular_padding_wraps_at_most_once():
    with pytest.raises(ValueError, match=r"'circular' padding can wrap around at most once, got \(0, 4\)"):
        F.pad(mc.tensor(np.zeros((1, 2, 3))), (0, 4), mode="circular")


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("amounts,shape", [((1, 1), (5,)), ((1, 1), (1, 1, 2, 5)),
                                           ((1, 1, 1, 1), (2, 5)), ((1,) * 6, (2, 2, 2))])
def test_non_constant_modes_need_the_right_number_of_dimensions(mode, amounts, shape):
    with pytest.raises(ValueError, match=rf"mode '{mode}' with {len(amounts)} amounts pads the last"):
        F.pad(mc.tensor(np.zeros(shape)), amounts, mode=mode)


def test_value_belongs_to_constant_mode_only():
    with pytest.raises(ValueError, match="mode 'reflect' takes no value argument"):
        F.pad(mc.tensor(np.zeros((1, 4))), (1, 1), mode="reflect", value=2.0)
    # torch also accepts an explicit 0 here
    F.pad(mc.tensor(np.zeros((1, 4))), (1, 1), mode="reflect", value=0)


def test_unknown_mode_and_odd_amounts():
    with pytest.raises(ValueError, match="mode must be one of"):
        F.pad(mc.tensor(np.zeros((1, 4))), (1, 1), mode="wrap")
    with pytest.raises(ValueError, match="expected an even number of amounts"):
        F.pad(mc.tensor(np.zeros((1, 4))), (1, 1, 1), mode="replicate")
    with pytest.raises(ValueError, match="leaves no elements"):
        F.pad(mc.tensor(np.zeros((1, 4))), (-3, -1), mode="replicate")
