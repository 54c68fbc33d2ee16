"""Cases for the losses. Class weights are constants (torch refuses to differentiate
them), so they live inside the case's functions rather than among its inputs."""
import numpy as np

from ... import functional as F
from ...autograd import tensor
from ..opcheck import register

_W5 = np.array([0.5, 1.0, 2.0, 0.25, 1.5])
_W4 = np.array([1.0, 0.3, 2.0, 0.7])


def _tf():
    import torch.nn.functional as tf
    return tf


def _tw(w, like):
    """Class weights as a torch tensor of the input's dtype (torch insists on it)."""
    import torch
    return torch.tensor(w, dtype=like.dtype)


def _classes(shape, classes, ignore=()):
    """Logits of ``shape`` and integer targets for them, some set to ignore_index -100."""
    def make(rng):
        x = 2 * rng.standard_normal(shape)
        t = rng.integers(0, classes, (shape[0],) + tuple(shape[2:]))
        flat = t.reshape(-1)
        for k in ignore:
            flat[k] = -100
        return [x, t]
    return make


register("cross_entropy", "(4,5) mean", _classes((4, 5), 5), F.cross_entropy,
         lambda x, t: _tf().cross_entropy(x, t))
register("cross_entropy", "(3,4,2,3) weight ignore_index label_smoothing=0.1",
         _classes((3, 4, 2, 3), 4, ignore=(1, 7)),
         lambda x, t: F.cross_entropy(x, t, tensor(_W4), label_smoothing=0.1),
         lambda x, t: _tf().cross_entropy(x, t, _tw(_W4, x), label_smoothing=0.1))
register("cross_entropy", "(5,5) reduction='none' weight",
         _classes((5, 5), 5, ignore=(2,)),
         lambda x, t: F.cross_entropy(x, t, tensor(_W5), reduction="none"),
         lambda x, t: _tf().cross_entropy(x, t, _tw(_W5, x), reduction="none"))
register("cross_entropy", "probability target, weight, label_smoothing=0.2",
         lambda r: [2 * r.standard_normal((3, 5, 2)),
                    # NOTE: contiguous, or gradcheck's flat view of it would be a copy
                    np.ascontiguousarray(r.dirichlet(np.ones(5), (3, 2)).transpose(0, 2, 1))],
         lambda x, q: F.cross_entropy(x, q, tensor(_W5), label_smoothing=0.2),
         lambda x, q: _tf().cross_entropy(x, q, _tw(_W5, x), label_smoothing=0.2))
register("cross_entropy", "logits of +-1000, sum",
         lambda r: [1000 * np.sign(r.standard_normal((4, 3))) + r.standard_normal((4, 3)),
                    r.integers(0, 3, 4)],
         lambda x, t: F.cross_entropy(x, t, reduction="sum"),
         lambda x, t: _tf().cross_entropy(x, t, reduction="sum"))
# U-Net's weighted loss: a constant (N, H, W) weight map (torch has no pixel_weight: its
# twin weights torch's per-pixel losses and divides by the weight of the kept pixels)
_PW = 0.1 + 3 * np.random.default_rng(9).random((2, 3, 3))


def _torch_pixel_weighted(x, t):
    import torch
    m = torch.tensor(_PW, dtype=x.dtype) * (t != -100)
    return (_tf().cross_entropy(x, t, reduction="none") * m).sum() / m.sum()


register("cross_entropy", "(2,4,3,3) pixel_weight ignore_index mean",
         _classes((2, 4, 3, 3), 4, ignore=(5,)),
         lambda x, t: F.cross_entropy(x, t, pixel_weight=tensor(_PW)), _torch_pixel_weighted)
register("cross_entropy", "(2,4,3,3) pixel_weight weight label_smoothing=0.1 none",
         _classes((2, 4, 3, 3), 4),
         lambda x, t: F.cross_entropy(x, t, tensor(_W4), label_smoothing=0.1, reduction="none",
                                      pixel_weight=tensor(_PW)),
         lambda x, t: _tf().cross_entropy(x, t, _tw(_W4, x), label_smoothing=0.1,
                                          reduction="none") * _tw(_PW, x))
register("nll_loss", "(4,5) weight ignore_index", _classes((4, 5), 5, ignore=(0,)),
         lambda x, t: F.nll_loss(x, t, tensor(_W5)),
         lambda x, t: _tf().nll_loss(x, t, _tw(_W5, x)))
register("nll_loss", "(2,3,4) reduction='none'", _classes((2, 3, 4), 3),
         lambda x, t: F.nll_loss(x, t, reduction="none"),
         lambda x, t: _tf().nll_loss(x, t, reduction="none"))


def _pair(shape, gap_at=(0.0,), gap=0.05):
    """Input and target whose difference keeps ``gap`` away from each kink of the loss."""
    def make(rng):
        x, y = rng.standard_normal(shape), rng.standard_normal(shape)
        d = x - y
        for k in gap_at:
            for sign in (1, -1):
                near = np.abs(d - sign * k) < gap
                x = np.where(near, x + 3 * gap, x)
                d = x - y
        return [x, y]
    return make


register("mse_loss", "(3,4) mean", _pair((3, 4)), F.mse_loss, lambda x, y: _tf().mse_loss(x, y))
register("mse_loss", "weight, sum", lambda r: _pair((3, 4))(r) + [r.random((3, 4))],
         lambda x, y, w: F.mse_loss(x, y, reduction="sum", weight=w),
         lambda x, y, w: _tf().mse_loss(x, y, reduction="sum", weight=w))
register("l1_loss", "(2,3,4) mean", _pair((2, 3, 4)), F.l1_loss,
         lambda x, y: _tf().l1_loss(x, y))
register("l1_loss", "weight, mean", lambda r: _pair((3, 4))(r) + [r.random((3, 4))],
         lambda x, y, w: F.l1_loss(x, y, weight=w),
         lambda x, y, w: _tf().l1_loss(x, y, weight=w))
register("smooth_l1_loss", "beta=0.5 none", _pair((4, 5), gap_at=(0.5,)),
         lambda x, y: F.smooth_l1_loss(x, y, reduction="none", beta=0.5),
         lambda x, y: _tf().smooth_l1_loss(x, y, reduction="none", beta=0.5))
register("huber_loss", "delta=0.7 mean", _pair((4, 5), gap_at=(0.7,)),
         lambda x, y: F.huber_loss(x, y, delta=0.7),
         lambda x, y: _tf().huber_loss(x, y, delta=0.7))
register("binary_cross_entropy", "weight (5,), mean",
         lambda r: [0.05 + 0.9 * r.random((3, 5)), r.random((3, 5))],
         lambda x, y: F.binary_cross_entropy(x, y, tensor(_W5)),
         lambda x, y: _tf().binary_cross_entropy(x, y, _tw(_W5, x)))
register("binary_cross_entropy", "0/1 targets, none",
         lambda r: [0.05 + 0.9 * r.random((4, 3)), (r.random((4, 3)) > 0.5).astype(float)],
         lambda x, y: F.binary_cross_entropy(x, y, reduction="none"),
         lambda x, y: _tf().binary_cross_entropy(x, y, reduction="none"))
register("binary_cross_entropy_with_logits", "weight and pos_weight",
         lambda r: [3 * r.standard_normal((3, 5)), r.random((3, 5))],
         lambda x, y: F.binary_cross_entropy_with_logits(x, y, tensor(_W5),
                                                         pos_weight=tensor(_W5[::-1].copy())),
         lambda x, y: _tf().binary_cross_entropy_with_logits(
             x, y, _tw(_W5, x), pos_weight=_tw(_W5[::-1].copy(), x)))
register("binary_cross_entropy_with_logits", "logits of +-1000, sum",
         lambda r: [1000 * np.sign(r.standard_normal((4, 3))) + r.standard_normal((4, 3)),
                    (r.random((4, 3)) > 0.5).astype(float)],
         lambda x, y: F.binary_cross_entropy_with_logits(x, y, reduction="sum"),
         lambda x, y: _tf().binary_cross_entropy_with_logits(x, y, reduction="sum"),
         requires_grad=[True, False])
