"""kernels/numba_conv.py (the CPU fast path of convolution) against the portable
reference, over drawn geometries, in float32 and float64; and kernels/dispatch.py, which
decides when the fast path runs."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import minicnn as mc
from kernels import dispatch
from kernels import im2col as reference
from minicnn import functional as F
from strategies import conv_geometry, im2col_arguments

from kernels import numba_conv as fast          # numba is a runtime dependency
TILE = fast.TILE_ELEMENTS               # the default, read once: tests patch the module

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
DTYPES = st.sampled_from([np.float64, np.float32])
# the same products summed in another order (BLAS blocking, tiles): float32 differs in
# the last bits only
TOL = {np.float64: dict(rtol=1e-10, atol=1e-10), np.float32: dict(rtol=2e-5, atol=2e-5)}


@pytest.fixture(autouse=True)
def _fast_paths_on():
    """This file tests the fast path itself: on, whatever MINICNN_KERNELS says."""
    with dispatch.kernels("auto"):
        yield


@st.composite
def conv_case(draw):
    """A conv2d geometry with groups, and a tile size small enough (sometimes) to cut the
    batch into several tiles, or one image into bands of rows."""
    geo = draw(conv_geometry())
    tile = draw(st.sampled_from([1, 7, 40, 300, TILE]))
    return geo.x_shape, geo.w_shape, geo.keywords(), tile


@SETTINGS
@given(im2col_arguments(), DTYPES)
def test_im2col_equals_reference(rng, geo, dtype):
    shape, *params = geo
    x = rng.standard_normal(shape).astype(dtype)
    got = fast.im2col(x, *params)
    assert got.dtype == dtype and got.flags.c_contiguous
    np.testing.assert_array_equal(got, reference.im2col(x, *params))


@SETTINGS
@given(im2col_arguments(), DTYPES)
def test_col2im_equals_reference(rng, geo, dtype):
    shape, KH, KW, *rest = geo
    cols_shape = reference.im2col(np.zeros(shape), KH, KW, *rest).shape
    cols = rng.standard_normal(cols_shape).astype(dtype)
    got = fast.col2im(cols, shape, *rest)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, reference.col2im(cols, shape, *rest), **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_im2col_out_size_and_strided_input(rng, dtype):
    x = rng.standard_normal((3, 5, 9, 8)).astype(dtype)[:, ::2, :, ::-1]   # a strided view
    for kw in (dict(), dict(SH=2, PH=1, PW=2, DW=2), dict(out_size=(3, 2))):
        np.testing.assert_array_equal(fast.im2col(x, 3, 2, **kw),
                                      reference.im2col(x, 3, 2, **kw))


@SETTINGS
@given(conv_case(), DTYPES, st.booleans(), st.sampled_from([(1, 1, 1), (0, 1, 0),
                                                            (1, 0, 1), (0, 0, 1)]))
def test_conv2d_forward_and_backward_equal_reference(rng, monkeypatch, case, dtype, bias,
                                                     needs):
    x_shape, w_shape, kw, tile = case
    monkeypatch.setattr(fast, "TILE_ELEMENTS", tile)
    monkeypatch.setattr(fast, "MIN_TILE_COLUMNS", 1)       # tiles as small as TILE allows
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype) if bias else None
    with dispatch.kernels("reference"):
        ref_out, ref_grads = _conv_and_grads(x, w, b, kw, needs, rng)
    out, grads = _conv_and_grads(x, w, b, kw, needs, rng)
    assert out.dtype == dtype
    np.testing.assert_allclose(out, ref_out, **TOL[dtype])
    for got, want in zip(grads, ref_grads):
        assert (got is None) == (want is None)
        if got is not None:
            assert got.dtype == dtype
            np.testing.assert_allclose(got, want, **TOL[dtype])


def _conv_and_grads(x, w, b, kw, needs, rng):
    """conv2d through the Function (whichever path the mode picks), its output and the
    gradients of the inputs flagged in ``needs`` (x, w, b) for a fixed upstream one."""
    tensors = [None if a is None else mc.tensor(a, requires_grad=bool(n) and a is not None)
               for a, n in zip((x, w, b), needs)]
    out = F.conv2d(*tensors, **kw)
    if out.requires_grad:
        up = np.random.default_rng(1).standard_normal(out.shape).astype(x.dtype)
        out.backward(up)
    return out.numpy(), [None if t is None or t.grad is None else t.grad.numpy()
                         for t in tensors]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_transpose2d_equals_reference(rng, dtype):
    x = rng.standard_normal((2, 4, 5, 3)).astype(dtype)
    w = rng.standard_normal((4, 3, 3, 2)).astype(dtype)
    kw = dict(stride=(2, 1), padding=(1, 0), output_padding=(1, 0), groups=2,
              dilation=(1, 2))
    results = []
    for mode in ("reference", "auto"):
        with dispatch.kernels(mode):
            xt, wt = mc.tensor(x, requires_grad=True), mc.tensor(w, requires_grad=True)
            out = F.conv_transpose2d(xt, wt, **kw)
            out.backward(np.random.default_rng(1).standard_normal(out.shape).astype(dtype))
            results.append((out.numpy(), xt.grad.numpy(), wt.grad.numpy()))
    for got, want in zip(*results[::-1]):
        np.testing.assert_allclose(got, want, **TOL[dtype])


def test_fast_conv2d_saves_the_input_not_its_columns(rng, monkeypatch):
    x = mc.tensor(rng.standard_normal((2, 3, 6, 6)))
    w = mc.tensor(rng.standard_normal((4, 3, 3, 3)))
    only_w = F.conv2d(x, w.requires_grad_()).grad_fn
    assert only_w.fast and only_w.x_saved is x.array and only_w.w_saved is None
    assert not hasattr(only_w, "cols") and only_w.columns is None
    x.requires_grad_()
    w.requires_grad_(False)
    only_x = F.conv2d(x, w).grad_fn
    assert only_x.x_saved is None and only_x.w_saved is w.array


# ------------------------------------------------------------------------- dispatch

def test_dispatch_takes_the_fast_path_only_for_numpy_floats():
    a32, a64 = np.zeros(3, np.float32), np.zeros(3)

    class Subclass(np.ndarray):       # e.g. tests/fake_cupy.py's device arrays
        pass

    assert dispatch.use_fast(a32, None, a32) and dispatch.use_fast(a64)
    assert not dispatch.use_fast(a32, a64)                  # mixed dtypes
    assert not dispatch.use_fast(np.zeros(3, np.float16))
    assert not dispatch.use_fast(np.zeros(3, np.int64))
    assert not dispatch.use_fast(a64.view(Subclass))
    assert not dispatch.use_fast(None)
    assert dispatch.on_host(a32, None, np.zeros(2, np.int64))
    assert not dispatch.on_host(a32, a64.view(Subclass))
    with dispatch.kernels("reference"):
        assert dispatch.get_kernels() == "reference" and not dispatch.use_fast(a32)
    assert dispatch.get_kernels() == "auto"


def test_reference_mode_runs_the_reference(rng):
    x = mc.tensor(rng.standard_normal((1, 2, 4, 4)))
    w = mc.tensor(rng.standard_normal((3, 2, 3, 3)), requires_grad=True)
    with dispatch.kernels("reference"):
        node = F.conv2d(x, w).grad_fn
    assert not node.fast and node.cols is not None


def test_bad_mode_is_refused():
    with pytest.raises(ValueError, match="set_kernels: mode must be one of auto, reference"):
        dispatch.set_kernels("cuda")


def test_wide_layers_get_wide_tiles():
    """A 3x3 conv of 256 channels on a 200x272 map (Mask R-CNN's FPN at 800x1088): the
    tiles hold about MIN_TILE_COLUMNS output positions (whole rows), not the one row
    that TILE_ELEMENTS alone would allow."""
    tiles = fast._tiles(1, 200, 272, 256 * 9)
    assert sum(t[3] for t in tiles) == 200
    rows_fit = fast.MIN_TILE_COLUMNS // 272                     # 30 rows
    assert len(tiles) == -(-200 // rows_fit)                   # 7 bands ...
    assert max(t[3] for t in tiles) <= rows_fit                 # ... of at most 30 rows
    assert fast._tiles(8, 8, 8, 9) == [(0, 8, 0, 8)]            # one tile, as before


def test_plan_gives_every_thread_work():
    """Tiles for two threads: runs of whole images when the batch has two or more (each
    thread then owns its images' input gradient), else one image cut into bands."""
    plan = fast._plan(32, 8, 8, 2304, 2)
    assert [[t[:2] for t in tiles] for tiles in plan] == [[(0, 16)], [(16, 16)]]
    assert fast._whole_images(plan)
    plan = fast._plan(1, 14, 14, 4608, 2)                      # VGG-16 at batch 1
    assert [[t[2:] for t in tiles] for tiles in plan] == [[(0, 7)], [(7, 7)]]
    assert not fast._whole_images(plan)
    plan = fast._plan(3, 5, 5, 9, 2)
    assert sorted(n for tiles in plan for t in tiles for n in range(t[0], t[0] + t[1])) \
        == [0, 1, 2]


@SETTINGS
@given(conv_case(), DTYPES, st.booleans(), st.sampled_from([(1, 1, 1), (0, 1, 0),
                                                            (1, 0, 1), (1, 1, 0)]))
def test_conv_transpose2d_tiles_equal_reference(rng, monkeypatch, case, dtype, bias, needs):
    """conv_transpose2d through conv2d's tiles (its input gradient as the forward pass),
    against the reference, over conv2d's drawn geometries read the other way round."""
    x_shape, w_shape, kw, tile = case
    monkeypatch.setattr(fast, "TILE_ELEMENTS", tile)
    monkeypatch.setattr(fast, "MIN_TILE_COLUMNS", 1)
    N, C, H, W = x_shape
    O = w_shape[0]
    OH = (H + 2 * kw["padding"][0] - kw["dilation"][0] * (w_shape[2] - 1) - 1) \
        // kw["stride"][0] + 1
    OW = (W + 2 * kw["padding"][1] - kw["dilation"][1] * (w_shape[3] - 1) - 1) \
        // kw["stride"][1] + 1
    x = rng.standard_normal((N, O, OH, OW)).astype(dtype)       # conv2d's output side
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(C).astype(dtype) if bias else None
    # the output_padding that gives back conv2d's input size H x W
    op = tuple((size + 2 * p - d * (k - 1) - 1) % s for size, p, d, k, s in zip(
        (H, W), kw["padding"], kw["dilation"], w_shape[2:], kw["stride"]))
    keywords = dict(kw, output_padding=op)
    results = []
    for mode in ("reference", "auto"):
        with dispatch.kernels(mode):
            tensors = [None if a is None else mc.tensor(a, requires_grad=bool(n))
                       for a, n in zip((x, w, b), needs)]
            out = F.conv_transpose2d(*tensors, **keywords)
            assert out.shape == (N, C, H, W)
            if mode == "auto":
                assert out.grad_fn is None or out.grad_fn.tiled
            if out.requires_grad:
                out.backward(np.random.default_rng(1).standard_normal(out.shape).astype(dtype))
            results.append([out.numpy()] + [None if t is None or t.grad is None
                                            else t.grad.numpy() for t in tensors])
    for got, want in zip(results[1], results[0]):
        assert (got is None) == (want is None)
        if got is not None:
            assert got.dtype == dtype
            np.testing.assert_allclose(got, want, **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("groups", [1, 2])
def test_kernel_as_large_as_the_input_runs_as_a_matrix_multiply(rng, dtype, groups):
    """LeNet-5's C5 (16x5x5 in, 5x5 kernels): one output pixel per image, computed as a
    fully connected layer, with no columns; values and gradients as the reference."""
    x = rng.standard_normal((6, 16, 5, 5)).astype(dtype)
    w = rng.standard_normal((12, 16 // groups, 5, 5)).astype(dtype)
    b = rng.standard_normal(12).astype(dtype)
    assert fast.covers_input(x.shape, w.shape, (0, 0))
    assert not fast.covers_input(x.shape, w.shape, (1, 1))
    with dispatch.kernels("reference"):
        ref_out, ref_grads = _conv_and_grads(x, w, b, dict(groups=groups), (1, 1, 1), rng)
    out, grads = _conv_and_grads(x, w, b, dict(groups=groups), (1, 1, 1), rng)
    np.testing.assert_allclose(out, ref_out, **TOL[dtype])
    for got, want in zip(grads, ref_grads):
        np.testing.assert_allclose(got, want, **TOL[dtype])


def test_small_layers_keep_their_columns_large_ones_rebuild_them(rng, monkeypatch):
    assert fast.KEEP_COLUMNS == 0                       # off by default (measured slower)
    monkeypatch.setattr(fast, "KEEP_COLUMNS", 1 << 21)
    x = mc.tensor(rng.standard_normal((4, 3, 8, 8)))
    w = mc.tensor(rng.standard_normal((5, 3, 3, 3)), requires_grad=True)
    out = F.conv2d(x, w, padding=1)
    assert out.grad_fn.columns is not None              # 27 x 256 entries: kept
    for tiles in out.grad_fn.columns[1]:                # the backward pass reads them:
        for cols in tiles:                              # zeroed, dL/dw comes out 0
            cols[:] = 0
    out.backward(np.ones(out.shape))
    assert not w.grad.numpy().any()
    monkeypatch.setattr(fast, "KEEP_COLUMNS", 100)
    w.grad = None
    out = F.conv2d(x, w, padding=1)
    assert out.grad_fn.columns is None                  # too large now: rebuilt
    out.backward(np.ones(out.shape))
    assert w.grad.numpy().any()
    assert F.conv2d(x, w.detach(), padding=1).grad_fn is None


@pytest.mark.parametrize("x_shape", [(5, 3, 9, 7), (1, 3, 40, 40)])
def test_threads_split_the_same_sums(rng, monkeypatch, x_shape):
    """Tiles shared out over two threads (one-thread GEMMs, per-thread dL/dw parts) and
    all on one thread give the same numbers (float64: to rounding)."""
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal((4, 3, 3, 3))
    g = rng.standard_normal((x_shape[0], 4) + x_shape[2:])
    args = ((1, 1), (1, 1), (1, 1), 1)
    monkeypatch.setattr(fast, "MIN_TILE_COLUMNS", 1)
    monkeypatch.setattr(fast, "TILE_ELEMENTS", 27 * 7 * x_shape[3])   # bands of 7 rows
    results = []
    for threads in (1, 2):
        monkeypatch.setattr(fast, "THREADS", threads)
        out, _ = fast.conv2d_forward(x, w, None, *args)
        results.append((out,) + fast.conv2d_backward(g, x, w, x.shape, w.shape, *args,
                                                      True, True, True))
    for one, two in zip(*results):
        np.testing.assert_allclose(two, one, rtol=1e-12, atol=1e-12)


def test_one_blas_thread_sets_and_restores_the_blas_count():
    from kernels import _threads
    before = _threads.blas_threads()
    controllers = _threads._blas_controllers()
    assert controllers, "threadpoolctl (a dependency) finds no BLAS: nothing would split"
    with _threads.one_blas_thread():
        assert [lib.num_threads for lib in controllers.lib_controllers] == [1] * len(
            controllers.lib_controllers)
        assert _threads.blas_threads() == 1        # nested splits stay on one thread
        with _threads.one_blas_thread():
            pass
        assert controllers.lib_controllers[0].num_threads == 1     # the outer block holds
    assert _threads.blas_threads() == before
    assert _threads.threads_for(3) == 3 and _threads.threads_for(None) == before
