"""Helpers for the model tests: the torch twin of a model file, weight copying, and
comparisons of outputs and parameter gradients.

torchvision cannot be installed beside torch 2.13 here, so the PyTorch reference of a
minicnn model is *the same source file* executed against ``torch.nn``: every model file
starts with ``import minicnn`` / ``from minicnn import nn`` / ``from minicnn.nn import
functional as F`` and is otherwise plain PyTorch code. :func:`torch_twin` drops those
three lines and runs the rest with ``minicnn`` bound to ``torch``, ``nn`` to ``torch.nn``
(plus the LRN ``alpha_scaling`` switch, translated to torch's convention) and ``F`` to
``torch.nn.functional``.
"""
from __future__ import annotations

import inspect
import re
import types

import numpy as np

import minicnn

IMPORTS = ("import minicnn", "from minicnn import nn",
           "from minicnn.nn import functional as F")


def torch_twin(module, torch):
    """A namespace holding ``module``'s classes and builders built on real torch.nn."""
    source = inspect.getsource(module)
    lines = source.splitlines()
    for line in IMPORTS:
        pattern = re.compile(r"^" + re.escape(line) + r"(\s*#.*)?$")
        found = [i for i, text in enumerate(lines) if pattern.match(text)]
        assert found, f"{module.__name__} lacks the line {line!r}"
        for i in found:
            lines[i] = ""
    nn_twin = types.ModuleType("nn_twin")
    nn_twin.__dict__.update(torch.nn.__dict__)

    def LocalResponseNorm(size, alpha=1e-4, beta=0.75, k=1.0, alpha_scaling="torch"):
        # torch computes k + alpha/size * sum: the paper's alpha is torch's alpha/size
        return torch.nn.LocalResponseNorm(size, alpha * size if alpha_scaling == "paper"
                                          else alpha, beta, k)

    nn_twin.LocalResponseNorm = LocalResponseNorm
    namespace = {"__name__": "torch_twin_" + module.__name__.rsplit(".", 1)[-1],
                 "minicnn": torch, "nn": nn_twin, "F": torch.nn.functional}
    exec(compile("\n".join(lines) + "\n", module.__file__, "exec"), namespace)
    return types.SimpleNamespace(**namespace)


def randomize_(torch_model, torch, seed=0):
    """Give BN layers non-trivial affine parameters and running statistics (fresh ones
    are 1/0 and would hide a mix-up of mean and variance or of weight and bias)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in torch_model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.bias.shape, generator=g) - 0.5)
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return torch_model


def copy_weights(torch_model, minicnn_model):
    """torch -> minicnn through NumPy arrays, after checking keys and shapes agree."""
    ts, ms = torch_model.state_dict(), minicnn_model.state_dict()
    assert list(ts) == list(ms), _key_diff(list(ts), list(ms))
    for k in ts:
        assert tuple(ts[k].shape) == tuple(ms[k].shape), (k, ts[k].shape, ms[k].shape)
    minicnn_model.load_state_dict({k: v.detach().numpy() for k, v in ts.items()})


def _key_diff(a, b):
    return (f"torch-only keys {[k for k in a if k not in b][:5]}, minicnn-only keys "
            f"{[k for k in b if k not in a][:5]}")


def count(model):
    return sum(p.numel() for p in model.parameters())


def set_dropout_eval(model):
    """Dropout is random: switch its modules to eval in an otherwise training model."""
    for m in model.modules():
        if type(m).__name__.startswith("Dropout"):
            m.eval()
    return model


def compare_forward(tm, mm, torch, shape, dtype, train=False, rtol=None, atol=None,
                    seed=1):
    """Run both models on the same random input; compare every output."""
    x = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    tm.train(train)
    mm.train(train)
    if train:
        set_dropout_eval(tm)
        set_dropout_eval(mm)
    ty = tm(torch.from_numpy(x))
    my = mm(minicnn.tensor(x))
    ty = ty if isinstance(ty, tuple) else (ty,)
    my = my if isinstance(my, tuple) else (my,)
    assert len(ty) == len(my)
    tight = np.dtype(dtype) == np.float64
    for t, m in zip(ty, my):
        t = t.detach().numpy()
        assert m.dtype == np.dtype(dtype)
        scale = max(1.0, float(np.abs(t).max()))
        np.testing.assert_allclose(m.numpy(), t, rtol=rtol or (1e-9 if tight else 2e-3),
                                   atol=(atol or (1e-10 if tight else 2e-4)) * scale)
    return ty, my


def compare_backward(tm, mm, torch, shape, dtype=np.float64, rtol=1e-8, atol=1e-9,
                     seed=2):
    """Training-mode forward (dropout off), loss = sum(out * G) with a random G, then
    compare the input gradient and every parameter gradient by name."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    tm.train()
    mm.train()
    set_dropout_eval(tm)
    set_dropout_eval(mm)
    tx = torch.from_numpy(x).requires_grad_(True)
    mx = minicnn.tensor(x, requires_grad=True)
    ty, my = tm(tx), mm(mx)
    ty = ty if isinstance(ty, tuple) else (ty,)
    my = my if isinstance(my, tuple) else (my,)
    tloss, mloss = 0, 0
    for t, m in zip(ty, my):
        g = rng.standard_normal(t.shape).astype(dtype)
        tloss = tloss + (t * torch.from_numpy(g)).sum()
        mloss = mloss + (m * minicnn.tensor(g)).sum()
    tloss.backward()
    mloss.backward()
    pairs = [("input", tx.grad, mx.grad)]
    mparams = dict(mm.named_parameters())
    for name, p in tm.named_parameters():
        pairs.append((name, p.grad, mparams[name].grad))
    for name, tg, mg in pairs:
        assert (tg is None) == (mg is None), name
        if tg is None:
            continue
        tg = tg.numpy()
        scale = max(1e-3, float(np.abs(tg).max()))
        np.testing.assert_allclose(mg.numpy(), tg, rtol=rtol, atol=atol * scale,
                                   err_msg=f"gradient of {name}")
    # BN running statistics moved the same way in training mode
    tb = dict(tm.named_buffers())
    for name, b in mm.named_buffers():
        np.testing.assert_allclose(b.numpy(), tb[name].numpy(), rtol=1e-7, atol=1e-9,
                                   err_msg=f"buffer {name}")


def train_steps(model, shape, num_classes, steps=4, lr=0.05, seed=3, adam=False):
    """A few SGD (or Adam) steps on one small random batch; returns the losses."""
    import minicnn.nn.functional as F
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, shape[0])
    images = rng.standard_normal(shape).astype(np.float32)
    # a learnable signal: the label brightens one input channel (or one image half)
    for i, label in enumerate(labels):
        if shape[1] >= num_classes:
            images[i, label] += 1.0
        else:
            images[i, :, :shape[2] // 2] += 1.0 if label % 2 else -1.0
    x, y = minicnn.tensor(images), minicnn.tensor(labels)
    model.train()
    set_dropout_eval(model)
    if adam:
        opt = minicnn.optim.Adam(model.parameters(), lr=lr)
    else:
        opt = minicnn.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    losses = []
    for _ in range(steps):
        out = model(x)
        if isinstance(out, tuple):
            loss = F.cross_entropy(out[0], y)
            loss = loss + 0.3 * sum(F.cross_entropy(o, y) for o in out[1:])
        else:
            loss = F.cross_entropy(out, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.item()))
    return losses


class cheap_init:
    """Inside this context the random initialisers of ``minicnn.nn.init`` do nothing
    (values stay as allocated): building a 138 M-parameter VGG then takes a moment.
    Only for tests that need shapes alone (parameter counts, multiply-adds with
    ``summary(..., shapes_only=True)``, which skips the conv/linear arithmetic)."""

    NAMES = ("uniform_", "normal_", "trunc_normal_", "kaiming_uniform_", "kaiming_normal_",
             "xavier_uniform_", "xavier_normal_", "orthogonal_")

    def __enter__(self):
        import minicnn.nn.init as init
        self.saved = {n: getattr(init, n) for n in self.NAMES if hasattr(init, n)}

        def skip(tensor, *args, **kwargs):
            return tensor

        for n in self.saved:
            setattr(init, n, skip)
        return self

    def __exit__(self, *exc):
        import minicnn.nn.init as init
        for n, fn in self.saved.items():
            setattr(init, n, fn)
        return False


def pair(module, torch, name, *args, dtype=np.float64, twin_kwargs=None, **kwargs):
    """The minicnn model ``module.name(*args, **kwargs)`` and its torch twin with the
    same (randomised) weights, both in ``dtype``. ``twin_kwargs`` go to the twin only
    (e.g. ``init_weights=False`` to skip a slow initialiser whose values are
    overwritten anyway)."""
    twin = torch_twin(module, torch)
    torch.manual_seed(0)
    tm = randomize_(getattr(twin, name)(*args, **kwargs, **(twin_kwargs or {})), torch)
    mm = getattr(module, name)(*args, **kwargs)
    tm = tm.double() if np.dtype(dtype) == np.float64 else tm.float()
    mm = mm.double() if np.dtype(dtype) == np.float64 else mm.float()
    copy_weights(tm, mm)
    return tm, mm


def same_layout(module, torch, name, *args, **kwargs):
    """Build ``name`` in minicnn (cheap init) and as a torch twin on the meta device
    (no memory); assert state-dict keys and shapes are identical; return the count."""
    twin = torch_twin(module, torch)
    with torch.device("meta"):
        tm = getattr(twin, name)(*args, **kwargs)
    with cheap_init():
        mm = getattr(module, name)(*args, **kwargs)
    ts, ms = tm.state_dict(), mm.state_dict()
    assert list(ts) == list(ms), _key_diff(list(ts), list(ms))
    for k in ts:
        assert tuple(ts[k].shape) == tuple(ms[k].shape), (k, ts[k].shape, ms[k].shape)
    n = count(mm)
    assert n == sum(p.numel() for p in tm.parameters())
    return n


def ops_twin(module, torch, **names):
    """The torch twin of a file under ``minicnn/ops`` (which may not import the package
    face, so it uses relative imports, ``from .. import nn``): those import lines are
    dropped and the rest runs with ``nn`` = ``torch.nn``, ``F`` = ``torch.nn.functional``
    and every keyword given here (``ones=torch.ones``, a twin class, ...) bound."""
    lines = inspect.getsource(module).splitlines()
    for i, text in enumerate(lines):
        if re.match(r"^from \.[\w.]* import ", text):
            if text.rstrip().endswith("("):
                raise ValueError(f"ops_twin: write {module.__name__}'s relative imports "
                                 f"on one line each ({text!r})")
            lines[i] = ""
    namespace = {"__name__": "torch_twin_" + module.__name__.rsplit(".", 1)[-1],
                 "nn": torch.nn, "F": torch.nn.functional, **names}
    exec(compile("\n".join(lines) + "\n", module.__file__, "exec"), namespace)
    return types.SimpleNamespace(**namespace)
