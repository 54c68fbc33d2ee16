"""Cases for dropout and dropout2d.

torch draws its masks from its own generator, so it cannot reproduce minicnn's; instead
each torch call multiplies by the mask minicnn draws for the same seed (read off as
``dropout(ones)``, which is m / (1 - p)). Every call re-seeds minicnn's generator, so
the forward pass, the backward pass and every finite-difference evaluation use one mask.
The previous generator state is restored afterwards: a check leaves no trace.
"""
import numpy as np

from minicnn import backend, functional as F
from minicnn.autograd import Tensor
from ..opcheck import register

_SEED = 1234


def _seeded(fn):
    """Run ``fn`` with minicnn's generator freshly seeded, then restore its state."""
    def run(*args):
        state = backend.get_rng_state()
        backend.manual_seed(_SEED)
        try:
            return fn(*args)
        finally:
            backend.set_rng_state(state)
    return run


def _torch_with_minicnn_mask(mc_fn):
    """x ↦ x · mask, with the scaled mask minicnn's ``mc_fn`` applies for the seed."""
    def run(x):
        import torch
        ones = Tensor(np.ones(tuple(x.shape), dtype=str(x.dtype).replace("torch.", "")))
        mask = _seeded(mc_fn)(ones).numpy()
        return x * torch.from_numpy(mask.copy())
    return run


def _torch_f():
    import torch.nn.functional as TF
    return TF


def _normal(shape):
    return lambda rng: [rng.standard_normal(shape)]


for _p in (0.5, 0.2):
    _fn = (lambda x, p=_p: F.dropout(x, p))
    register("dropout", f"(4,5,3) p={_p}", _normal((4, 5, 3)), _seeded(_fn),
             _torch_with_minicnn_mask(_fn))
register("dropout", "p=1 all dropped", _normal((3, 4)), lambda x: F.dropout(x, 1.0),
         lambda x: _torch_f().dropout(x, 1.0))
register("dropout", "training=False identity", _normal((3, 4)),
         lambda x: F.dropout(x, 0.5, training=False),
         lambda x: _torch_f().dropout(x, 0.5, training=False))

_fn2 = (lambda x: F.dropout2d(x, 0.4))
register("dropout2d", "(3,4,2,3) p=0.4", _normal((3, 4, 2, 3)), _seeded(_fn2),
         _torch_with_minicnn_mask(_fn2))
register("dropout2d", "p=1 all dropped", _normal((2, 3, 2, 2)), lambda x: F.dropout2d(x, 1.0),
         lambda x: _torch_f().dropout2d(x, 1.0))

