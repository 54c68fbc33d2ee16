"""kernels/dispatch.py and the seam through which ops reach their fast paths: in "auto"
mode every fast function is reached from its op, in "reference" mode (set_kernels, or
MINICNN_KERNELS=reference) none is, and importing minicnn or the fast modules does not
import numba."""
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import minicnn as mc
from kernels import dispatch, numba_conv, numba_norm, numba_pool
from minicnn import functional as F

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
FAST_MODULES = (numba_conv, numba_pool, numba_norm)


def _run_every_fast_op(dtype=np.float64):
    """Forward and backward of each op that has a fast path."""
    rng = np.random.default_rng(0)

    def t(*shape):
        return mc.tensor(rng.standard_normal(shape).astype(dtype), requires_grad=True)

    F.conv2d(t(2, 3, 6, 6), t(4, 3, 3, 3), t(4), padding=1).sum().backward()
    F.conv_transpose2d(t(2, 4, 3, 3), t(4, 2, 3, 3), t(2), stride=2).sum().backward()
    # output_padding >= stride (dilation 2 allows it): not a conv2d's exact adjoint, so
    # the compiled im2col/col2im around matrix multiplies instead of conv2d's tiles
    F.conv_transpose2d(t(2, 4, 3, 3), t(4, 2, 3, 3), t(2), dilation=2,
                       output_padding=1).sum().backward()
    F.max_pool2d(t(2, 3, 6, 6), 2).sum().backward()
    for training in (True, False):
        F.batch_norm(t(4, 3, 5, 5), mc.tensor(np.zeros(3)), mc.tensor(np.ones(3)),
                     t(3), t(3), training=training).sum().backward()


@pytest.fixture
def fast_calls(monkeypatch):
    """Every public function of the fast modules, wrapped to record its calls."""
    calls = []

    def recording(name, fn):
        def wrapper(*args, **kwargs):
            calls.append(name)
            return fn(*args, **kwargs)
        return wrapper

    for module in FAST_MODULES:
        for name in module.__all__:
            qualified = f"{module.__name__}.{name}"
            monkeypatch.setattr(module, name, recording(qualified, getattr(module, name)))
    return calls


def test_auto_mode_reaches_every_fast_function(fast_calls):
    with dispatch.kernels("auto"):
        _run_every_fast_op()
    every = {f"{m.__name__}.{name}" for m in FAST_MODULES for name in m.__all__}
    assert set(fast_calls) == every


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reference_mode_turns_every_fast_path_off(fast_calls, dtype):
    previous = dispatch.set_kernels("reference")
    try:
        _run_every_fast_op(dtype)
    finally:
        dispatch.set_kernels(previous)
    assert fast_calls == []


def test_dtypes_without_a_fast_path_take_the_reference(fast_calls):
    x = mc.tensor(np.arange(36, dtype=np.int64).reshape(1, 1, 6, 6))
    F.max_pool2d(x, 2)
    x16 = mc.tensor(np.ones((1, 1, 6, 6), np.float16), requires_grad=True)
    F.max_pool2d(x16, 2).sum().backward()
    assert fast_calls == []


def _python(code, **env):
    """Run ``code`` in a fresh interpreter at the project root; its stdout."""
    environment = dict(os.environ, PYTHONPATH=str(ROOT))
    environment.update(env)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_importing_minicnn_and_the_fast_modules_does_not_import_numba():
    out = _python("import sys, minicnn\n"
                  "from kernels import numba_conv, numba_norm, numba_pool\n"
                  "print('numba' in sys.modules)")
    assert out.strip() == "False"


def test_environment_variable_selects_the_reference():
    # with every fast path off, running the ops never needs numba at all
    code = ("import sys\n"
            "from kernels import dispatch\n"
            "import test_dispatch\n"
            "test_dispatch._run_every_fast_op()\n"
            "print(dispatch.get_kernels(), 'numba' in sys.modules)")
    out = _python(code, MINICNN_KERNELS="reference",
                  PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests" / "kernels")]))
    assert out.strip() == "reference False"
