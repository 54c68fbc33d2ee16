"""minicnn's own finite-difference gradcheck: it passes right gradients and catches wrong ones."""
import numpy as np
import pytest

import minicnn as mc
from minicnn import Function
from minicnn.utils.gradcheck import GradcheckError, gradcheck
from minicnn.utils.torch_compare import compare_with_torch


def test_passes_a_correct_composite():
    x = mc.randn(3, 4, requires_grad=True)
    w = mc.randn(4, 2, requires_grad=True)
    report = gradcheck(lambda a, b: (a @ b).tanh() * a.sum(dim=1, keepdim=True), x, w)
    assert report.passed and len(report.rows) == 2
    assert report.rows[0]["shape"] == (3, 4)
    assert report.max_abs_error < 1e-6


class _BrokenNormalize(Function):
    """x - mean(x) whose backward forgets the mean term (a classic BatchNorm bug)."""

    def forward(self, x):
        return x - x.mean()

    def backward(self, g):
        return g              # wrong: should be g - mean(g)


def test_catches_a_backward_that_a_ones_gradient_would_miss():
    x = mc.randn(6, requires_grad=True)
    # with an all-ones upstream gradient the missing term (mean of g) ... is 1, still wrong,
    # but with sum() as the loss the true gradient is exactly 0 and the bug is glaring
    with pytest.raises(GradcheckError, match="FAILED"):
        gradcheck(lambda t: _BrokenNormalize()(t), x)


def test_report_without_raising_names_the_worst_element():
    x = mc.randn(4, requires_grad=True)
    report = gradcheck(lambda t: _BrokenNormalize()(t), x, raise_exception=False)
    assert not report.passed
    text = str(report)
    assert "worst at index" in text and "analytic" in text and "numeric" in text


def test_needs_an_input_that_requires_grad():
    with pytest.raises(ValueError, match="no input requires a gradient"):
        gradcheck(lambda t: t * 2, mc.randn(3))


def test_float32_inputs_are_checked_in_float64():
    x = mc.randn(3, requires_grad=True)
    assert x.dtype == np.float32
    assert gradcheck(lambda t: t.exp().sum() * t, x).passed


def test_compare_with_torch_reports_mismatch(torch):
    a = np.random.default_rng(0).standard_normal((3, 3))
    with pytest.raises(AssertionError, match="output 0"):
        compare_with_torch(lambda t: t * 2, lambda t: t * 2.001, [a])
    with pytest.raises(AssertionError, match="gradient of input 0"):
        compare_with_torch(lambda t: _BrokenNormalize()(t), lambda t: t - t.mean(), [a])
    report = compare_with_torch(lambda t: t.exp(), lambda t: t.exp(), [a])
    assert report.passed and report.forward_error < 1e-12


def test_non_contiguous_input_is_perturbed_correctly():
    base = mc.tensor(np.random.default_rng(0).standard_normal((3, 4)))
    x = base.T.detach().requires_grad_(True)         # a transposed (Fortran-order) array
    assert not x.array.flags["C_CONTIGUOUS"]
    assert gradcheck(lambda t: (t * t).sum(dim=0), x).passed
