"""The two engine hooks data-parallel training stands on: a leaf's post-accumulate hook
(the moment a parameter's gradient is ready) and ``queue_callback`` (work finished before
``backward()`` returns), checked against torch's hooks of the same names."""
import numpy as np
import pytest

import minicnn as mc
from minicnn import autograd

torch = pytest.importorskip("torch", reason="PyTorch is not installed")


def _graph(lib, w_value, x_value):
    """A weight used twice (fan-out into two products) and one used once."""
    w = lib.tensor(w_value, requires_grad=True)
    b = lib.tensor([0.5, -1.0], requires_grad=True)
    x = lib.tensor(x_value)
    return w, b, ((x * w).sum() * (w * w).sum() + (b * x).sum())


def test_post_accumulate_hook_sees_the_accumulated_grad_as_torch():
    w_value, x_value = [1.5, -2.0], [0.25, 3.0]
    results = {}
    for name, lib in (("mc", mc), ("torch", torch)):
        w, b, loss = _graph(lib, w_value, x_value)
        seen = []
        b.register_post_accumulate_grad_hook(
            lambda t, seen=seen: seen.append(np.array(t.grad.tolist())))
        w.grad = lib.tensor([10.0, 10.0])       # an earlier backward's gradient
        loss.backward()
        results[name] = (seen, np.array(w.grad.tolist()))
    (mc_seen, mc_w), (t_seen, t_w) = results["mc"], results["torch"]
    np.testing.assert_allclose(mc_w, t_w, rtol=1e-12)
    assert len(mc_seen) == len(t_seen) == 1
    np.testing.assert_allclose(mc_seen[0], t_seen[0], rtol=1e-12)


def test_post_accumulate_hook_on_a_shared_leaf_reports_each_use_and_ends_with_the_sum():
    w, _, loss = _graph(mc, [1.5, -2.0], [0.25, 3.0])
    seen = []
    handle = w.register_post_accumulate_grad_hook(lambda t: seen.append(t.grad.numpy().copy()))
    loss.backward()
    # w reaches the graph three times (x * w, and both inputs of w * w): minicnn delivers
    # each use's gradient in turn, where torch sums them first and calls the hook once
    assert len(seen) == 3
    np.testing.assert_allclose(seen[-1], w.grad.numpy())
    handle.remove()
    w.grad = None
    _, _, loss = _graph(mc, [1.5, -2.0], [0.25, 3.0])
    loss.backward()
    assert len(seen) == 3                              # removed


def test_post_accumulate_hook_refuses_non_leaves_and_constants():
    x = mc.tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="non-leaf"):
        (x * 2).register_post_accumulate_grad_hook(lambda t: None)
    with pytest.raises(RuntimeError, match="doesn't require gradient"):
        mc.ones(2).register_post_accumulate_grad_hook(lambda t: None)


def test_queued_callback_runs_after_every_gradient_is_in_place():
    w, b, loss = _graph(mc, [1.5, -2.0], [0.25, 3.0])
    order = []

    def ready(t):
        order.append("b")
        autograd.queue_callback(lambda: order.append(("end", w.grad is not None)))
    b.register_post_accumulate_grad_hook(ready)
    loss.backward()
    assert order == ["b", ("end", True)]
    with pytest.raises(RuntimeError, match="no backward walk"):
        autograd.queue_callback(lambda: None)


def test_queued_callback_works_on_a_leaf_root_too():
    x = mc.tensor([1.0, 2.0], requires_grad=True)
    done = []
    x.register_post_accumulate_grad_hook(
        lambda t: autograd.queue_callback(lambda: done.append(t.grad.numpy().copy())))
    x.backward(mc.tensor([3.0, 4.0]))
    np.testing.assert_allclose(done[0], [3.0, 4.0])
