"""minicnn.ops.misc (FrozenBatchNorm2d, Conv2dNormActivation) against the torch twin of the
same source, torchvision's hand rules (padding, bias, keys), and Module.load_state_dict's
``_upgrade_state_dict`` hook (old keys renamed or dropped, the caller's dict untouched)."""
import collections

import numpy as np
import pytest

import minicnn as mc
from minicnn import nn
from minicnn.ops import misc
from minicnn.ops import Conv2dNormActivation, FrozenBatchNorm2d

from model_twin import copy_weights, ops_twin


def _randomize_frozen(m, seed=0):
    rng = np.random.default_rng(seed)
    c = m.weight.shape[0]
    m.load_state_dict({"weight": rng.random(c) + 0.5, "bias": rng.random(c) - 0.5,
                       "running_mean": rng.random(c) - 0.5,
                       "running_var": rng.random(c) + 0.5})
    return m


def test_frozen_batchnorm_forward_and_gradient_match_the_twin_and_eval_batchnorm(torch):
    twin = ops_twin(misc, torch, ones=torch.ones, zeros=torch.zeros)
    mm = _randomize_frozen(FrozenBatchNorm2d(5)).double()
    tm = twin.FrozenBatchNorm2d(5).double()
    tm.load_state_dict({k: torch.from_numpy(v.numpy()) for k, v in mm.state_dict().items()})
    assert list(mm.state_dict()) == ["weight", "bias", "running_mean", "running_var"]
    assert list(mm.parameters()) == []
    x = np.random.default_rng(1).standard_normal((2, 5, 3, 4))
    g = np.random.default_rng(2).standard_normal((2, 5, 3, 4))
    tx = torch.from_numpy(x).requires_grad_(True)
    mx = mc.tensor(x, requires_grad=True)
    ty, my = tm(tx), mm.train()(mx)        # training mode changes nothing
    (ty * torch.from_numpy(g)).sum().backward()
    (my * mc.tensor(g)).sum().backward()
    np.testing.assert_allclose(my.numpy(), ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(mx.grad.numpy(), tx.grad.numpy(), rtol=1e-12, atol=1e-12)
    # the same as torch's eval-mode BatchNorm2d with those statistics
    bn = torch.nn.BatchNorm2d(5).double().eval()
    bn.load_state_dict({**{k: torch.from_numpy(v.numpy())
                           for k, v in mm.state_dict().items()},
                        "num_batches_tracked": torch.tensor(3)})
    np.testing.assert_allclose(my.numpy(), bn(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-10, atol=1e-12)


def test_frozen_batchnorm_loads_a_batchnorm_state_dict():
    """num_batches_tracked is dropped (torchvision's hook), the caller's dict is kept."""
    bn = nn.BatchNorm2d(3)
    sd = bn.state_dict()
    assert "num_batches_tracked" in sd
    frozen = nn.Sequential(FrozenBatchNorm2d(3))
    nested = collections.OrderedDict((f"0.{k}", v) for k, v in sd.items())
    result = frozen.load_state_dict(nested)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert "0.num_batches_tracked" in nested                    # not changed
    with pytest.raises(RuntimeError, match="Missing key"):
        frozen.load_state_dict({"0.weight": np.ones(3)})


def test_upgrade_hook_renames_old_keys_parents_first():
    calls = []

    class Old(nn.Module):
        """A layer that once stored ``conv.weight`` and now ``conv.0.weight``."""

        def __init__(self):
            super().__init__()
            self.conv = nn.Sequential(nn.Conv2d(2, 3, 1))

        def _upgrade_state_dict(self, state_dict, prefix):
            calls.append(prefix)
            for kind in ("weight", "bias"):
                old, new = f"{prefix}conv.{kind}", f"{prefix}conv.0.{kind}"
                if old in state_dict and new not in state_dict:
                    state_dict[new] = state_dict.pop(old)

    class Outer(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = Old()

        def _upgrade_state_dict(self, state_dict, prefix):
            calls.append("outer:" + prefix)

    m = Outer()
    w = np.arange(6.0).reshape(3, 2, 1, 1)
    old_keys = {"a.conv.weight": w, "a.conv.bias": np.ones(3)}
    m.load_state_dict(old_keys)
    assert calls == ["outer:", "a."]
    np.testing.assert_array_equal(m.a.conv[0].weight.numpy(), w)
    assert list(old_keys) == ["a.conv.weight", "a.conv.bias"]
    m.load_state_dict({"a.conv.0.weight": w * 2, "a.conv.0.bias": np.ones(3)})   # new keys
    np.testing.assert_array_equal(m.a.conv[0].weight.numpy(), w * 2)


@pytest.mark.parametrize("kwargs, keys, padding", [
    ({}, ["0.weight", "1.weight", "1.bias", "1.running_mean", "1.running_var",
          "1.num_batches_tracked"], (1, 1)),
    ({"norm_layer": None}, ["0.weight", "0.bias"], (1, 1)),
    ({"kernel_size": 5, "dilation": 2, "norm_layer": FrozenBatchNorm2d},
     ["0.weight", "1.weight", "1.bias", "1.running_mean", "1.running_var"], (4, 4)),
    ({"kernel_size": (3, 5), "activation_layer": None, "bias": True},
     ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var",
      "1.num_batches_tracked"], (1, 2)),
])
def test_conv2d_norm_activation_layout(kwargs, keys, padding):
    m = Conv2dNormActivation(4, 6, **kwargs)
    assert list(m.state_dict()) == keys
    assert tuple(m[0].padding) == padding
    assert m.out_channels == 6
    has_act = kwargs.get("activation_layer", nn.ReLU) is not None
    assert isinstance(m[len(m) - 1], nn.ReLU) == has_act
    if has_act:
        assert m[len(m) - 1].inplace


def test_conv2d_norm_activation_matches_the_twin(torch):
    twin = ops_twin(misc, torch, ones=torch.ones, zeros=torch.zeros)
    for kwargs in ({"stride": 2}, {"groups": 2, "norm_layer": None},
                   {"kernel_size": 1, "activation_layer": nn.LeakyReLU}):
        t_kwargs = dict(kwargs)
        if "activation_layer" in kwargs:
            t_kwargs["activation_layer"] = torch.nn.LeakyReLU
        torch.manual_seed(0)
        tm = twin.Conv2dNormActivation(4, 6, **t_kwargs).double().eval()
        mm = Conv2dNormActivation(4, 6, **kwargs).double().eval()
        copy_weights(tm, mm)
        x = np.random.default_rng(0).standard_normal((2, 4, 7, 6))
        np.testing.assert_allclose(mm(mc.tensor(x)).numpy(),
                                   tm(torch.from_numpy(x)).detach().numpy(),
                                   rtol=1e-10, atol=1e-12)
