"""minicnn explain: the worked examples' numbers are F.conv2d's, F.conv_transpose2d's and
F.max_pool2d's, and their input gradients autograd's."""
import numpy as np
import pytest

import minicnn
from minicnn.cli import main as cli
from minicnn.nn import functional as F
from minicnn.utils.explain import explain


def _autograd(op, e, **kw):
    x = minicnn.tensor(e.input[None], requires_grad=True)
    if op == "max_pool2d":
        y = F.max_pool2d(x, **kw)
    else:
        y = getattr(F, op)(x, minicnn.tensor(e.weight), **kw)
    (y * minicnn.tensor(e.grad_output[None])).sum().backward()
    return y.numpy()[0], x.grad.numpy()[0]


@pytest.mark.parametrize("op, size, k, s, p, c, o", [
    ("conv2d", 3, 2, 1, 0, 1, 1), ("conv2d", 5, 3, 2, 1, 2, 3), ("conv2d", 4, 2, 2, 0, 3, 2),
    ("conv2d", 6, 3, 1, 2, 1, 2), ("conv_transpose2d", 2, 2, 2, 0, 1, 1),
    ("conv_transpose2d", 3, 3, 2, 1, 2, 3), ("conv_transpose2d", 2, 3, 1, 0, 2, 1),
    ("conv_transpose2d", 3, 4, 2, 1, 1, 2)])
def test_convolution_numbers_are_the_ops(op, size, k, s, p, c, o):
    e = explain(op, size, k, s, p, c, o)
    y, dx = _autograd(op, e, stride=s, padding=p)
    np.testing.assert_allclose(e.output, y, rtol=1e-12)
    np.testing.assert_allclose(e.grad_input, dx, rtol=1e-12)


@pytest.mark.parametrize("size, k, s, p, c", [(4, 2, 2, 0, 1), (5, 3, 2, 1, 2),
                                              (4, 3, 1, 0, 1), (3, 2, 1, 1, 2)])
def test_max_pool2d_numbers(size, k, s, p, c):
    e = explain("max_pool2d", size, k, s, p, c)
    y, dx = _autograd("max_pool2d", e, kernel_size=k, stride=s, padding=p)
    np.testing.assert_array_equal(e.output, y)
    np.testing.assert_array_equal(e.grad_input, dx)


def test_the_seed_examples_are_the_defaults():
    np.testing.assert_array_equal(explain("conv2d").output[0], [[19, 25], [37, 43]])
    np.testing.assert_array_equal(explain("conv_transpose2d").output[0],
                                  [[0, 0, 0, 1], [0, 0, 2, 3], [0, 2, 0, 3], [4, 6, 6, 9]])
    steps = dict((title, a) for title, a, _ in explain("conv2d").steps)
    np.testing.assert_array_equal(steps["im2col(x)"], [[0, 1, 3, 4], [1, 2, 4, 5],
                                                       [3, 4, 6, 7], [4, 5, 7, 8]])
    np.testing.assert_array_equal(steps["W @ im2col(x)"], [[19, 25, 37, 43]])


def test_command_prints_and_draws(tmp_path, capsys):
    out = tmp_path / "conv.png"
    assert cli(["explain", "conv2d", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "[[19 25]\n [37 43]]" in text and "col2im" in text
    assert out.stat().st_size > 10_000
    assert cli(["explain", "max_pool2d", "--size", "4"]) == 0
    assert "argmax" in capsys.readouterr().out
    assert cli(["explain", "conv2d", "--size", "2", "--kernel-size", "3"]) == 2
    assert "does not fit" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (("pool",), "op must be one of"),
    (("conv2d", 0), "size must be a positive int"),
    (("conv2d", 3, 2, 1, -1), "padding must be"),
    (("max_pool2d", 4, 2, 2, 2), "at most half the kernel"),
    (("conv_transpose2d", 1, 1, 1, 1), "leaves no output"),
])
def test_errors(args, message):
    with pytest.raises(ValueError, match=message):
        explain(*args)
