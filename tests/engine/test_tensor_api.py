"""Tensor's user-facing API: constructors, properties, conversions, repr, errors."""
import numpy as np
import pytest

import minicnn as mc


def test_constructors_and_dtypes():
    assert mc.tensor([1, 2]).dtype == np.int64
    assert mc.tensor([1.0, 2]).dtype == np.float32
    assert mc.tensor(np.array([1.0])).dtype == np.float64        # arrays keep their dtype
    assert mc.tensor([1, 2], dtype=mc.float64).dtype == np.float64
    assert mc.zeros(2, 3).shape == (2, 3) and mc.zeros((2, 3)).shape == (2, 3)
    assert mc.ones(4).numpy().sum() == 4
    assert mc.arange(5).dtype == np.int64 and mc.arange(0, 1, 0.25).shape == (4,)
    assert mc.full((2,), 7).dtype == np.int64 and mc.full((2,), 0.5).dtype == np.float32
    assert mc.empty(3).shape == (3,)
    assert mc.eye(3).numpy().trace() == 3
    assert mc.randn(2, 3).shape == (2, 3) and mc.rand(5).shape == (5,)
    assert mc.zeros_like(mc.ones(2, 2, dtype=mc.float64)).dtype == np.float64
    assert mc.rand_like(mc.ones(3)).shape == (3,)
    r = mc.randint(0, 10, (100,)).numpy()
    assert r.min() >= 0 and r.max() < 10
    assert sorted(mc.randperm(6).tolist()) == list(range(6))


def test_tensor_copies_but_from_numpy_shares():
    a = np.zeros(3)
    t, s = mc.tensor(a), mc.from_numpy(a)
    a[0] = 1
    assert t.numpy()[0] == 0 and s.numpy()[0] == 1


def test_properties():
    t = mc.zeros(2, 3, 4)
    assert t.shape == (2, 3, 4) and t.ndim == 3 and t.dim() == 3 and t.numel() == 24
    assert t.size() == (2, 3, 4) and t.size(1) == 3 and t.size(-1) == 4
    assert t.device == "cpu" and len(t) == 2
    with pytest.raises(IndexError, match="size: dim 3 is out of range"):
        t.size(3)


def test_item_and_conversions():
    assert mc.tensor([[2.5]]).item() == 2.5
    with pytest.raises(ValueError, match="only a tensor with one element"):
        mc.ones(2).item()
    x = mc.tensor([1.7, -2.2])
    assert x.long().dtype == np.int64 and x.long().tolist() == [1, -2]
    assert x.double().dtype == np.float64 and x.float().dtype == np.float32
    assert mc.tensor([1, 2]).float().dtype == np.float32
    assert x.to(mc.float64).dtype == np.float64 and x.to("cpu") is x


def test_repr_reads_like_torch():
    assert repr(mc.tensor([1.0, 2.0])) == "tensor([1., 2.])"
    assert repr(mc.tensor([1, 2])) == "tensor([1, 2])"
    assert "requires_grad=True" in repr(mc.tensor([1.0], requires_grad=True))
    assert "grad_fn=<Mul>" in repr(mc.tensor([1.0], requires_grad=True) * 2)
    assert "dtype=float64" in repr(mc.tensor([1.0], dtype=mc.float64))


def test_operators_with_numbers_and_reflected():
    x = mc.tensor([1.0, 2.0])
    np.testing.assert_allclose((2 - x).numpy(), [1, 0])
    np.testing.assert_allclose((2 / x).numpy(), [2, 1])
    np.testing.assert_allclose((2 ** x).numpy(), [2, 4])
    np.testing.assert_allclose((-x).numpy(), [-1, -2])
    assert (x > 1.5).tolist() == [False, True] and (x == 1).tolist() == [True, False]


def test_int_tensor_meets_float():
    i = mc.tensor([1, 2])
    assert (i * 0.5).dtype == np.float32
    assert (i + mc.tensor([0.5, 0.5])).dtype == np.float32
    assert (i / 2).dtype == np.float32


def test_torch_style_max_returns_values_and_indices():
    x = mc.tensor([[1.0, 5.0, 2.0], [7.0, 0.0, 3.0]])
    values, indices = mc.max(x, 1)
    assert values.tolist() == [5.0, 7.0] and indices.tolist() == [1, 0]
    assert x.max().item() == 7.0
    assert x.max(axis=0).tolist() == [7.0, 5.0, 3.0]       # NumPy style: values only
    assert mc.argmax(x, dim=1).tolist() == [1, 0]


def test_view_and_flatten_like_model_code():
    x = mc.randn(4, 3, 2, 2)
    assert x.view(x.size(0), -1).shape == (4, 12)
    assert mc.flatten(x, 1).shape == (4, 12)
    with pytest.raises(ValueError, match=r"shape \(5, -1\) is invalid for a tensor of shape \(4, 3, 2, 2\)"):
        x.view(5, -1)
    with pytest.raises(ValueError, match="only one dimension can be -1"):
        x.view(-1, -1)


def test_shape_op_errors_name_the_op():
    x = mc.zeros(2, 3)
    with pytest.raises(ValueError, match="cat: tensors must match"):
        mc.cat([x, mc.zeros(3, 3)], dim=1)
    with pytest.raises(ValueError, match="stack: all tensors must have one shape"):
        mc.stack([x, mc.zeros(3, 2)])
    with pytest.raises(ValueError, match="permute: dims"):
        x.permute(0, 0)
    with pytest.raises(ValueError, match="split: sizes"):
        mc.split(x, [1, 1], dim=1)
    with pytest.raises(ValueError, match="matmul: shapes"):
        x @ mc.zeros(2, 3)
    with pytest.raises(ValueError, match="expand: the size 3"):
        x.expand(2, 4)
    with pytest.raises(ValueError, match="clamp: at least one"):
        x.clamp()


def test_requires_grad_and_data():
    w = mc.zeros(3, requires_grad=True)
    w.data = mc.ones(3)
    assert w.requires_grad and w.numpy().tolist() == [1, 1, 1]
    w.requires_grad = False          # the freezing pattern from model code
    assert not (w * 2).requires_grad
    with pytest.raises(ValueError, match="Tensor.data: expected shape"):
        w.data = mc.ones(4)


def test_repeat_and_expand_as():
    x = mc.tensor([[1.0, 2.0]], requires_grad=True)
    y = x.repeat(2, 3)
    assert y.shape == (2, 6)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [[6.0, 6.0]])
    assert x.expand_as(mc.zeros(3, 2)).shape == (3, 2)


def test_tensor_is_hashable_and_iterable():
    t = mc.tensor([1.0, 2.0])
    assert {t: 1}[t] == 1
    assert [v.item() for v in t] == [1.0, 2.0]


def test_bad_broadcast_and_index_name_the_op():
    with pytest.raises(ValueError, match=r"add: shapes \(2, 3\), \(4,\) cannot be broadcast"):
        mc.ones(2, 3) + mc.ones(4)
    with pytest.raises(ValueError, match="mul: shapes"):
        mc.ones(2, 3) * mc.ones(3, 2)
    with pytest.raises(ValueError, match=r"where: shapes \(5,\), \(3,\), \(3,\)"):
        mc.where(mc.ones(5) > 0, mc.ones(3), mc.ones(3))
    with pytest.raises(IndexError, match=r"getitem: index 5 does not fit a tensor of shape \(2,\)"):
        mc.ones(2)[5]
    assert (mc.ones(2, 1) + mc.ones(3)).shape == (2, 3)      # legal broadcasting still works
