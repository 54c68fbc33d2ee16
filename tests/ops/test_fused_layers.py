"""Where models take the fused ops: nn.activation.act_then_pool / norm_then_act /
fused_pair, nn.Sequential's peephole, LeNet-5 (ReLU + max pooling) and the ResNet blocks
(BatchNorm2d + ReLU). The fused op runs only for the plain modules without hooks; a hook,
a subclass, an instance-level forward, return_indices, a cumulative or untracked batch
norm each take the unfused modules; both paths give the same outputs, gradients and
running statistics; the model's state dict, printout and summary are unchanged."""
import collections

import numpy as np
import pytest

import minicnn as mc
from minicnn import functional as F
from minicnn import models, nn
from minicnn.models import resnet
from minicnn.nn.activation import act_then_pool, fused_pair, norm_then_act
from minicnn.utils.summary import summary


@pytest.fixture
def fused_calls(monkeypatch):
    """Counts of the fused functional ops, called through ``minicnn.functional``."""
    counts = collections.Counter()
    for name in ("relu_max_pool2d", "batch_norm_relu"):
        def spy(*args, _f=getattr(F, name), _n=name, **kw):
            counts[_n] += 1
            return _f(*args, **kw)
        monkeypatch.setattr(F, name, spy)
    return counts


def _hook_log(module, log, name):
    return module.register_forward_hook(lambda m, args, out: log.append(name))


def _run(model, x, g):
    """Output, input gradient and parameter gradients of one training step."""
    for p in model.parameters():
        p.grad = None
    t = mc.tensor(x, requires_grad=True)
    out = model(t)
    out.backward(mc.tensor(g))
    return [out.numpy(), t.grad.numpy()] + [p.grad.numpy() for p in model.parameters()]


def _assert_same(fused, unfused, rtol=1e-12, atol=1e-13):
    for a, b in zip(fused, unfused, strict=True):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


# ================================================================== fused_pair

class MyReLU(nn.ReLU):
    pass


def test_fused_pair_only_for_plain_modules():
    relu, pool, bn = nn.ReLU(), nn.MaxPool2d(2), nn.BatchNorm2d(3)
    assert fused_pair(relu, pool) is not None and fused_pair(bn, relu) is not None
    assert fused_pair(pool, relu) is None and fused_pair(relu, bn) is None
    assert fused_pair(nn.Tanh(), pool) is None and fused_pair(relu, nn.AvgPool2d(2)) is None
    assert fused_pair(MyReLU(), pool) is None                      # a subclass
    assert fused_pair(relu, nn.MaxPool2d(2, return_indices=True)) is None
    assert fused_pair(nn.BatchNorm2d(3, momentum=None), relu) is None     # cumulative
    assert fused_pair(nn.BatchNorm2d(3, track_running_stats=False), relu) is None
    assert fused_pair(nn.BatchNorm1d(3), relu) is None
    patched = nn.ReLU()
    patched.forward = lambda x: x                                  # instance-level forward
    assert fused_pair(patched, pool) is None
    for module in (relu, pool, bn):
        for register in (module.register_forward_hook, module.register_forward_pre_hook):
            handle = register(lambda *a: None)
            assert fused_pair(relu, pool) is None or module is bn
            assert fused_pair(bn, relu) is None or module is pool
            handle.remove()
    assert fused_pair(relu, pool) is not None and fused_pair(bn, relu) is not None


def test_act_then_pool_is_pool_of_act(fused_calls):
    x = np.random.default_rng(0).standard_normal((2, 3, 7, 6))
    g = np.random.default_rng(1).standard_normal((2, 3, 4, 3))
    relu, pool = nn.ReLU(), nn.MaxPool2d(3, stride=2, padding=1)

    class Pair(nn.Module):
        def forward(self, v):
            return act_then_pool(relu, pool, v)

    fused = _run(Pair(), x, g)
    assert fused_calls["relu_max_pool2d"] == 1
    log = []
    _hook_log(relu, log, "relu")
    unfused = _run(Pair(), x, g)
    assert fused_calls["relu_max_pool2d"] == 1 and log == ["relu"]     # the hook saw relu
    _assert_same(fused, unfused)
    with pytest.raises(ValueError, match=r"MaxPool2d\(.*\): expected a 3-D or 4-D input"):
        act_then_pool(nn.ReLU(), nn.MaxPool2d(2), mc.randn(4, 4))     # the module's error


@pytest.mark.parametrize("training", [True, False])
def test_norm_then_act_is_act_of_norm(fused_calls, training):
    rng = np.random.default_rng(2)
    x, g = rng.standard_normal((4, 3, 5, 5)), rng.standard_normal((4, 3, 5, 5))
    state = {"weight": rng.random(3) + 0.5, "bias": rng.standard_normal(3),
             "running_mean": rng.standard_normal(3), "running_var": rng.random(3) + 0.5,
             "num_batches_tracked": np.array(0)}
    results, stats = [], []
    for hooked in (False, True):
        bn, relu = nn.BatchNorm2d(3).double(), nn.ReLU()
        bn.load_state_dict(state)
        bn.train(training)
        if hooked:
            log = []
            _hook_log(bn, log, "bn")

        class Pair(nn.Module):
            def forward(self, v, bn=bn, relu=relu):
                return norm_then_act(bn, relu, v)
        results.append(_run(Pair(), x, g) + [bn.weight.grad.numpy()])
        _run(Pair(), x, g)                                           # a second step
        stats.append([bn.running_mean.numpy(), bn.running_var.numpy(),
                      bn.num_batches_tracked.numpy()])
        if hooked:
            assert log == ["bn", "bn"]
    assert fused_calls["batch_norm_relu"] == 2                       # unhooked only
    _assert_same(*results)
    _assert_same(*stats)
    assert int(stats[0][2]) == (2 if training else 0)
    with pytest.raises(ValueError, match=r"BatchNorm2d\(3.*\): expected input with 3 channels"):
        norm_then_act(nn.BatchNorm2d(3), nn.ReLU(), mc.randn(2, 4, 3, 3))


def test_torch_modules_take_the_plain_calls(torch):
    # what the ResNet file's torch twin runs: norm_then_act(bn, relu, x) = relu(bn(x))
    bn, relu = torch.nn.BatchNorm2d(3).double(), torch.nn.ReLU()
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    got = norm_then_act(bn, relu, x)
    assert isinstance(got, torch.Tensor)
    assert torch.equal(got, relu(torch.nn.BatchNorm2d(3).double()(x)))
    assert act_then_pool(relu, torch.nn.MaxPool2d(2), x).shape == (2, 3, 2, 2)


# ================================================================== Sequential

def test_sequential_fuses_neighbours_and_keeps_hooks_apart(fused_calls):
    rng = np.random.default_rng(3)

    def features():
        mc.manual_seed(0)
        return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                             nn.MaxPool2d(2), nn.Conv2d(4, 4, 3), nn.ReLU(), nn.MaxPool2d(2),
                             nn.ReLU()).double()
    x, g = rng.standard_normal((2, 2, 14, 14)), rng.standard_normal((2, 4, 2, 2))
    fused = _run(features(), x, g)
    # BN + ReLU fused, the pool after them alone; ReLU + pool fused; the last ReLU alone
    assert fused_calls == {"batch_norm_relu": 1, "relu_max_pool2d": 1}
    model, log = features(), []
    for i, m in enumerate(model):
        if isinstance(m, nn.ReLU):
            _hook_log(m, log, i)
    unfused = _run(model, x, g)
    assert log == [2, 5, 7] and fused_calls == {"batch_norm_relu": 1, "relu_max_pool2d": 1}
    _assert_same(fused, unfused)
    assert str(features()) == str(model)
    assert list(features().state_dict()) == list(model.state_dict())


def test_sequential_with_one_module_and_empty():
    x = mc.randn(1, 1, 4, 4)
    assert nn.Sequential(nn.ReLU())(x).shape == (1, 1, 4, 4)
    assert nn.Sequential()(x) is x
    pooled = nn.Sequential(nn.ReLU(), nn.MaxPool2d(2, return_indices=True))(x)
    assert isinstance(pooled, tuple)                       # not fused: the pool's own result


# ======================================================================= LeNet-5

def test_lenet_takes_the_fused_pool_and_falls_back_with_hooks(fused_calls):
    rng = np.random.default_rng(4)
    x, g = rng.standard_normal((3, 1, 28, 28)), rng.standard_normal((3, 10))
    mc.manual_seed(0)
    model = models.lenet5().double()
    fused = _run(model, x, g)
    assert fused_calls["relu_max_pool2d"] == 2
    # a hook on the shared activation unfuses both pools, one on s2 only the first
    for module, calls, fired in ((model.act, 0, 4), (model.s2, 1, 1)):
        before, log = fused_calls["relu_max_pool2d"], []
        handle = _hook_log(module, log, "hooked")
        unfused = _run(model, x, g)
        assert len(log) == fired                            # the hook saw every call
        assert fused_calls["relu_max_pool2d"] - before == calls
        _assert_same(fused, unfused)
        handle.remove()
    _run(model, x, g)
    assert fused_calls["relu_max_pool2d"] == 2 + 1 + 2
    classic = models.lenet5(variant="1998")
    classic(mc.randn(1, 1, 32, 32))
    assert fused_calls["relu_max_pool2d"] == 5              # tanh + average pooling


def test_lenet_layout_printout_and_summary_are_unchanged():
    model = models.lenet5()
    assert list(model.state_dict()) == [
        "c1.weight", "c1.bias", "c3.weight", "c3.bias", "c5.weight", "c5.bias",
        "f6.weight", "f6.bias", "output.weight", "output.bias"]
    text = str(model)
    for line in ("(act): ReLU()",
                 ("(s2): MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, "
                  "ceil_mode=False)")):
        assert line in text
    assert [(name, m.__class__.__name__) for name, m in model.named_children()] == [
        ("c1", "Conv2d"), ("s2", "MaxPool2d"), ("c3", "Conv2d"), ("s4", "MaxPool2d"),
        ("c5", "Conv2d"), ("f6", "Linear"), ("output", "Linear"), ("act", "ReLU")]
    rows = summary(model, (1, 28, 28), verbose=False)
    lines = [line.split()[:2] for line in str(rows).splitlines()[4:15]]
    assert lines == [["c1", "Conv2d"], ["act", "ReLU"], ["s2", "MaxPool2d"],
                     ["c3", "Conv2d"], ["act", "ReLU"], ["s4", "MaxPool2d"],
                     ["c5", "Conv2d"], ["act", "ReLU"], ["f6", "Linear"], ["act", "ReLU"],
                     ["output", "Linear"]]


# ========================================================================= ResNet

@pytest.mark.parametrize("block,expected", [("BasicBlock", 1), ("Bottleneck", 2)])
@pytest.mark.parametrize("training", [True, False])
def test_resnet_blocks_fuse_bn_relu_and_fall_back(fused_calls, block, expected, training):
    rng = np.random.default_rng(5)
    cls = getattr(resnet, block)
    downsample = nn.Sequential(resnet.conv1x1(8, 4 * cls.expansion, 2),
                               nn.BatchNorm2d(4 * cls.expansion))
    mc.manual_seed(0)
    model = cls(8, 4, stride=2, downsample=downsample).double().train(training)
    x = rng.standard_normal((2, 8, 6, 6))
    g = rng.standard_normal((2, 4 * cls.expansion, 3, 3))
    state = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    fused = _run(model, x, g) + [b.numpy().copy() for b in model.buffers()]
    assert fused_calls["batch_norm_relu"] == expected
    model.load_state_dict(state)
    log = []
    _hook_log(model.relu, log, "relu")                    # every fusion uses this relu
    unfused = _run(model, x, g) + [b.numpy().copy() for b in model.buffers()]
    assert fused_calls["batch_norm_relu"] == expected and len(log) == expected + 1
    _assert_same(fused, unfused)


def test_resnet_with_another_norm_layer_is_not_fused(fused_calls):
    class MyBatchNorm(nn.BatchNorm2d):
        pass
    model = resnet.ResNet(resnet.BasicBlock, [1, 1, 1, 1], num_classes=3,
                          norm_layer=MyBatchNorm)
    model(mc.randn(2, 3, 32, 32))
    assert fused_calls["batch_norm_relu"] == 0
    plain = resnet.ResNet(resnet.BasicBlock, [1, 1, 1, 1], num_classes=3)
    plain(mc.randn(2, 3, 32, 32))
    assert fused_calls["batch_norm_relu"] == 5             # the stem and four blocks
    assert list(plain.state_dict()) == list(model.state_dict())


def test_cifar_resnet_stem_is_fused(fused_calls):
    model = resnet.resnet20()
    model(mc.randn(2, 3, 32, 32))
    assert fused_calls["batch_norm_relu"] == 1 + 9          # the stem and nine blocks
