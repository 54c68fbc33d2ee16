"""Cases for the normalisation ops: local response norm (across channels and within a
channel), batch norm (training and eval, small batches, running statistics), layer norm
and group norm; the p-norm normalisation (F.normalize).

Hyper-parameters are chosen so that every term of a backward pass matters: LRN with α
near 1 (with torch's default α = 1e-4 the window term is invisible next to the identity
term) and odd and even sizes (an even window is mirrored in the backward pass); batch
norm with N = 2, where the mean and variance terms of the gradient are as large as the
direct one.
"""
import itertools

import numpy as np

from minicnn import functional as F
from ..opcheck import register


def _torch_f():
    import torch.nn.functional as TF
    return TF


def _normal(*shapes):
    return lambda rng: [rng.standard_normal(s) for s in shapes]


# ------------------------------------------------------------------ LRN across channels

for _shape, _size, _k in (((2, 7, 3, 3), 5, 1.0), ((2, 6, 3, 2), 4, 2.0),
                          ((2, 5, 4), 3, 1.0), ((1, 4, 2, 2, 2), 2, 1.5),
                          ((2, 3, 3, 3), 6, 1.0)):
    register("local_response_norm", f"{_shape} size={_size} alpha=0.9 k={_k}",
             _normal(_shape),
             lambda x, s=_size, k=_k: F.local_response_norm(x, s, alpha=0.9, beta=0.75, k=k),
             lambda x, s=_size, k=_k: _torch_f().local_response_norm(x, s, alpha=0.9,
                                                                     beta=0.75, k=k))
register("local_response_norm", "torch defaults size=5", _normal((2, 8, 3, 3)),
         lambda x: F.local_response_norm(x, 5), lambda x: _torch_f().local_response_norm(x, 5))


# --------------------------------------------------------------- LRN within a channel

def lrn_spatial_reference(x, size, alpha, beta, k):
    """Direct loop: every (n, c, h, w) divided by its own window's sum of squares."""
    n_, c_, h_, w_ = x.shape
    before = size // 2
    out = np.empty_like(x)
    for n, c, h, w in itertools.product(range(n_), range(c_), range(h_), range(w_)):
        total = 0.0
        for dh, dw in itertools.product(range(size), range(size)):
            hh, ww = h - before + dh, w - before + dw
            if 0 <= hh < h_ and 0 <= ww < w_:
                total += x[n, c, hh, ww] ** 2
        out[n, c, h, w] = x[n, c, h, w] / (k + alpha / size ** 2 * total) ** beta
    return out


for _size, _shape in ((3, (2, 2, 4, 5)), (2, (1, 3, 4, 4)), (4, (2, 1, 3, 5))):
    register("local_response_norm_spatial", f"{_shape} size={_size} alpha=0.9",
             _normal(_shape),
             lambda x, s=_size: F.local_response_norm_spatial(x, s, alpha=0.9, beta=0.75, k=1.0),
             reference=lambda x, s=_size: lrn_spatial_reference(x, s, 0.9, 0.75, 1.0))


# ---------------------------------------------------------------------- batch norm

def _bn_inputs(shape):
    """x, running_mean, running_var (positive), weight, bias."""
    def make(rng):
        c = shape[1]
        return [rng.standard_normal(shape), rng.standard_normal(c), rng.random(c) + 0.5,
                rng.standard_normal(c), rng.standard_normal(c)]
    return make


_BN_GRAD = [True, False, False, True, True]   # running statistics get no gradient


def _bn(training, momentum=0.1, stats=False, mc=True):
    """A batch_norm call for one library. Copies the running statistics first so that
    repeated calls (finite differences) all start from the same state; ``stats=True``
    also returns the updated statistics (then no finite differences: they depend on x
    outside the graph)."""
    def run(x, rm, rv, w, b):
        rm, rv = rm.clone(), rv.clone()
        fn = F.batch_norm if mc else _torch_f().batch_norm
        y = fn(x, rm, rv, w, b, training=training, momentum=momentum, eps=1e-5)
        return (y, rm, rv) if stats else y
    return run


for _shape in ((2, 3), (2, 3, 4), (2, 3, 2, 3)):
    register("batch_norm", f"training N=2 {_shape}", _bn_inputs(_shape),
             _bn(True), _bn(True, mc=False), requires_grad=_BN_GRAD)
register("batch_norm", "eval (3,4,2,2)", _bn_inputs((3, 4, 2, 2)), _bn(False),
         _bn(False, mc=False), requires_grad=_BN_GRAD)
register("batch_norm", "training running stats momentum=0.3", _bn_inputs((4, 3, 2, 2)),
         _bn(True, 0.3, stats=True), _bn(True, 0.3, stats=True, mc=False),
         requires_grad=_BN_GRAD, grad_check=False)
register("batch_norm", "training no affine no stats (5,2)", _normal((5, 2)),
         lambda x: F.batch_norm(x, None, None, training=True),
         lambda x: _torch_f().batch_norm(x, None, None, training=True))


# ---------------------------------------------------------------------- layer norm

register("layer_norm", "(2,3,4) normalized (3,4)", _normal((2, 3, 4), (3, 4), (3, 4)),
         lambda x, w, b: F.layer_norm(x, (3, 4), w, b),
         lambda x, w, b: _torch_f().layer_norm(x, (3, 4), w, b))
register("layer_norm", "(3,5) normalized (5,) no affine", _normal((3, 5)),
         lambda x: F.layer_norm(x, (5,)), lambda x: _torch_f().layer_norm(x, (5,)))
register("layer_norm", "(2,2,3,2) normalized (2,) weight only", _normal((2, 2, 3, 2), (2,)),
         lambda x, w: F.layer_norm(x, (2,), w), lambda x, w: _torch_f().layer_norm(x, (2,), w))


# ---------------------------------------------------------------------- group norm

for _shape, _groups in (((2, 6, 2, 2), 3), ((2, 4, 3), 1), ((2, 4, 2, 2), 4), ((3, 4), 2)):
    register("group_norm", f"{_shape} groups={_groups}",
             _normal(_shape, (_shape[1],), (_shape[1],)),
             lambda x, w, b, g=_groups: F.group_norm(x, g, w, b),
             lambda x, w, b, g=_groups: _torch_f().group_norm(x, g, w, b))


# ------------------------------------------------------------------- normalize (p-norm)

for _p, _dim, _shape in ((2.0, 1, (2, 5, 3, 2)), (2.0, -1, (3, 4)), (1.0, 1, (2, 4, 3)),
                         (3.0, 0, (4, 3)), (float("inf"), 1, (2, 6, 2))):
    register("normalize", f"{_shape} p={_p} dim={_dim}", _normal(_shape),
             lambda x, p=_p, d=_dim: F.normalize(x, p=p, dim=d),
             lambda x, p=_p, d=_dim: _torch_f().normalize(x, p=p, dim=d))
# eps = 0.6 clamps the norm of the scaled-down second row (its gradient through n is cut)
register("normalize", "(2,3) dim=1 eps=0.6 one row clamped",
         lambda rng: [rng.standard_normal((2, 3)) * [[1.0], [0.1]]],
         lambda x: F.normalize(x, dim=1, eps=0.6),
         lambda x: _torch_f().normalize(x, dim=1, eps=0.6))
