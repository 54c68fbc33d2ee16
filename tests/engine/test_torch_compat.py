"""Model code written the PyTorch way runs on minicnn with only its imports changed.

``SOURCE`` below is ordinary PyTorch code. It is executed twice: once after
``import torch`` / ``import torch.nn as nn`` / ``import torch.nn.functional as F``, once
after ``import minicnn as torch`` / ``import minicnn.nn as nn`` /
``import minicnn.nn.functional as F``. The two models get the same weights and must agree
on outputs, gradients, frozen parameters and a few optimizer steps.
"""
import numpy as np
import pytest

import minicnn

SOURCE = '''
class Block(nn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        return F.relu(out)


class Net(nn.Module):
    def __init__(self, num_classes=5):
        super().__init__()
        self.stem = nn.LazyConv2d(8, 3, padding=1)
        self.blocks = nn.ModuleList([Block(8, 8), Block(8, 16, stride=2)])
        self.branch_a = nn.Conv2d(16, 4, 1)
        self.branch_b = nn.Conv2d(16, 4, 3, padding=1)
        self.head = nn.LazyLinear(num_classes)
        self.aux = nn.Linear(8 * 2 * 2, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.stem(x)), 2)
        for block in self.blocks:
            x = block(x)
        x = torch.cat([self.branch_a(x), self.branch_b(x)], 1)
        if self.training:
            keep = (torch.rand_like(x) >= 0).float()      # all ones, drawn at random
            x = x * keep
        scale = torch.zeros(1, x.size(1), 1, 1)
        scale[0, :4] = 1.0
        scale[0, 4:] = 0.5
        x = x * scale
        y = x.view(x.size(0), -1)
        z = torch.flatten(F.max_pool2d(x, 2), 1)
        return self.head(y) + self.aux(z)


def build(num_classes=5):
    torch.manual_seed(0)
    model = Net(num_classes)
    model(torch.zeros(1, 3, 16, 16))        # materialise the lazy layers
    return model


def freeze_stem(model):
    for p in model.stem.parameters():
        p.requires_grad = False


def train_step(model, optimizer, x, y):
    optimizer.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    return loss.item()


def predict(model, x):
    model.eval()
    with torch.no_grad():
        return F.softmax(model(x), dim=1)
'''

TORCH_IMPORTS = "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"
MINICNN_IMPORTS = ("import minicnn as torch\nimport minicnn.nn as nn\n"
                   "import minicnn.nn.functional as F\n")


def _load(imports):
    namespace = {"__name__": "compat_source"}
    exec(compile(imports + SOURCE, "<pytorch-style source>", "exec"), namespace)
    return namespace


def _models(torch):
    t, m = _load(TORCH_IMPORTS), _load(MINICNN_IMPORTS)
    tm, mm = t["build"](), m["build"]()
    # the lazy layers became ordinary ones, with the same names and shapes
    assert type(mm.stem).__name__ == type(tm.stem).__name__ == "Conv2d"
    assert type(mm.head).__name__ == "Linear" and mm.head.in_features == 128
    tstate, mstate = tm.state_dict(), mm.state_dict()
    assert list(tstate) == list(mstate)
    for k in tstate:
        assert tuple(tstate[k].shape) == tuple(mstate[k].shape), k
    mm.load_state_dict({k: v.numpy() for k, v in tstate.items()})
    return t, m, tm.double(), mm.double()


def _inputs(torch, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((4, 3, 16, 16))
    y = rng.integers(0, 5, 4)
    return (torch.from_numpy(x), torch.from_numpy(y)), (minicnn.tensor(x), minicnn.tensor(y))


def test_forward_backward_and_freezing(torch):
    t, m, tm, mm = _models(torch)
    (tx, ty), (mx, my) = _inputs(torch)
    t["freeze_stem"](tm)
    m["freeze_stem"](mm)
    tm.train()
    mm.train()
    tloss = torch.nn.functional.cross_entropy(tm(tx), ty)
    mloss = minicnn.nn.functional.cross_entropy(mm(mx), my)
    assert mloss.dtype == np.float64
    np.testing.assert_allclose(mloss.item(), tloss.item(), rtol=1e-10)
    tloss.backward()
    mloss.backward()
    mparams = dict(mm.named_parameters())
    for name, p in tm.named_parameters():
        if name.startswith("stem."):
            assert p.grad is None and mparams[name].grad is None, name      # frozen
            continue
        np.testing.assert_allclose(mparams[name].grad.numpy(), p.grad.numpy(), rtol=1e-8,
                                   atol=1e-10, err_msg=name)


def test_training_steps_and_eval(torch):
    t, m, tm, mm = _models(torch)
    (tx, ty), (mx, my) = _inputs(torch)
    t["freeze_stem"](tm)
    m["freeze_stem"](mm)
    stem_before = mm.stem.weight.numpy().copy()
    topt = torch.optim.SGD(tm.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    mopt = minicnn.optim.SGD(mm.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    tm.train()
    mm.train()
    tlosses = [t["train_step"](tm, topt, tx, ty) for _ in range(3)]
    mlosses = [m["train_step"](mm, mopt, mx, my) for _ in range(3)]
    np.testing.assert_allclose(mlosses, tlosses, rtol=1e-9)
    assert mlosses[-1] < mlosses[0]
    np.testing.assert_array_equal(mm.stem.weight.numpy(), stem_before)   # still frozen
    # BN running statistics followed the same path; eval mode then uses them
    np.testing.assert_allclose(mm.blocks[1].bn2.running_var.numpy(),
                               tm.blocks[1].bn2.running_var.numpy(), rtol=1e-10)
    tp, mp = t["predict"](tm, tx), m["predict"](mm, mx)
    assert not mm.training and not mm.blocks[0].bn1.training
    np.testing.assert_allclose(mp.numpy(), tp.numpy(), rtol=1e-9, atol=1e-12)


def test_float32_forward(torch):
    t, m = _load(TORCH_IMPORTS), _load(MINICNN_IMPORTS)
    tm, mm = t["build"](), m["build"]()
    mm.load_state_dict({k: v.numpy() for k, v in tm.state_dict().items()})
    x = np.random.default_rng(1).standard_normal((2, 3, 20, 20)).astype(np.float32)
    tm.eval()
    mm.eval()
    with pytest.raises(Exception):
        mm(minicnn.tensor(x))          # 20x20 does not fit the materialised head
    x = x[:, :, :16, :16].copy()
    out = mm(minicnn.tensor(x))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.numpy(), tm(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-4, atol=1e-5)


# ------------------------------------------------ state dicts between the libraries

def test_state_dict_round_trips(torch, tmp_path):
    from minicnn.models import resnet20
    from minicnn.utils import convert
    import importlib
    from model_twin import torch_twin
    twin = torch_twin(importlib.import_module("minicnn.models.resnet"), torch)
    tm = twin.resnet20(num_classes=4)
    mm = resnet20(num_classes=4)
    # torch -> minicnn: from a file saved with torch.save, from a module, from a dict
    torch.save({"epoch": 3, "state_dict": tm.state_dict()}, tmp_path / "ckpt.pth")
    convert.load_torch_state_dict(mm, tmp_path / "ckpt.pth")
    numpy_state = convert.to_numpy_state_dict(mm)
    for k, v in tm.state_dict().items():
        np.testing.assert_array_equal(numpy_state[k], v.numpy())
    assert numpy_state["bn1.num_batches_tracked"].dtype == np.int64
    numpy_state["fc.bias"][:] = 7                     # a copy: the model is unchanged
    assert not np.any(mm.fc.bias.numpy() == 7)
    convert.load_torch_state_dict(mm, tm)
    convert.load_torch_state_dict(mm, tm.state_dict())
    # minicnn -> torch
    with minicnn.no_grad():
        mm.fc.bias.fill_(0.25)
    tm.load_state_dict(convert.to_torch_state_dict(mm))
    assert torch.all(tm.fc.bias == 0.25)
    # minicnn -> .npz -> minicnn
    convert.save_npz(mm, tmp_path / "w.npz")
    other = resnet20(num_classes=4)
    convert.load_npz(other, tmp_path / "w.npz")
    np.testing.assert_array_equal(other.fc.bias.numpy(), mm.fc.bias.numpy())
    # outputs agree after the round trip
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    tm.eval()
    other.eval()
    np.testing.assert_allclose(other(minicnn.tensor(x)).numpy(),
                               tm(torch.from_numpy(x)).detach().numpy(), rtol=1e-4, atol=1e-5)


def test_state_dict_errors(torch):
    from minicnn.models import resnet20
    from minicnn.utils import convert
    mm = resnet20(num_classes=4)
    state = convert.to_torch_state_dict(mm)
    state["fc.weight"] = torch.zeros(5, 64)
    del state["bn1.bias"]
    with pytest.raises(RuntimeError, match="bn1.bias.*\n.*fc.weight: checkpoint shape "
                                           r"\(5, 64\), model shape \(4, 64\)"):
        convert.load_torch_state_dict(mm, state)
    with pytest.raises(TypeError, match="expected a state dict"):
        convert.load_torch_state_dict(mm, 42)
