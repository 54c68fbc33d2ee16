"""The engine itself: graph recording, the backward walk, accumulation, freeing, errors."""
import numpy as np
import pytest

import minicnn as mc
from minicnn import Function, Tensor


def test_fan_out_accumulates():
    x = mc.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x * x + x * 3          # dy/dx = 2x + 3
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [5.0, 7.0, 9.0])


def test_grad_accumulates_across_backward_calls():
    x = mc.tensor([1.0, -2.0], requires_grad=True)
    (x * 2).sum().backward()
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [5.0, 5.0])


def test_grads_of_two_leaves_do_not_alias():
    a = mc.tensor([1.0, 2.0], requires_grad=True)
    b = mc.tensor([3.0, 4.0], requires_grad=True)
    (a + b).sum().backward()
    a.grad.array[0] = 100.0                      # mutate one gradient in place
    np.testing.assert_allclose(b.grad.numpy(), [1.0, 1.0])


def test_deep_chain_has_no_recursion_limit():
    x = mc.tensor([1.0], requires_grad=True)
    y = x
    for _ in range(5000):
        y = y * 1.0001
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0001 ** 5000], rtol=1e-4)


def test_second_backward_through_freed_graph_raises():
    x = mc.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_retain_graph_allows_second_backward():
    x = mc.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [4.0, 8.0])


def test_non_scalar_backward_needs_gradient():
    x = mc.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="scalar outputs"):
        (x * 2).backward()


def test_gradient_of_wrong_shape_is_rejected():
    x = mc.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match=r"gradient has shape \(3,\), expected \(2,\)"):
        (x * 2).backward(mc.ones(3))


def test_backward_on_tensor_without_grad_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        mc.tensor([1.0]).sum().backward()


def test_no_grad_records_nothing_and_works_as_decorator():
    x = mc.tensor([1.0], requires_grad=True)
    with mc.no_grad():
        y = x * 2
    assert not y.requires_grad and y.grad_fn is None

    @mc.no_grad()
    def f(t):
        return t * 2
    assert f(x).grad_fn is None
    assert (x * 2).requires_grad          # mode restored


def test_enable_grad_inside_no_grad():
    x = mc.tensor([1.0], requires_grad=True)
    with mc.no_grad():
        with mc.enable_grad():
            y = x * 2
    assert y.requires_grad


def test_graph_not_recorded_when_no_input_requires_grad():
    y = mc.tensor([1.0]) * 2
    assert y.grad_fn is None and not y.requires_grad


def test_detach_cuts_the_graph():
    x = mc.tensor([2.0], requires_grad=True)
    y = x * x.detach()           # gradient only through the first factor
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [2.0])


def test_iadd_in_graph_gives_correct_gradients():
    # the ResNet pattern: out = f(x); out += shortcut
    x = mc.tensor([1.0, 2.0], requires_grad=True)
    out = x * 3
    before = out
    out += x * x
    assert out is before                      # still the same Python object
    out.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3 + 2 * 1.0, 3 + 2 * 2.0])


def test_inplace_on_used_value_keeps_earlier_uses_correct():
    x = mc.tensor([1.0, 2.0], requires_grad=True)
    h = x * 2
    y = h * h                 # uses h's old value
    h += 1                    # h now x*2 + 1
    (y + h).sum().backward()  # d/dx (4x² + 2x + 1) = 8x + 2
    np.testing.assert_allclose(x.grad.numpy(), [10.0, 18.0])


def test_inplace_without_graph_mutates_aliases():
    a = mc.zeros(3)
    alias = a
    a += 1
    np.testing.assert_allclose(alias.numpy(), [1, 1, 1])


def test_inplace_on_leaf_requiring_grad_raises():
    w = mc.tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf"):
        w += 1
    with mc.no_grad():
        w -= 0.5                  # the optimizer pattern is allowed
    np.testing.assert_allclose(w.numpy(), [0.5])


def test_setitem_in_graph():
    x = mc.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x * 1
    v = mc.tensor([10.0], requires_grad=True)
    y[1:2] = v * 2
    (y * mc.tensor([1.0, 2.0, 3.0])).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0, 0.0, 3.0])
    np.testing.assert_allclose(v.grad.numpy(), [4.0])


def test_setitem_plain_tensor():
    t = mc.zeros(2, 3)
    t[0, 1] = 5
    t[1] = mc.tensor([1.0, 2.0, 3.0])
    np.testing.assert_allclose(t.numpy(), [[0, 5, 0], [1, 2, 3]])


def test_multiple_outputs_with_one_unused():
    x = mc.tensor(np.arange(6.0).reshape(3, 2), requires_grad=True)
    a, b, c = mc.split(x, 1, dim=0)
    (b * 2).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [[0, 0], [2, 2], [0, 0]])


def test_custom_function_and_none_inputs():
    class ScaleShift(Function):
        def forward(self, x, shift):
            return x * 2 if shift is None else x * 2 + shift

        def backward(self, g):
            return g * 2, None

    x = mc.tensor([1.0, 2.0], requires_grad=True)
    y = ScaleShift()(x, None)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 2.0])


def test_backward_returning_wrong_count_is_reported():
    class Broken(Function):
        def forward(self, x, y):
            return x + y

        def backward(self, g):
            return g

    x = mc.tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="returned 1 gradients for 2 inputs"):
        Broken()(x, x).sum().backward()


def test_saved_values_are_freed_after_backward():
    x = mc.tensor([1.0, 2.0], requires_grad=True)
    y = x.exp()
    fn = y.grad_fn
    y.sum().backward()
    assert not hasattr(fn, "out") and not hasattr(fn, "edges")


def test_int_outputs_are_not_differentiable():
    x = mc.tensor([[1.0, 3.0], [4.0, 2.0]], requires_grad=True)
    values, indices = x.max(dim=1)
    assert values.requires_grad and not indices.requires_grad
    assert indices.dtype == np.int64


def test_requires_grad_on_int_tensor_is_rejected():
    with pytest.raises(RuntimeError, match="floating-point"):
        mc.tensor([1, 2], requires_grad=True)


def test_float32_stays_float32():
    x = mc.randn(3, 4, requires_grad=True)
    y = ((x * 2.5 + 1) / 3) ** 2
    assert y.dtype == np.float32
    y.mean().backward()
    assert x.grad.dtype == np.float32


def test_numpy_array_on_the_left_defers_to_tensor():
    x = mc.tensor([1.0, 2.0], requires_grad=True)
    y = np.array([2.0, 3.0], dtype=np.float32) * x
    assert isinstance(y, Tensor)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 3.0])


def test_to_dtype_is_differentiable():
    x = mc.tensor([1.0, 2.0], requires_grad=True)
    y = x.double() * 3
    assert y.dtype == np.float64
    y.sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 3.0])


def test_retain_grad_on_intermediate():
    x = mc.tensor([1.0, 2.0], requires_grad=True)
    h = x * 3
    h.retain_grad()
    (h * h).sum().backward()
    np.testing.assert_allclose(h.grad.numpy(), [6.0, 12.0])
    np.testing.assert_allclose(x.grad.numpy(), [18.0, 36.0])


def test_hooks_see_and_can_replace_gradients():
    x = mc.tensor([1.0, 2.0], requires_grad=True)
    seen = []
    h = x * 2
    handle = h.register_hook(lambda g: seen.append(g.numpy().copy()) or g * 10)
    x.register_hook(lambda g: g + 1)
    h.sum().backward(grad=mc.tensor(1.0))
    np.testing.assert_allclose(seen[0], [1.0, 1.0])
    np.testing.assert_allclose(x.grad.numpy(), [21.0, 21.0])     # (1 * 10) * 2 + 1
    handle.remove()
    with pytest.raises(RuntimeError, match="doesn't require gradient"):
        mc.ones(2).register_hook(lambda g: g)


def test_the_engine_imports_no_op_family():
    """autograd.py is the engine alone: it imports backend and the standard library, never
    an op of functional/ (the methods that run ops are attached by _tensor_api.py)."""
    import ast
    import pathlib

    import minicnn.autograd as engine
    tree = ast.parse(pathlib.Path(engine.__file__).read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            imported.add("." * node.level + (node.module or ""))
            imported.update(f"{node.module}.{a.name}" for a in node.names if node.module)
        elif isinstance(node, ast.Import):
            imported.update(a.name for a in node.names)
    assert not [m for m in imported if "functional" in m or m.startswith("..")], imported
    # and the methods that run ops are still on Tensor, written in _tensor_api.py
    for name in ("to", "float", "__setitem__", "__iadd__", "add_", "T", "copy_", "repeat"):
        member = vars(Tensor)[name]
        code = member.fget if isinstance(member, property) else member
        assert code.__module__ == "minicnn._tensor_api", name
    assert vars(Tensor)["clone"] is mc.functional.clone
