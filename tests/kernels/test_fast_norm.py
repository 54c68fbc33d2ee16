"""kernels/numba_norm.py (the CPU fast path of batch norm) against the portable reference,
over drawn shapes and options, in float32 and float64."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import minicnn as mc
from kernels import dispatch
from minicnn import functional as F

import kernels.numba_norm  # noqa: F401  numba is a runtime dependency

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
DTYPES = st.sampled_from([np.float64, np.float32])
# the fast path sums in float64 and in another order: float32 differs in the last bits
TOL = {np.float64: dict(rtol=1e-9, atol=1e-10), np.float32: dict(rtol=2e-4, atol=2e-5)}


@pytest.fixture(autouse=True)
def _fast_paths_on():
    """This file tests the fast path itself: on, whatever MINICNN_KERNELS says."""
    with dispatch.kernels("auto"):
        yield


@st.composite
def bn_case(draw):
    """Input shape (N, C, *) with 0 to 3 spatial axes, and which options are used."""
    N, C = draw(st.integers(1, 4)), draw(st.integers(1, 5))
    spatial = tuple(draw(st.lists(st.integers(1, 5), min_size=0, max_size=3)))
    training = draw(st.booleans())
    if training and N * int(np.prod(spatial)) == 1:
        N = 2                                   # training needs two values per channel
    return dict(shape=(N, C) + spatial, training=training,
                affine=draw(st.sampled_from(["both", "weight", "none"])),
                track=draw(st.booleans()) or not training,
                needs_x=draw(st.booleans()), momentum=draw(st.sampled_from([0.1, 0.5])))


def _run(case, dtype, seed=0):
    """batch_norm through whichever path the mode picks: output, gradients, buffers."""
    rng = np.random.default_rng(seed)
    N, C = case["shape"][:2]
    x = mc.tensor((rng.standard_normal(case["shape"]) * 3 + 1).astype(dtype),
                  requires_grad=case["needs_x"])
    weight = bias = None
    if case["affine"] in ("both", "weight"):
        weight = mc.tensor(rng.standard_normal(C).astype(dtype), requires_grad=True)
    if case["affine"] == "both":
        bias = mc.tensor(rng.standard_normal(C).astype(dtype), requires_grad=True)
    rm = rv = None
    if case["track"]:
        rm = mc.tensor(rng.standard_normal(C).astype(dtype))
        rv = mc.tensor((rng.random(C) + 0.5).astype(dtype))
    out = F.batch_norm(x, rm, rv, weight, bias, training=case["training"],
                       momentum=case["momentum"], eps=1e-3)
    if out.requires_grad:
        out.backward(rng.standard_normal(out.shape).astype(dtype))
    grads = [None if t is None or t.grad is None else t.grad.numpy() for t in (x, weight, bias)]
    buffers = [None if t is None else t.numpy() for t in (rm, rv)]
    return out.numpy(), grads, buffers


@SETTINGS
@given(bn_case(), DTYPES)
def test_batch_norm_equals_reference(case, dtype):
    with dispatch.kernels("reference"):
        want = _run(case, dtype)
    got = _run(case, dtype)
    np.testing.assert_allclose(got[0], want[0], **TOL[dtype])
    assert got[0].dtype == dtype
    for g, w in zip(got[1] + got[2], want[1] + want[2]):
        assert (g is None) == (w is None)
        if g is not None:
            assert g.dtype == dtype
            np.testing.assert_allclose(g, w, **TOL[dtype])


def test_fast_batch_norm_keeps_the_input_not_xhat(rng):
    x = mc.tensor(rng.standard_normal((3, 2, 4, 4)), requires_grad=True)
    node = F.batch_norm(x, None, None, training=True).grad_fn
    assert node.fast and node.x is x.array and not hasattr(node, "xhat")


def test_non_contiguous_input(rng):
    x = rng.standard_normal((5, 4, 3, 2)).transpose(3, 2, 1, 0)       # (2, 3, 4, 5) view
    results = []
    for mode in ("reference", "auto"):
        with dispatch.kernels(mode):
            t = mc.tensor(x, requires_grad=True)
            out = F.batch_norm(t, None, None, training=True)
            out.backward(np.cos(np.arange(out.numpy().size)).reshape(out.shape))
            results.append((out.numpy(), t.grad.numpy()))
    for got, want in zip(*results):
        np.testing.assert_allclose(got, want, **TOL[np.float64])
