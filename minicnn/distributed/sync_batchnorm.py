"""SyncBatchNorm: batch normalisation whose statistics are the global batch's, over every
rank (``torch.nn.SyncBatchNorm``).

Under plain data parallelism each rank normalises with its own share's mean and variance,
so N ranks of ``B/N`` examples do not compute what one process of ``B`` does. This layer
sums, per channel, the ranks' counts and values (one allreduce), then their squared
deviations from the global mean (a second one: two passes keep float32 data exact to
float64 sums), and normalises every rank's share with the global statistics; the running
statistics then move towards the global ones on every rank. Backward needs the global sums
of ``dy`` and ``dy · x̂`` (a third allreduce):

    dx = γ / σ · (dy - mean(dy) - x̂ · mean(dy · x̂))     means over all ranks' M values

while ``dγ = Σ dy · x̂`` and ``dβ = Σ dy`` stay local (DistributedDataParallel averages
them with the other gradients). In evaluation mode, or with one rank, it is BatchNorm.
"""
from __future__ import annotations

from .. import backend
from ..autograd import Function, as_tensor
from ..nn import Module
from ..nn._utils import check_channels, check_ndim
from ..nn.normalization import _BatchNorm
from .process_group import get_communicator, is_initialized

__all__ = ["SyncBatchNorm"]


class SyncBatchNorm(_BatchNorm):
    """Batch normalisation over the global batch of every rank (see the module docstring).

    Input (N, C) or (N, C, *); arguments as ``BatchNorm2d``, plus ``process_group`` (a
    communicator; default: the one of ``init_process_group()``). Build it directly, or turn
    a model's batch-norm layers into it with :meth:`convert_sync_batchnorm`.
    """

    _ndims, _layout = (2, 3, 4, 5), "(N, C) or (N, C, *)"

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, process_group=None, device=None, dtype=None):
        super().__init__(num_features, eps, momentum, affine, track_running_stats,
                         device=device, dtype=dtype)
        self.process_group = process_group

    def forward(self, input):
        comm = self.process_group
        if comm is None and is_initialized():
            comm = get_communicator()
        if not self.training or comm is None or comm.size == 1:
            return super().forward(input)
        x = as_tensor(input)
        check_ndim(self, x, self._ndims, self._layout)
        check_channels(self, x, 1, self.num_features)
        factor = self.momentum
        tracked = self.track_running_stats and self.running_mean is not None
        if tracked:
            self.num_batches_tracked.array += 1
            if self.momentum is None:       # cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked.item())
        return _SyncBatchNorm(comm, self.running_mean.array if tracked else None,
                              self.running_var.array if tracked else None, factor,
                              self.eps)(x, self.weight, self.bias)

    @classmethod
    def convert_sync_batchnorm(cls, module, process_group=None):
        """``module`` with every BatchNorm layer replaced by a SyncBatchNorm holding the
        same parameters and buffers (the very objects: an optimizer built before still
        updates them); a BatchNorm passed alone comes back converted."""
        converted = module
        if isinstance(module, _BatchNorm) and not isinstance(module, SyncBatchNorm):
            converted = cls(module.num_features, module.eps, module.momentum, module.affine,
                            module.track_running_stats, process_group)
            for name in ("weight", "bias"):
                if module._parameters.get(name) is not None:
                    setattr(converted, name, module._parameters[name])
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                converted._buffers[name] = module._buffers.get(name)
            converted.training = module.training
        if isinstance(module, Module):
            for name, child in list(module._modules.items()):
                if child is not None:        # replaced in place: Sequential keeps its order
                    converted._modules[name] = cls.convert_sync_batchnorm(child,
                                                                          process_group)
        return converted


class _SyncBatchNorm(Function):
    """Training-mode batch normalisation with statistics summed over the ranks."""

    def __init__(self, comm, running_mean, running_var, momentum, eps):
        self.comm, self.running_mean, self.running_var = comm, running_mean, running_var
        self.momentum, self.eps = momentum, eps

    def forward(self, x, weight, bias):
        xp = backend.get_array_module(x)
        f64 = xp.float64
        channels = x.shape[1]
        axes = (0,) + tuple(range(2, x.ndim))               # all but the channel axis
        per_channel = (1, channels) + (1,) * (x.ndim - 2)   # (1, C, 1, ...) broadcasts
        # pass 1: counts and sums -> the global mean
        sums = xp.concatenate([x.sum(axis=axes, dtype=f64),
                               xp.full(1, x.size // channels, dtype=f64)])
        self.comm.allreduce(sums, "allreduce of SyncBatchNorm's sums")
        count = float(sums[-1])
        if count <= 1:
            raise ValueError(f"SyncBatchNorm: Expected more than 1 value per channel when "
                             f"training, got {int(count)} over all ranks")
        mean = sums[:channels] / count
        # pass 2: squared deviations -> the global (biased) variance
        centred = x.astype(f64) - mean.reshape(per_channel)
        squares = (centred * centred).sum(axis=axes)
        self.comm.allreduce(squares, "allreduce of SyncBatchNorm's squares")
        var = squares / count
        inv_std = 1 / xp.sqrt(var + self.eps)
        # y = x̂·γ + β per element in float64, as BatchNorm's CPU path computes it
        scale = inv_std if weight is None else inv_std * weight.astype(f64)
        out = centred * scale.reshape(per_channel)
        if bias is not None:
            out += bias.astype(f64).reshape(per_channel)
        if self.running_mean is not None:
            m = self.momentum
            # NOTE: normalise with the biased variance, track the unbiased one
            rm, rv = self.running_mean, self.running_var
            rm[...] = ((1 - m) * rm + m * mean).astype(rm.dtype)
            rv[...] = ((1 - m) * rv + m * var * (count / (count - 1))).astype(rv.dtype)
        if any(self.needs_input_grad):
            self.axes, self.per_channel, self.count = axes, per_channel, count
            self.x, self.mean, self.inv_std, self.weight = x, mean, inv_std, weight
        return out.astype(x.dtype)

    def backward(self, g):
        xp = backend.get_array_module(g)
        f64 = xp.float64
        shape = self.per_channel
        centred = self.x.astype(f64) - self.mean.reshape(shape)
        g64 = g.astype(f64)
        # this rank's Σ dy and Σ dy·(x - μ) per channel: its dβ and dγ·σ
        local = xp.concatenate([g64.sum(axis=self.axes), (g64 * centred).sum(axis=self.axes)])
        channels = len(local) // 2
        gx = gw = gb = None
        if self.needs_input_grad[0]:
            total = local.copy()
            self.comm.allreduce(total, "allreduce of SyncBatchNorm's gradient sums")
            # dx = γ/σ (dy - mean(dy) - x̂ mean(dy x̂)), the means over every rank's values
            a = self.inv_std if self.weight is None else self.inv_std * self.weight.astype(f64)
            b = total[:channels] / self.count
            k = self.inv_std ** 2 * total[channels:] / self.count
            gx = (a.reshape(shape) * (g64 - b.reshape(shape) - k.reshape(shape) * centred))
            gx = gx.astype(g.dtype)
        if self.needs_input_grad[1]:
            gw = (local[channels:] * self.inv_std).astype(self.weight.dtype)
        if self.needs_input_grad[2]:
            gb = local[:channels].astype(g.dtype)
        return gx, gw, gb
