"""The numba.cuda fast paths (kernels/cuda_*.py) against the reference, in numba's CUDA
simulator (cuda_sim_checks.py, one subprocess per family), and the predicate that
chooses them (kernels/dispatch.py's use_cuda)."""
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from kernels import _cuda, dispatch

CHECKS = pathlib.Path(__file__).with_name("cuda_sim_checks.py")


@pytest.mark.parametrize("check", ["im2col_col2im", "max_pooling", "lrn_window_sums",
                                   "batch_norm_statistics", "ops_take_the_gpu_branch"])
def test_cuda_kernel_matches_the_reference_in_the_simulator(check):
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    done = subprocess.run([sys.executable, str(CHECKS), check], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0 and f"ok {check}" in done.stdout, done.stdout + done.stderr


class _DeviceArray:
    """What use_cuda looks at: a CuPy type that numba.cuda can read in place."""
    __module__ = "cupy._core.core"
    __cuda_array_interface__ = {}

    def __init__(self, dtype="float32", size=4):
        self.dtype, self.size = np.dtype(dtype), size


def test_use_cuda_takes_float_cupy_arrays_when_numba_can_launch(monkeypatch):
    monkeypatch.setattr(_cuda, "available", lambda: True)
    a = _DeviceArray()
    assert dispatch.use_cuda(a, None, _DeviceArray())
    assert not dispatch.use_cuda(a, _DeviceArray("float64"))      # mixed dtypes
    assert not dispatch.use_cuda(_DeviceArray("int64"))
    assert not dispatch.use_cuda(_DeviceArray(size=0))             # an empty batch
    assert not dispatch.use_cuda(np.ones(3, dtype=np.float32))     # host memory
    assert not dispatch.use_cuda()
    from fake_cupy import to_device
    assert not dispatch.use_cuda(to_device(np.ones(3, dtype=np.float32)))   # no interface
    with dispatch.kernels("reference"):
        assert not dispatch.use_cuda(a)
    monkeypatch.setattr(_cuda, "available", lambda: False)       # no GPU, no simulator
    assert not dispatch.use_cuda(a)
