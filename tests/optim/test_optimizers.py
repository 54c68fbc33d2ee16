"""minicnn.optim against torch.optim: same parameters, same sequence of gradients, same
settings -> the same trajectory; plus state_dict round trips, param groups, dtype
preservation and errors."""
import itertools
import json

import numpy as np
import pytest

import minicnn
import minicnn.nn as mnn
from minicnn import optim

SHAPES = [(3, 4), (5,), (2, 1, 3)]
STEPS = 20


def _grads(seed, steps=STEPS, skip=None):
    """A fixed gradient sequence per parameter; ``skip`` (param index, step) pairs get
    no gradient, as a frozen or unused parameter would."""
    rng = np.random.default_rng(seed)
    seq = [[rng.standard_normal(s) for s in SHAPES] for _ in range(steps)]
    for i, t in skip or ():
        seq[t][i] = None
    return seq


def _initial(seed=0):
    rng = np.random.default_rng(seed + 100)
    return [rng.standard_normal(s) for s in SHAPES]


def _groups(lib_params, group_opts):
    if group_opts is None:
        return lib_params
    # two groups: the first parameter alone, the rest together
    return [dict(params=lib_params[:1], **group_opts[0]),
            dict(params=lib_params[1:], **group_opts[1])]


def run_torch(torch, cls_name, kwargs, grads, group_opts=None, dtype=np.float64):
    params = [torch.nn.Parameter(torch.from_numpy(p.astype(dtype))) for p in _initial()]
    opt = getattr(torch.optim, cls_name)(_groups(params, group_opts), **kwargs)
    history = []
    for step in grads:
        for p, g in zip(params, step):
            p.grad = None if g is None else torch.from_numpy(g.astype(dtype))
        opt.step()
        history.append([p.detach().numpy().copy() for p in params])
    return history


def run_minicnn(cls_name, kwargs, grads, group_opts=None, dtype=np.float64, opt_hook=None):
    params = [mnn.Parameter(p.astype(dtype)) for p in _initial()]
    opt = getattr(optim, cls_name)(_groups(params, group_opts), **kwargs)
    history = []
    for i, step in enumerate(grads):
        for p, g in zip(params, step):
            p.grad = None if g is None else minicnn.tensor(g.astype(dtype))
        opt.step()
        if opt_hook is not None:
            opt = opt_hook(i, opt, params)
        history.append([p.numpy().copy() for p in params])
    return history, opt, params


def assert_same_trajectory(mine, ref, rtol=1e-10, atol=1e-12):
    for step, (m_step, r_step) in enumerate(zip(mine, ref)):
        for i, (m, r) in enumerate(zip(m_step, r_step)):
            np.testing.assert_allclose(m, r, rtol, atol, err_msg=f"step {step}, param {i}")


def _combos(**options):
    keys = list(options)
    return [dict(zip(keys, values)) for values in itertools.product(*options.values())]


SGD_CASES = ([dict(lr=0.1)]
             + _combos(lr=[0.05], momentum=[0.9], dampening=[0.0, 0.3], weight_decay=[0, 0.01])
             + _combos(lr=[0.05], momentum=[0.8], nesterov=[True], weight_decay=[0, 0.02])
             + [dict(lr=0.1, weight_decay=0.1), dict(lr=0.05, momentum=0.9, maximize=True)])
ADAM_CASES = _combos(lr=[1e-2], betas=[(0.9, 0.999), (0.5, 0.9)], weight_decay=[0, 0.1],
                     amsgrad=[False, True]) + [dict(lr=1e-2, eps=1e-3, maximize=True)]
ADAMW_CASES = _combos(lr=[1e-2], weight_decay=[0.01, 0.3], amsgrad=[False, True]) + [
    dict(lr=3e-2, betas=(0.8, 0.95), eps=1e-6)]
RMSPROP_CASES = _combos(lr=[1e-2], alpha=[0.99, 0.9], momentum=[0, 0.7], centered=[False, True],
                        weight_decay=[0, 0.05]) + [dict(lr=1e-2, eps=1e-2, maximize=True)]

ALL_CASES = ([("SGD", k) for k in SGD_CASES] + [("Adam", k) for k in ADAM_CASES]
             + [("AdamW", k) for k in ADAMW_CASES] + [("RMSprop", k) for k in RMSPROP_CASES])


@pytest.mark.parametrize("cls_name,kwargs", ALL_CASES,
                         ids=[f"{c}-{i}" for i, (c, _) in enumerate(ALL_CASES)])
def test_trajectory_matches_torch(torch, cls_name, kwargs):
    # parameter 1 has no gradient at steps 3 and 4 (skipped: unchanged, state untouched)
    grads = _grads(seed=len(str(kwargs)), skip=[(1, 3), (1, 4)])
    mine, _, _ = run_minicnn(cls_name, kwargs, grads)
    ref = run_torch(torch, cls_name, kwargs, grads)
    assert_same_trajectory(mine, ref)
    np.testing.assert_array_equal(mine[3][1], mine[2][1])


@pytest.mark.parametrize("cls_name,group_opts", [
    ("SGD", [dict(lr=0.1, momentum=0.9), dict(lr=0.01, nesterov=True, momentum=0.5)]),
    ("Adam", [dict(lr=0.05), dict(amsgrad=True, betas=(0.8, 0.99))]),
    ("AdamW", [dict(weight_decay=0.0), dict(lr=0.02)]),
    ("RMSprop", [dict(centered=True), dict(lr=0.001, momentum=0.9)]),
])
def test_param_groups_with_their_own_options_match_torch(torch, cls_name, group_opts):
    grads = _grads(seed=7)
    kwargs = dict(lr=0.03)
    mine, opt, _ = run_minicnn(cls_name, kwargs, grads, group_opts)
    ref = run_torch(torch, cls_name, kwargs, grads, group_opts)
    assert_same_trajectory(mine, ref)
    assert opt.param_groups[1]["lr"] == group_opts[1].get("lr", 0.03)


@pytest.mark.parametrize("cls_name,kwargs", [("SGD", dict(lr=0.1, momentum=0.9)),
                                             ("Adam", dict(lr=1e-2, amsgrad=True)),
                                             ("AdamW", dict(lr=1e-2)),
                                             ("RMSprop", dict(lr=1e-2, momentum=0.5,
                                                              centered=True))])
def test_float32_parameters_stay_float32_and_follow_torch(torch, cls_name, kwargs):
    grads = _grads(seed=3)
    mine, opt, params = run_minicnn(cls_name, kwargs, grads, dtype=np.float32)
    ref = run_torch(torch, cls_name, kwargs, grads, dtype=np.float32)
    assert all(p.dtype == np.float32 for p in params)
    for state in opt.state.values():
        for value in state.values():
            if hasattr(value, "dtype"):
                assert value.dtype == np.float32
    assert_same_trajectory(mine, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cls_name,kwargs", [("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
                                             ("Adam", dict(lr=1e-2, amsgrad=True)),
                                             ("AdamW", dict(lr=1e-2, weight_decay=0.1)),
                                             ("RMSprop", dict(lr=1e-2, momentum=0.5,
                                                              centered=True))])
def test_state_dict_round_trip_continues_identically(torch, cls_name, kwargs):
    """Save after 8 steps, rebuild from scratch, load, continue: the same trajectory as an
    uninterrupted run. The saved state is plain data (JSON-able once arrays become lists)."""
    grads = _grads(seed=11)
    straight, _, _ = run_minicnn(cls_name, kwargs, grads, [dict(), dict(lr=0.02)])
    saved = {}

    def restart(i, opt, params):
        if i != 7:
            return opt
        state = opt.state_dict()
        saved["state"] = state
        fresh = getattr(optim, cls_name)([dict(params=params[:1]), dict(params=params[1:])],
                                         lr=123.0)
        fresh.load_state_dict(state)
        return fresh
    resumed, opt, _ = run_minicnn(cls_name, kwargs, grads, [dict(), dict(lr=0.02)],
                                  opt_hook=restart)
    assert_same_trajectory(resumed, straight, rtol=0, atol=0)
    state = saved["state"]
    assert [g["params"] for g in state["param_groups"]] == [[0], [1, 2]]
    assert state["param_groups"][1]["lr"] == 0.02
    assert set(state["state"]) == {0, 1, 2}
    json.dumps(state, default=lambda a: a.tolist())       # plain data only
    assert all(isinstance(v, (np.ndarray, int, float))
               for s in state["state"].values() for v in s.values())
    # the torch layout: same keys per parameter state and per group
    params = [torch.nn.Parameter(torch.zeros(s, dtype=torch.float64)) for s in SHAPES]
    topt = getattr(torch.optim, cls_name)(params, **kwargs)
    for p in params:
        p.grad = torch.ones_like(p)
    topt.step()
    tstate = topt.state_dict()
    assert set(state["state"][0]) == set(tstate["state"][0])
    assert set(state["param_groups"][0]) <= set(tstate["param_groups"][0])


def test_state_dict_is_a_snapshot_and_loads_torch_state(torch):
    p = mnn.Parameter(np.ones(3))
    opt = optim.SGD([p], lr=0.1, momentum=0.9)
    p.grad = minicnn.tensor(np.ones(3))
    opt.step()
    snap = opt.state_dict()
    opt.step()
    np.testing.assert_array_equal(snap["state"][0]["momentum_buffer"], np.ones(3))
    # a torch optimizer's state dict loads too (tensors converted, 'step' a number)
    tp = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    topt = torch.optim.Adam([tp], lr=0.1)
    tp.grad = torch.ones(3, dtype=torch.float64)
    topt.step()
    mp = mnn.Parameter(tp.detach().numpy().copy())
    mopt = optim.Adam([mp], lr=0.5)
    mopt.load_state_dict(topt.state_dict())
    assert mopt.state[mp]["step"] == 1 and mopt.param_groups[0]["lr"] == 0.1
    for _ in range(3):
        tp.grad = torch.full((3,), 0.5, dtype=torch.float64)
        topt.step()
        mp.grad = minicnn.tensor(np.full(3, 0.5))
        mopt.step()
    np.testing.assert_allclose(mp.numpy(), tp.detach().numpy(), rtol=1e-12)


def test_training_a_model_matches_torch(torch):
    """End to end: a small net, real backward passes, SGD with momentum + weight decay."""
    def factory(nn):
        return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    tnet, mnet = factory(torch.nn).double(), factory(mnn).double()
    mnet.load_state_dict({k: v.numpy() for k, v in tnet.state_dict().items()})
    topt = torch.optim.SGD(tnet.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    mopt = optim.SGD(mnet.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    rng = np.random.default_rng(0)
    for _ in range(10):
        x, y = rng.standard_normal((6, 4)), rng.integers(0, 3, 6)
        topt.zero_grad()
        torch.nn.functional.cross_entropy(tnet(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        topt.step()
        mopt.zero_grad()
        minicnn.functional.cross_entropy(mnet(minicnn.tensor(x)), minicnn.tensor(y)).backward()
        mopt.step()
    for (name, tp), mp in zip(tnet.named_parameters(), mnet.parameters()):
        np.testing.assert_allclose(mp.numpy(), tp.detach().numpy(), 1e-10, 1e-12, err_msg=name)


def test_zero_grad_and_closure():
    p = mnn.Parameter(np.ones(2))
    opt = optim.SGD([p], lr=0.5)
    p.grad = minicnn.tensor(np.ones(2))
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(p.grad.numpy(), 0)
    opt.zero_grad()
    assert p.grad is None

    def closure():
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss
    with minicnn.no_grad():
        loss = opt.step(closure)        # the closure still records its graph
    assert float(loss.item()) == 2.0
    np.testing.assert_allclose(p.numpy(), [0.0, 0.0])


def test_add_param_group_and_named_parameters():
    a, b = mnn.Parameter(np.ones(2)), mnn.Parameter(np.ones(3))
    opt = optim.Adam([a], lr=0.1)
    opt.add_param_group({"params": b, "lr": 0.01})
    assert opt.param_groups[1]["betas"] == (0.9, 0.999) and opt.param_groups[1]["lr"] == 0.01
    net = mnn.Linear(2, 2)
    opt2 = optim.SGD(net.named_parameters(), lr=0.1)
    assert opt2.param_groups[0]["param_names"] == ["weight", "bias"]
    assert "Parameter Group 1" in repr(opt) and "lr: 0.01" in repr(opt)


@pytest.mark.parametrize("make,error,pattern", [
    (lambda p: optim.SGD(p[0], lr=0.1), TypeError, "single Tensor"),
    (lambda p: optim.SGD([], lr=0.1), ValueError, "empty parameter list"),
    (lambda p: optim.SGD(set(p), lr=0.1), TypeError, "order of a set"),
    (lambda p: optim.SGD([np.ones(3)], lr=0.1), TypeError, "can only optimize Tensors"),
    (lambda p: optim.SGD(p, lr=-1), ValueError, "invalid learning rate"),
    (lambda p: optim.SGD(p, lr=0.1, nesterov=True), ValueError, "Nesterov momentum requires"),
    (lambda p: optim.SGD(p, lr=0.1, momentum=-0.5), ValueError, "invalid momentum"),
    (lambda p: optim.SGD([{"params": p[:1]}, {"params": p}], lr=0.1), ValueError,
     "more than one parameter group"),
    (lambda p: optim.SGD([p[0], p[0]], lr=0.1), ValueError, "same parameter twice"),
    (lambda p: optim.Adam(p, betas=(0.9, 1.0)), ValueError, "invalid betas"),
    (lambda p: optim.Adam(p, eps=-1), ValueError, "invalid epsilon"),
    (lambda p: optim.AdamW(p, weight_decay=-0.1), ValueError, "invalid weight_decay"),
    (lambda p: optim.RMSprop(p, alpha=-0.1), ValueError, "invalid alpha"),
    (lambda p: optim.SGD([(p[0] * 2)], lr=0.1), ValueError, "non-leaf"),
])
def test_optimizer_errors(make, error, pattern):
    params = [mnn.Parameter(np.ones(2)), mnn.Parameter(np.ones(3))]
    with pytest.raises(error, match=pattern):
        make(params)


def test_load_state_dict_errors():
    a, b = mnn.Parameter(np.ones(2)), mnn.Parameter(np.ones(3))
    opt = optim.SGD([a, b], lr=0.1, momentum=0.9)
    a.grad, b.grad = minicnn.tensor(np.ones(2)), minicnn.tensor(np.ones(3))
    opt.step()
    state = opt.state_dict()
    with pytest.raises(ValueError, match="has 1 parameter group.*this optimizer has 2"):
        optim.SGD([{"params": [a]}, {"params": [b]}], lr=0.1).load_state_dict(state)
    with pytest.raises(ValueError, match="group 0 has 2 parameter.*but 1 in this optimizer"):
        optim.SGD([a], lr=0.1).load_state_dict(state)
    with pytest.raises(ValueError, match="'momentum_buffer' has shape \\(2,\\) but its "
                                         "parameter has shape \\(3,\\)"):
        optim.SGD([b, a], lr=0.1).load_state_dict(state)
