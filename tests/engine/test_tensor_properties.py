"""Property tests against torch (hypothesis): broadcasting, reductions, shape ops, indexing.

Each property draws shapes/axes/indices, runs the same expression in both libraries with
``compare_with_torch`` (forward and every input gradient, random upstream gradient), in
float64 with tight tolerances.
"""
import numpy as np
from hypothesis import given, settings, strategies as st, HealthCheck
from hypothesis.extra import numpy as hnp

import minicnn as mc
from minicnn.utils.torch_compare import compare_with_torch

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def _data(rng, shape, positive=False):
    a = rng.standard_normal(shape)
    return np.abs(a) + 0.5 if positive else a


@SETTINGS
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, max_side=4),
       op=st.sampled_from(["add", "sub", "mul", "div", "pow", "maximum"]))
def test_broadcasting_binary_ops(torch, shapes, op):
    rng = np.random.default_rng(0)
    a_shape, b_shape = shapes.input_shapes
    positive = op in ("div", "pow")
    a, b = _data(rng, a_shape, positive), _data(rng, b_shape, positive)
    fns = {"add": lambda x, y: x + y, "sub": lambda x, y: x - y, "mul": lambda x, y: x * y,
           "div": lambda x, y: x / y, "pow": lambda x, y: x ** y}
    if op == "maximum":
        mc_fn, th_fn = mc.maximum, torch.maximum
    else:
        mc_fn = th_fn = fns[op]
    compare_with_torch(mc_fn, th_fn, [a, b], name=op)


@SETTINGS
@given(shape=hnp.array_shapes(min_dims=1, max_dims=4, max_side=5),
       op=st.sampled_from(["sum", "mean", "amax", "amin", "var", "std"]),
       keepdim=st.booleans(), data=st.data())
def test_reductions_over_drawn_dims(torch, shape, op, keepdim, data):
    ndim = len(shape)
    dims = data.draw(st.lists(st.integers(-ndim, ndim - 1), min_size=1, max_size=ndim,
                              unique_by=lambda d: d % ndim))
    dims = tuple(dims)
    x = np.random.default_rng(1).permutation(np.prod(shape)).reshape(shape) * 0.37 + 0.1
    if op in ("var", "std"):
        n = int(np.prod([shape[d] for d in dims]))
        if n < 2:
            return         # unbiased estimator undefined for one element
    mc_fn = lambda t: getattr(mc, op)(t, dim=dims, keepdim=keepdim)
    th_fn = lambda t: getattr(torch, op)(t, dim=dims, keepdim=keepdim)
    compare_with_torch(mc_fn, th_fn, [x], name=op)


@SETTINGS
@given(shape=hnp.array_shapes(min_dims=1, max_dims=4, max_side=5), keepdim=st.booleans(),
       data=st.data(), kind=st.sampled_from(["max", "min"]))
def test_max_min_with_dim_return_values_and_indices(torch, shape, keepdim, data, kind):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = np.random.default_rng(2).permutation(np.prod(shape)).reshape(shape).astype(float)
    compare_with_torch(lambda t: tuple(getattr(t, kind)(dim, keepdim)),
                       lambda t: tuple(getattr(t, kind)(dim, keepdim)), [x], name=kind)


def test_full_max_shares_gradient_among_ties(torch):
    x = np.array([[1.0, 3.0], [3.0, 2.0]])
    compare_with_torch(lambda t: t.max(), lambda t: t.max(), [x])
    compare_with_torch(lambda t: mc.amax(t, dim=1), lambda t: torch.amax(t, dim=1),
                       [np.array([[2.0, 2.0, 1.0], [0.0, 5.0, 5.0]])])


@SETTINGS
@given(shape=hnp.array_shapes(min_dims=1, max_dims=5, max_side=4), data=st.data())
def test_permute_transpose_flatten(torch, shape, data):
    ndim = len(shape)
    perm = tuple(data.draw(st.permutations(range(ndim))))
    d0, d1 = data.draw(st.integers(-ndim, ndim - 1)), data.draw(st.integers(-ndim, ndim - 1))
    start = data.draw(st.integers(0, ndim - 1))
    end = data.draw(st.integers(start, ndim - 1))
    x = np.random.default_rng(3).standard_normal(shape)
    compare_with_torch(lambda t: t.permute(*perm), lambda t: t.permute(*perm), [x])
    compare_with_torch(lambda t: t.transpose(d0, d1), lambda t: t.transpose(d0, d1), [x])
    compare_with_torch(lambda t: mc.flatten(t, start, end), lambda t: torch.flatten(t, start, end), [x])


@SETTINGS
@given(shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=4), data=st.data())
def test_reshape_squeeze_unsqueeze(torch, shape, data):
    x = np.random.default_rng(4).standard_normal(shape)
    n = x.size
    ndim = len(shape)
    dim = data.draw(st.integers(-ndim - 1, ndim))
    compare_with_torch(lambda t: t.reshape(-1), lambda t: t.reshape(-1), [x])
    compare_with_torch(lambda t: t.reshape(n, 1), lambda t: t.reshape(n, 1), [x])
    compare_with_torch(lambda t: t.unsqueeze(dim), lambda t: t.unsqueeze(dim), [x])
    compare_with_torch(lambda t: t.unsqueeze(dim).squeeze(), lambda t: t.unsqueeze(dim).squeeze(), [x])


def _slice(draw, n):
    start = draw(st.one_of(st.none(), st.integers(-n, n)))
    stop = draw(st.one_of(st.none(), st.integers(-n, n)))
    step = draw(st.one_of(st.none(), st.integers(1, 3)))
    return slice(start, stop, step)


@SETTINGS
@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5), data=st.data())
def test_basic_indexing_and_slicing(torch, shape, data):
    index = []
    for n in shape:
        kind = data.draw(st.sampled_from(["int", "slice", "full"]))
        if kind == "int":
            index.append(data.draw(st.integers(-n, n - 1)))
        elif kind == "slice":
            index.append(_slice(data.draw, n))
        else:
            index.append(slice(None))
    index = tuple(index)
    x = np.random.default_rng(5).standard_normal(shape)
    compare_with_torch(lambda t: t[index], lambda t: t[index], [x])


@SETTINGS
@given(n=st.integers(1, 6), m=st.integers(1, 4), data=st.data())
def test_integer_array_and_mask_indexing(torch, n, m, data):
    idx = data.draw(st.lists(st.integers(-n, n - 1), min_size=1, max_size=8))  # repeats allowed
    x = np.random.default_rng(6).standard_normal((n, m))
    mask = np.random.default_rng(7).standard_normal((n, m)) > 0
    compare_with_torch(lambda t: t[idx], lambda t: t[idx], [x])
    compare_with_torch(lambda t: t[:, [0] * 3], lambda t: t[:, [0] * 3], [x])
    compare_with_torch(lambda t: t[mc.tensor(mask)], lambda t: t[torch.tensor(mask)], [x])


@SETTINGS
@given(shapes=st.lists(st.integers(1, 4), min_size=1, max_size=4), dim=st.integers(0, 2))
def test_cat_stack_split(torch, shapes, dim):
    rng = np.random.default_rng(8)
    base = [3, 2, 4]
    arrays = []
    for s in shapes:
        shape = list(base)
        shape[dim] = s
        arrays.append(rng.standard_normal(shape))
    k = len(arrays)
    compare_with_torch(lambda *ts: mc.cat(list(ts), dim), lambda *ts: torch.cat(list(ts), dim), arrays)
    same = [rng.standard_normal(base) for _ in range(k)]
    compare_with_torch(lambda *ts: mc.stack(list(ts), dim), lambda *ts: torch.stack(list(ts), dim), same)
    compare_with_torch(lambda t: mc.split(t, 2, dim), lambda t: torch.split(t, 2, dim), [same[0]])


@SETTINGS
@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=4),
       op=st.sampled_from(["exp", "log", "sqrt", "abs", "tanh", "sigmoid", "neg"]))
def test_unary_math(torch, shape, op):
    x = np.random.default_rng(9).standard_normal(shape)
    if op in ("log", "sqrt", "abs"):
        x = np.abs(x) + 0.2
    compare_with_torch(lambda t: getattr(t, op)(), lambda t: getattr(t, op)(), [x])


def test_where_clamp_pad(torch):
    rng = np.random.default_rng(10)
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((4,))
    cond = rng.standard_normal((3, 4)) > 0
    compare_with_torch(lambda x, y: mc.where(mc.tensor(cond), x, y),
                       lambda x, y: torch.where(torch.tensor(cond), x, y), [a, b])
    c = rng.uniform(-1, 1, (5, 5))
    c[np.abs(np.abs(c) - 0.5) < 0.05] = 0.0      # keep away from the clamp kinks
    compare_with_torch(lambda x: x.clamp(-0.5, 0.5), lambda x: x.clamp(-0.5, 0.5), [c])
    compare_with_torch(lambda x: mc.pad(x, (1, 1, 2, 0)),
                       lambda x: torch.nn.functional.pad(x, (1, 1, 2, 0)), [a])


def test_float32_matches_torch_loosely(torch):
    rng = np.random.default_rng(11)
    a, b = rng.standard_normal((8, 16)), rng.standard_normal((16, 4))
    compare_with_torch(lambda x, y: (x @ y).tanh().sum(dim=1), lambda x, y: (x @ y).tanh().sum(dim=1),
                       [a, b], dtype=np.float32)
