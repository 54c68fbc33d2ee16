"""minicnn.optim.lr_scheduler against torch.optim.lr_scheduler: the same learning rates
(and, for OneCycleLR, momenta) step after step, state_dict round trips, errors."""
import json
import math

import numpy as np
import pytest

import minicnn.nn as mnn
from minicnn import optim
from minicnn.optim import lr_scheduler as sched

STEPS = 60


def _optimizers(torch, opt_name="SGD", two_groups=True, **kwargs):
    kwargs.setdefault("lr", 0.1)
    tp = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))]
    mp = [mnn.Parameter(np.zeros(2, np.float32)), mnn.Parameter(np.zeros(3, np.float32))]

    def groups(p):
        return [{"params": p[:1]}, {"params": p[1:], "lr": kwargs["lr"] / 2}] if two_groups else p
    return (getattr(torch.optim, opt_name)(groups(tp), **kwargs),
            getattr(optim, opt_name)(groups(mp), **kwargs))


def _momenta(opt):
    return [g["betas"][0] if "betas" in g else g.get("momentum") for g in opt.param_groups]


def _compare(torch_sched, mc_sched, topt, mopt, steps=STEPS):
    for step in range(steps + 1):
        np.testing.assert_allclose(mc_sched.get_last_lr(), torch_sched.get_last_lr(),
                                   rtol=1e-12, atol=1e-15, err_msg=f"step {step}")
        np.testing.assert_allclose([g["lr"] for g in mopt.param_groups],
                                   [g["lr"] for g in topt.param_groups], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(_momenta(mopt), _momenta(topt), rtol=1e-12)
        if step < steps:
            topt.step()              # no gradients: a no-op that keeps torch from warning
            mopt.step()
            torch_sched.step()
            mc_sched.step()


# each case builds a scheduler for a given library's module (torch's lr_scheduler or ours)
CASES = {
    "step": lambda S, o: S.StepLR(o, step_size=7, gamma=0.5),
    "step_default_gamma": lambda S, o: S.StepLR(o, 10),
    "multistep": lambda S, o: S.MultiStepLR(o, milestones=[5, 12, 12, 30], gamma=0.3),
    "exponential": lambda S, o: S.ExponentialLR(o, gamma=0.93),
    "cosine": lambda S, o: S.CosineAnnealingLR(o, T_max=17, eta_min=1e-3),
    "cosine_default": lambda S, o: S.CosineAnnealingLR(o, T_max=25),
    "linear_warmup": lambda S, o: S.LinearLR(o, start_factor=0.1, total_iters=8),
    "linear_default": lambda S, o: S.LinearLR(o),
    "linear_decay": lambda S, o: S.LinearLR(o, start_factor=1.0, end_factor=0.2, total_iters=40),
    "lambda": lambda S, o: S.LambdaLR(o, lambda e: 0.95 ** e + 0.01 * (e % 3)),
    "lambda_per_group": lambda S, o: S.LambdaLR(o, [lambda e: 1 / (1 + e), lambda e: 0.9 ** e]),
    "onecycle": lambda S, o: S.OneCycleLR(o, max_lr=1.0, total_steps=STEPS + 1),
    "onecycle_groups_linear": lambda S, o: S.OneCycleLR(o, max_lr=[1.0, 0.3], epochs=5,
                                                        steps_per_epoch=13,
                                                        anneal_strategy="linear"),
    "onecycle_three_phase": lambda S, o: S.OneCycleLR(o, max_lr=0.5, total_steps=STEPS + 1,
                                                      three_phase=True, pct_start=0.25,
                                                      div_factor=10.0, final_div_factor=100.0),
    "onecycle_no_momentum": lambda S, o: S.OneCycleLR(o, max_lr=0.5, total_steps=STEPS + 1,
                                                      cycle_momentum=False),
    "sequential_warmup_cosine": lambda S, o: S.SequentialLR(
        o, [S.LinearLR(o, start_factor=0.01, total_iters=5), S.CosineAnnealingLR(o, T_max=50)],
        milestones=[5]),
    "sequential_linear_step": lambda S, o: S.SequentialLR(
        o, [S.LinearLR(o, start_factor=0.25, total_iters=4), S.MultiStepLR(o, [10, 20])],
        milestones=[6]),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("opt_name,opt_kwargs", [("SGD", dict(momentum=0.9)), ("Adam", {})])
def test_lr_sequence_matches_torch(torch, name, opt_name, opt_kwargs):
    topt, mopt = _optimizers(torch, opt_name, **opt_kwargs)
    tsched = CASES[name](torch.optim.lr_scheduler, topt)
    msched = CASES[name](sched, mopt)
    _compare(tsched, msched, topt, mopt)


def test_sequential_three_uses_equivalent_constant_phase(torch):
    """SequentialLR over LambdaLR(0.5 for 3 epochs) / ExponentialLR / StepLR against torch
    with ConstantLR for the first phase (minicnn has no ConstantLR; LambdaLR does it)."""
    topt, mopt = _optimizers(torch, "SGD", momentum=0.9)
    S = torch.optim.lr_scheduler
    tsched = S.SequentialLR(topt, [S.LambdaLR(topt, lambda e: 0.5 if e < 3 else 1.0),
                                   S.ExponentialLR(topt, 0.9), S.StepLR(topt, 4, 0.5)],
                            milestones=[4, 20])
    msched = sched.SequentialLR(mopt, [sched.LambdaLR(mopt, lambda e: 0.5 if e < 3 else 1.0),
                                       sched.ExponentialLR(mopt, 0.9), sched.StepLR(mopt, 4, 0.5)],
                                milestones=[4, 20])
    _compare(tsched, msched, topt, mopt)


def test_closed_forms():
    """The docstrings' formulas, checked directly."""
    p = [mnn.Parameter(np.zeros(2))]
    for make, formula in [
        (lambda o: sched.StepLR(o, 3, 0.5), lambda e: 0.5 ** (e // 3)),
        (lambda o: sched.MultiStepLR(o, [2, 5], 0.1), lambda e: 0.1 ** ((e >= 2) + (e >= 5))),
        (lambda o: sched.ExponentialLR(o, 0.9), lambda e: 0.9 ** e),
        (lambda o: sched.CosineAnnealingLR(o, 10, 0.01),
         lambda e: 0.01 + (1 - 0.01) * (1 + math.cos(math.pi * e / 10)) / 2),
        (lambda o: sched.LinearLR(o, 0.2, 1.0, 4), lambda e: 0.2 + 0.8 * min(e, 4) / 4),
    ]:
        opt = optim.SGD(p, lr=1.0)
        s = make(opt)
        for epoch in range(12):
            assert s.get_last_lr()[0] == pytest.approx(formula(epoch), rel=1e-12)
            s.step()


@pytest.mark.parametrize("name", ["step", "multistep", "cosine", "onecycle", "lambda",
                                  "sequential_warmup_cosine", "linear_warmup"])
def test_state_dict_round_trip_continues_identically(torch, name):
    """Save optimizer + scheduler after 20 steps, rebuild both, load, continue: the same
    lrs as an uninterrupted run. The state is plain data (JSON-able)."""
    def make():
        p = [mnn.Parameter(np.zeros(2)), mnn.Parameter(np.zeros(3))]
        opt = optim.SGD([{"params": p[:1]}, {"params": p[1:], "lr": 0.05}], lr=0.1,
                        momentum=0.9)
        return opt, CASES[name](sched, opt)
    opt, s = make()
    straight = []
    for _ in range(STEPS):
        opt.step()
        s.step()
        straight.append(s.get_last_lr() + _momenta(opt))
    opt, s = make()
    resumed = []
    for i in range(STEPS):
        opt.step()
        s.step()
        resumed.append(s.get_last_lr() + _momenta(opt))
        if i == 19:
            opt_state, sched_state = opt.state_dict(), s.state_dict()
            text = json.dumps(sched_state)            # plain data
            opt, s = make()
            opt.load_state_dict(opt_state)
            s.load_state_dict(json.loads(text))
    assert resumed == straight


def test_errors():
    p = [mnn.Parameter(np.zeros(2))]
    opt = optim.SGD(p, lr=0.1)
    with pytest.raises(TypeError, match="is not an Optimizer"):
        sched.StepLR(object(), 3)
    with pytest.raises(KeyError, match="no 'initial_lr'"):
        sched.StepLR(optim.SGD(p, lr=0.1), 3, last_epoch=5)
    with pytest.raises(ValueError, match="start_factor"):
        sched.LinearLR(opt, start_factor=0)
    with pytest.raises(ValueError, match="total_steps or both epochs"):
        sched.OneCycleLR(opt, max_lr=1.0)
    with pytest.raises(ValueError, match="pct_start"):
        sched.OneCycleLR(opt, max_lr=1.0, total_steps=10, pct_start=1)
    with pytest.raises(ValueError, match="momentum or beta1"):
        sched.OneCycleLR(optim.Optimizer(p, dict(lr=0.1)), max_lr=1.0, total_steps=10)
    one = sched.OneCycleLR(opt, max_lr=1.0, total_steps=3)
    for _ in range(3):              # epochs 1..3 of a 3-step cycle: allowed, as torch
        one.step()
    with pytest.raises(ValueError, match="tried to step 4 times"):
        one.step()
    with pytest.raises(ValueError, match="expected 1 milestone"):
        sched.SequentialLR(opt, [sched.StepLR(opt, 2), sched.StepLR(opt, 3)], milestones=[])
    other = optim.SGD([mnn.Parameter(np.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="different optimizer"):
        sched.SequentialLR(opt, [sched.StepLR(other, 2)], milestones=[])
    with pytest.raises(ValueError, match="expected 2 lr_lambdas"):
        sched.LambdaLR(optim.SGD([{"params": p}, {"params": [mnn.Parameter(np.zeros(1))]}],
                                 lr=0.1), [lambda e: 1.0])
