"""The seeds' worked examples, pinned: the numbers a learner reads on the slides are the
numbers minicnn computes (spec §11 K5, K7, K8 and A4; seeds 002 and 003).

Seed 003 (the d2l-based deck) prints its examples as 2-D arrays; they are lifted to
``(N, C, H, W) = (1, 1, H, W)`` here, because minicnn's convolution (as torch's) is a
cross-correlation over batches of channels.
"""
import numpy as np
import pytest

import minicnn
from minicnn import nn
from minicnn.nn import functional as F
from minicnn.utils.summary import count_parameters

# [003] L91-114: input 0..8 as 3x3, kernel [[0, 1], [2, 3]]
X = np.arange(9.0).reshape(1, 1, 3, 3)
K = np.arange(4.0).reshape(1, 1, 2, 2)


def _conv(x, k, **kw):
    return F.conv2d(minicnn.tensor(x), minicnn.tensor(k), **kw).numpy()[0, 0]


def _conv_t(x, k, **kw):
    return F.conv_transpose2d(minicnn.tensor(x), minicnn.tensor(k), **kw).numpy()[0, 0]


def test_correlation_3x3_by_2x2():
    # 0*0 + 1*1 + 3*2 + 4*3 = 19, and so on ([003] L104-112)
    np.testing.assert_array_equal(_conv(X, K), [[19, 25], [37, 43]])


def test_correlation_equals_the_seed_loop():
    # the seed's own conv2d, the double loop of [003] L118-131
    def seed_conv2d(x, k):
        h, w = k.shape
        y = np.zeros((x.shape[0] - h + 1, x.shape[1] - w + 1))
        for i in range(y.shape[0]):
            for j in range(y.shape[1]):
                y[i, j] = (x[i:i + h, j:j + w] * k).sum()
        return y
    rng = np.random.default_rng(0)
    x, k = rng.standard_normal((6, 7)), rng.standard_normal((3, 2))
    np.testing.assert_allclose(_conv(x[None, None], k[None, None]), seed_conv2d(x, k),
                               rtol=1e-12, atol=1e-12)


def test_true_convolution_is_correlation_with_a_flipped_kernel():
    # [001] L5-13: a convolution flips the kernel; conv2d (as torch's) does not
    scipy_signal = pytest.importorskip("scipy.signal")
    flipped = K[..., ::-1, ::-1].copy()
    np.testing.assert_array_equal(_conv(X, flipped),
                                  scipy_signal.convolve2d(X[0, 0], K[0, 0], mode="valid"))


def test_zero_padding_one():
    # [003] L180-189
    np.testing.assert_array_equal(_conv(X, K, padding=1),
                                  [[0, 3, 8, 4], [9, 19, 25, 10], [21, 37, 43, 16], [6, 7, 8, 0]])


def test_strides_three_and_two_with_padding_one():
    # [003] L191-206: stride 3 down the rows, 2 across the columns
    np.testing.assert_array_equal(_conv(X, K, padding=1, stride=(3, 2)), [[0, 8], [6, 8]])


@pytest.mark.parametrize("n, k, p, s", [(3, 2, 2, 1), (3, 2, 2, 3), (8, 3, 2, 2),
                                        (8, 3, 0, 2), (7, 5, 4, 3), (224, 11, 4, 4),
                                        (5, 5, 0, 1), (9, 2, 0, 4)])
def test_output_shape_formula(n, k, p, s):
    # [003] L208-229: floor((n - k + p + s) / s), p the *total* padding of both sides
    expected = (n - k + p + s) // s
    out = F.conv2d(minicnn.zeros(1, 1, n, n), minicnn.zeros(1, 1, k, k),
                   padding=p // 2, stride=s)
    assert out.shape == (1, 1, expected, expected)


def test_transposed_convolution_stride_two():
    # [003] L666-684 (the intermediate terms printed at L682 are garbled, errata 9; the sum
    # is right): every input pixel scatters a scaled copy of the kernel, stride 2 apart
    np.testing.assert_array_equal(_conv_t(K, K, stride=2),
                                  [[0, 0, 0, 1], [0, 0, 2, 3], [0, 2, 0, 3], [4, 6, 6, 9]])


def test_transposed_convolution_stride_one():
    # the same scatter at stride 1: the copies overlap and add
    np.testing.assert_array_equal(_conv_t(K, K), [[0, 0, 1], [0, 4, 6], [4, 12, 9]])


def test_transposed_convolution_padding_removes_the_border():
    # [003] L689: padding 1 removes the first and last rows and columns of the output
    full = _conv_t(K, K, stride=2)
    np.testing.assert_array_equal(_conv_t(K, K, stride=2, padding=1), full[1:-1, 1:-1])
    np.testing.assert_array_equal(full[1:-1, 1:-1], [[0, 2], [2, 0]])


def test_transposed_convolution_restores_the_shape():
    # [003] L696: g with f's hyper-parameters maps f(X)'s shape back to X's
    x = minicnn.zeros(1, 3, 9, 9)
    w = minicnn.zeros(5, 3, 3, 3)
    y = F.conv2d(x, w, stride=2, padding=1)
    assert y.shape == (1, 5, 5, 5)
    assert F.conv_transpose2d(y, w, stride=2, padding=1).shape == x.shape


def test_bed_of_nails_is_a_one_hot_transposed_convolution():
    # [001] L210 / spec A4: zero insertion = conv_transpose2d with [[1, 0], [0, 0]] at
    # stride 2 = max_unpool2d with the top-left indices
    nails = _conv_t(K, np.array([[[[1.0, 0.0], [0.0, 0.0]]]]), stride=2)
    np.testing.assert_array_equal(nails, [[0, 0, 1, 0], [0, 0, 0, 0], [2, 0, 3, 0],
                                          [0, 0, 0, 0]])
    indices = minicnn.tensor(np.array([[[[0, 2], [8, 10]]]]), dtype="int64")
    unpooled = F.max_unpool2d(minicnn.tensor(K), indices, kernel_size=2).numpy()[0, 0]
    np.testing.assert_array_equal(unpooled, nails)


PIXEL_UTILISATION_3X3 = [[1, 2, 3, 2, 1], [2, 4, 6, 4, 2], [3, 6, 9, 6, 3],
                         [2, 4, 6, 4, 2], [1, 2, 3, 2, 1]]


def test_pixel_utilisation_matrix():
    # [003] L163-178: how many 3x3 windows cover each pixel of a 5x5 input. Twice: as the
    # transposed convolution of ones, and as conv2d's input gradient under an upstream
    # gradient of ones (the backward of a convolution *is* a transposed convolution)
    np.testing.assert_array_equal(_conv_t(np.ones((1, 1, 3, 3)), np.ones((1, 1, 3, 3))),
                                  PIXEL_UTILISATION_3X3)
    x = minicnn.zeros(1, 1, 5, 5, requires_grad=True)
    F.conv2d(x, minicnn.ones(1, 1, 3, 3)).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy()[0, 0], PIXEL_UTILISATION_3X3)
    # the 1x1 kernel uses every pixel once; the 2x2 one 1-2-4 from corner to centre
    x = minicnn.zeros(1, 1, 3, 3, requires_grad=True)
    F.conv2d(x, minicnn.ones(1, 1, 2, 2)).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy()[0, 0], [[1, 2, 1], [2, 4, 2], [1, 2, 1]])


def _basic_block(c):
    return nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1))


def test_residual_block_parameter_counts():
    # [002] L870: 2 x (3x3x64 + 1) x 64 "~ 73k"; L877: 2 x (3x3x256 + 1) x 256 "~ 1.2m"
    assert count_parameters(_basic_block(64)) == 73_856
    assert count_parameters(_basic_block(256)) == 1_180_160


def test_bottleneck_parameter_count():
    # [002] L891: 256x64 + (3x3x64 + 1) x 64 + 64x256 "~ 70k" (the 1x1 convs bias-free)
    block = nn.Sequential(nn.Conv2d(256, 64, 1, bias=False), nn.Conv2d(64, 64, 3, padding=1),
                          nn.Conv2d(64, 256, 1, bias=False))
    assert count_parameters(block) == 69_696


@pytest.mark.parametrize("c", [1, 16, 64])
def test_three_3x3_against_one_7x7(c):
    # [000] L199-204: three 3x3 convolutions, 27 C^2 weights; one 7x7, 49 C^2; both see 7x7
    stack = nn.Sequential(*[nn.Conv2d(c, c, 3, bias=False) for _ in range(3)])
    single = nn.Conv2d(c, c, 7, bias=False)
    assert count_parameters(stack) == 27 * c * c
    assert count_parameters(single) == 49 * c * c
    assert stack(minicnn.zeros(1, c, 7, 7)).shape == single(minicnn.zeros(1, c, 7, 7)).shape
