"""nn.init.bilinear_: FCN's bilinear filler for a transposed convolution. Its kernel by
hand, its channel layout, and the identity that makes it worth having: a deconvolution
(k = 2f, stride f, padding f/2) so initialised *is* bilinear interpolation by f
(align_corners=False) away from an f-pixel border."""
import numpy as np
import pytest

import minicnn
from minicnn import nn
from minicnn.nn import functional as F
from minicnn.nn import init


def _deconv(channels, f, groups, dtype):
    m = nn.ConvTranspose2d(channels, channels, 2 * f, stride=f, padding=f // 2,
                           groups=groups, bias=False).to(dtype=dtype)
    init.bilinear_(m.weight)
    return m


def test_kernel_by_hand():
    # k = 4: f = 2, c = 1.5, tent [1/4, 3/4, 3/4, 1/4]; k = 3: f = 2, c = 1, [1/2, 1, 1/2]
    w4 = init.bilinear_(nn.Parameter(np.full((1, 1, 4, 4), 7.0))).numpy()[0, 0]
    t4 = np.array([0.25, 0.75, 0.75, 0.25])
    np.testing.assert_array_equal(w4, np.outer(t4, t4))
    w3 = init.bilinear_(nn.Parameter(np.zeros((1, 1, 3, 3)))).numpy()[0, 0]
    np.testing.assert_array_equal(w3, [[0.25, 0.5, 0.25], [0.5, 1, 0.5], [0.25, 0.5, 0.25]])
    # a non-square kernel takes each axis's own tent: k = 1 is the one-tap [1]
    w = init.bilinear_(nn.Parameter(np.zeros((1, 1, 1, 5)))).numpy()[0, 0]
    np.testing.assert_allclose(w, [[1 / 3, 2 / 3, 1, 2 / 3, 1 / 3]], rtol=1e-15)


def test_channel_layout_and_in_place():
    full = nn.Parameter(np.random.default_rng(0).standard_normal((3, 3, 4, 4)))
    assert init.bilinear_(full) is full                     # in place, returned
    a = full.numpy()
    for i in range(3):
        for j in range(3):
            assert (a[i, j] != 0).any() == (i == j)          # identity across channels
    grouped = init.bilinear_(nn.Parameter(np.ones((4, 2, 2, 2), np.float32)))  # groups=2
    g = grouped.numpy()
    assert grouped.dtype == np.float32
    # channel i -> column i % 2 in its group: 0->0, 1->1, 2->0, 3->1
    assert [tuple(np.flatnonzero(g[i].reshape(2, -1).any(1))) for i in range(4)] == \
        [(0,), (1,), (0,), (1,)]


@pytest.mark.parametrize("f", [2, 8, 32])
@pytest.mark.parametrize("groups", [1, 3])
def test_deconvolution_equals_bilinear_interpolation(torch, f, groups):
    rng = np.random.default_rng(f)
    x = rng.standard_normal((2, 3, 6, 5))
    for dtype, tol in ((np.float64, 1e-13), (np.float32, 5e-7)):
        deconv = _deconv(3, f, groups, dtype)
        xin = x.astype(dtype)
        with minicnn.no_grad():
            got = deconv(minicnn.tensor(xin)).numpy()
        want = torch.nn.functional.interpolate(
            torch.from_numpy(xin), scale_factor=f, mode="bilinear",
            align_corners=False).numpy()
        assert got.shape == want.shape == (2, 3, 6 * f, 5 * f)
        inner = (slice(None), slice(None), slice(f, -f), slice(f, -f))
        assert np.abs(got[inner] - want[inner]).max() <= tol
        # and minicnn's own interpolate agrees the same way
        mine = F.interpolate(minicnn.tensor(xin), scale_factor=f, mode="bilinear",
                             align_corners=False).numpy()
        assert np.abs(got[inner] - mine[inner]).max() <= tol
        # the border is where they differ (the deconvolution sees zeros outside)
        assert np.abs(got - want).max() > 1e-3


def test_errors():
    with pytest.raises(ValueError, match=r"bilinear_: expected a 4-D .*got shape \(3, 4\)"):
        init.bilinear_(nn.Parameter(np.zeros((3, 4))))
    with pytest.raises(ValueError, match=r"C_in \(3\) must be a multiple of dim 1 \(2\)"):
        init.bilinear_(nn.Parameter(np.zeros((3, 2, 4, 4))))
    with pytest.raises(TypeError, match="bilinear_: can only fill floating-point"):
        init.bilinear_(minicnn.tensor(np.zeros((1, 1, 2, 2), np.int64)))
