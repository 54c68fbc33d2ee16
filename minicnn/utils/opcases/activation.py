"""Cases for the activations beyond the core ones: leaky_relu, elu, gelu, relu6, hardtanh,
softplus, silu. Inputs keep clear of each kink (finite differences straddling one would
disagree with any one-sided derivative); tests/ops/test_activation.py checks the kinks."""
import numpy as np

from minicnn import functional as F
from ..opcheck import register


def _tf():
    import torch.nn.functional as tf
    return tf


def _away(shape, scale=1.0, kinks=(0.0,), gap=0.05):
    """Normal inputs (times ``scale``) nudged at least ``gap`` away from every kink."""
    def make(rng):
        x = scale * rng.standard_normal(shape)
        for k in kinks:
            near = np.abs(x - k) < gap
            x = np.where(near, k + np.where(x >= k, gap, -gap) * 2, x)
        return [x]
    return make


register("leaky_relu", "slope=0.2", _away((4, 5)), lambda a: F.leaky_relu(a, 0.2),
         lambda a: _tf().leaky_relu(a, 0.2))
register("leaky_relu", "default slope, (2,3,4)", _away((2, 3, 4)), F.leaky_relu,
         lambda a: _tf().leaky_relu(a))
register("elu", "alpha=1.5", _away((4, 5), scale=2), lambda a: F.elu(a, alpha=1.5),
         lambda a: _tf().elu(a, alpha=1.5))
register("gelu", "exact (erf)", lambda r: [3 * r.standard_normal((4, 5))], F.gelu,
         lambda a: _tf().gelu(a))
register("gelu", "approximate='tanh'", lambda r: [3 * r.standard_normal((4, 5))],
         lambda a: F.gelu(a, approximate="tanh"), lambda a: _tf().gelu(a, approximate="tanh"))
register("relu6", "spanning both kinks", _away((5, 6), scale=4, kinks=(0.0, 6.0)), F.relu6,
         lambda a: _tf().relu6(a))
register("hardtanh", "min=-0.5 max=1.5", _away((5, 4), scale=1.5, kinks=(-0.5, 1.5)),
         lambda a: F.hardtanh(a, -0.5, 1.5), lambda a: _tf().hardtanh(a, -0.5, 1.5))
# softplus jumps where beta*x crosses threshold (torch's switch): keep x away from 1.5
register("softplus", "beta=2 threshold=3", _away((4, 5), scale=2, kinks=(1.5,)),
         lambda a: F.softplus(a, beta=2, threshold=3),
         lambda a: _tf().softplus(a, beta=2, threshold=3))
register("softplus", "default, large |x|", lambda r: [15 * r.standard_normal((3, 4))],
         F.softplus, lambda a: _tf().softplus(a))
register("silu", "(4,5)", lambda r: [3 * r.standard_normal((4, 5))], F.silu,
         lambda a: _tf().silu(a))
