"""The fused optimizer updates (minicnn/optim/_fused.py) against the readable
per-parameter code they replace: the same trajectory bit for bit, in float32 and float64,
over drawn hyper-parameters; which parameters take the fused loop; the state it leaves
(interchangeable with the readable code's); and the errors of fused=True."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import minicnn as mc
import minicnn.nn as mnn
from kernels import dispatch
from minicnn import optim
from minicnn.optim import _fused

SETTINGS = settings(max_examples=30, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
# odd sizes, a scalar, and one large enough (> _fused._THREADED elements in the step)
# that the elements are cut between threads mid-parameter
SHAPES = [(3, 5), (7,), (), (2, 1, 3), (300, 250)]
DTYPES = st.sampled_from([np.float32, np.float64])


def _trajectory(cls, kwargs, dtype, fused, steps=6, seed=0, skip=()):
    """Weights and state after each step, from one seed; parameter ``i`` gets no
    gradient at the steps ``(i, t)`` in ``skip``."""
    rng = np.random.default_rng(seed)
    params = [mnn.Parameter(rng.standard_normal(s).astype(dtype)) for s in SHAPES]
    opt = cls(params, fused=fused, **kwargs)
    history = []
    for t in range(steps):
        for i, p in enumerate(params):
            g = (rng.standard_normal(p.shape) * 10.0 ** rng.integers(-3, 2)).astype(dtype)
            p.grad = None if (i, t) in skip else mc.tensor(g)
        opt.step()
        history.append([p.numpy().copy() for p in params])
    return history, opt


def _bitwise_equal(a, b):
    for step, (sa, sb) in enumerate(zip(a, b)):
        for i, (x, y) in enumerate(zip(sa, sb)):
            assert x.dtype == y.dtype
            assert np.array_equal(x.reshape(-1).view(np.uint8),
                                  y.reshape(-1).view(np.uint8)), (step, i)


def _same_state(opt_a, opt_b):
    sa, sb = opt_a.state_dict()["state"], opt_b.state_dict()["state"]
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].keys() == sb[k].keys()
        for name in sa[k]:
            x, y = np.asarray(sa[k][name]), np.asarray(sb[k][name])
            assert x.dtype == y.dtype and np.array_equal(x, y), (k, name)


sgd_options = st.fixed_dictionaries({
    "lr": st.sampled_from([0.1, 0.01, 3e-3]),
    "momentum": st.sampled_from([0.0, 0.9, 0.5]),
    "dampening": st.sampled_from([0.0, 0.1]),
    "weight_decay": st.sampled_from([0.0, 1e-4, 5e-2]),
    "nesterov": st.booleans(),
    "maximize": st.booleans(),
}).filter(lambda o: not o["nesterov"] or (o["momentum"] > 0 and o["dampening"] == 0))

adam_options = st.fixed_dictionaries({
    "lr": st.sampled_from([1e-3, 2e-2]),
    "betas": st.sampled_from([(0.9, 0.999), (0.5, 0.9)]),
    "eps": st.sampled_from([1e-8, 1e-3]),
    "weight_decay": st.sampled_from([0.0, 1e-2, 0.3]),
    "amsgrad": st.booleans(),
    "maximize": st.booleans(),
})


@SETTINGS
@given(sgd_options, DTYPES)
def test_sgd_fused_equals_readable_bit_for_bit(options, dtype):
    fused, opt_f = _trajectory(optim.SGD, options, dtype, True, skip={(1, 2)})
    plain, opt_p = _trajectory(optim.SGD, options, dtype, False, skip={(1, 2)})
    _bitwise_equal(fused, plain)
    _same_state(opt_f, opt_p)


@SETTINGS
@given(adam_options, st.sampled_from([optim.Adam, optim.AdamW]), DTYPES)
def test_adam_fused_equals_readable_bit_for_bit(options, cls, dtype):
    fused, opt_f = _trajectory(cls, options, dtype, True, skip={(0, 1), (2, 1)})
    plain, opt_p = _trajectory(cls, options, dtype, False, skip={(0, 1), (2, 1)})
    _bitwise_equal(fused, plain)
    _same_state(opt_f, opt_p)


def test_adam_parameters_with_different_step_counts():
    """After a partial history the parameters of one group are at different steps,
    and each gets its own bias correction."""
    kw = dict(lr=1e-2, weight_decay=0.1)
    skip = {(0, t) for t in range(3)} | {(4, 0)}
    fused, opt = _trajectory(optim.AdamW, kw, np.float32, True, skip=skip)
    plain, _ = _trajectory(optim.AdamW, kw, np.float32, False, skip=skip)
    _bitwise_equal(fused, plain)
    assert [opt.state[p]["step"] for p in opt.param_groups[0]["params"]] == [3, 6, 6, 6, 5]


def test_nan_and_inf_follow_the_readable_update():
    """NaN wins amsgrad's running maximum, as np.maximum; inf propagates alike."""
    def run(fused):
        p = mnn.Parameter(np.array([1.0, 2.0, 3.0, 4.0], np.float32))
        opt = optim.Adam([p], lr=0.1, amsgrad=True, fused=fused)
        for g in ([1.0, np.nan, 2.0, 1.0], [1.0, 1.0, np.inf, -1.0], [0.5, 0.5, 0.5, 0.5]):
            p.grad = mc.tensor(np.array(g, np.float32))
            opt.step()
        return p.numpy(), opt.state[p]["max_exp_avg_sq"]
    with np.errstate(invalid="ignore"):
        (w1, v1), (w2, v2) = run(True), run(False)
    np.testing.assert_array_equal(w1, w2)
    np.testing.assert_array_equal(v1, v2)
    assert np.isnan(v1[1]) and np.isnan(w1[2])


def test_default_takes_the_fused_loop_where_it_can(monkeypatch):
    calls = []
    original = _fused.sgd_step

    def record(batch, *args):
        calls.append(len(batch))
        return original(batch, *args)
    monkeypatch.setattr(_fused, "sgd_step", record)
    a = mnn.Parameter(np.ones((2, 3), np.float32))
    b = mnn.Parameter(np.ones(4, np.float64))
    c = mnn.Parameter(np.ones((4, 4), np.float32))
    opt = optim.SGD([a, b, c], lr=0.1, momentum=0.9)
    a.grad = mc.tensor(np.ones((2, 3), np.float32))
    b.grad = mc.tensor(np.ones(4, np.float32))          # another dtype: readable code
    c.grad = mc.tensor(np.ones((4, 4), np.float32).T.copy().T)
    c.grad.array = np.asfortranarray(c.grad.array)      # not C-contiguous: readable code
    opt.step()
    assert calls == [1]
    np.testing.assert_allclose(b.numpy(), 0.9)
    np.testing.assert_allclose(c.numpy(), 0.9)
    with dispatch.kernels("reference"):
        opt.step()
    assert calls == [1, 0]                              # reference mode: none fused


def test_switching_between_fused_and_readable_mid_run():
    """The state is the same either way, so a run may change paths (or load a
    checkpoint written by the other) and stay on the same trajectory."""
    rng = np.random.default_rng(1)
    init = rng.standard_normal((5, 4)).astype(np.float32)
    grads = [rng.standard_normal((5, 4)).astype(np.float32) for _ in range(6)]
    results = []
    for schedule in ([True] * 6, [False, True, False, False, True, True]):
        p = mnn.Parameter(init.copy())
        opt = optim.Adam([p], lr=1e-2, amsgrad=True)
        for fused, g in zip(schedule, grads):
            opt.param_groups[0]["fused"] = fused
            p.grad = mc.tensor(g)
            opt.step()
        results.append(p.numpy())
    np.testing.assert_array_equal(*results)


def test_fused_true_refuses_what_it_cannot_take():
    p = mnn.Parameter(np.ones(3, np.float32))
    opt = optim.Adam([p], fused=True)
    p.grad = mc.tensor(np.ones(3, np.float64))
    with pytest.raises(ValueError, match=r"Adam: fused=True needs C-contiguous NumPy "
                                         r"float32/float64 .* parameter 0 .* float64 "
                                         r"gradient"):
        opt.step()
    p.grad = mc.tensor(np.ones(3, np.float32))
    with dispatch.kernels("reference"):
        with pytest.raises(ValueError, match="kernels: 'reference'"):
            opt.step()


def test_fused_is_a_group_option_in_the_state_dict():
    p = mnn.Parameter(np.ones(3))
    opt = optim.SGD([p], lr=0.1)
    assert opt.state_dict()["param_groups"][0]["fused"] is None
    old = opt.state_dict()
    del old["param_groups"][0]["fused"]                 # a checkpoint from before
    opt.load_state_dict(old)
    p.grad = mc.tensor(np.ones(3))
    opt.step()
    np.testing.assert_allclose(p.numpy(), 0.9)


@pytest.mark.parametrize("fused", [True, False])
def test_zero_dimensional_parameter_follows_torch(torch, fused):
    """A 0-d parameter with weight decay and momentum: the readable SGD once kept a
    NumPy scalar as its buffer (g + λ·w is a scalar there), which `b *= μ` never
    updated; both paths now follow torch."""
    p = mnn.Parameter(np.array(1.5))
    opt = optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.1, maximize=True,
                    fused=fused)
    tp = torch.nn.Parameter(torch.tensor(1.5, dtype=torch.float64))
    topt = torch.optim.SGD([tp], lr=0.1, momentum=0.9, weight_decay=0.1, maximize=True)
    for g in (1.0, 2.0, -1.0):
        p.grad = mc.tensor(np.array(g))
        tp.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        topt.step()
        assert p.item() == pytest.approx(tp.item(), rel=1e-14)


def test_state_that_is_a_view_is_made_the_loops_own():
    """A state array the fused loop could not write in place (a strided view, another
    dtype) is replaced by a contiguous copy first, so the update reaches the state."""
    w0, g = np.ones((4, 3), np.float32), np.full((4, 3), 0.5, np.float32)
    results = []
    for fused in (True, False):
        p = mnn.Parameter(w0.copy())
        opt = optim.SGD([p], lr=0.1, momentum=0.9, fused=fused)
        opt.state[p] = {"momentum_buffer": np.ones((3, 4), np.float64).T}
        p.grad = mc.tensor(g)
        opt.step()
        results.append((p.numpy(), np.asarray(opt.state[p]["momentum_buffer"])))
    # the readable code keeps that buffer float64, the fused loop float32: close only
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-6)
    np.testing.assert_allclose(results[0][1], 0.9 + 0.5, rtol=1e-6)
    assert results[0][1].dtype == np.float32 and results[0][1].flags.c_contiguous
