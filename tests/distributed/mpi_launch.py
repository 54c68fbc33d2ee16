"""Launching real MPI jobs from the tests: ``requires_mpi`` (a skip with the reason where
mpiexec or mpi4py is missing; CI installs both with the test extra) and ``mpiexec``."""
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
MPIEXEC = shutil.which("mpiexec")

try:
    import mpi4py  # noqa: F401
    MISSING = None if MPIEXEC else "mpiexec is not on PATH"
except ImportError:
    MISSING = "mpi4py is not installed"

requires_mpi = pytest.mark.skipif(
    MISSING is not None,
    reason=f"{MISSING}: pip install 'minicnn[dist]' (mpi4py and MPICH's mpiexec)")


def environment():
    """This process's environment with the checkout first on the import path."""
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def mpiexec(n, *argv, timeout=120):
    """``mpiexec -n N python ARGV...``, its output captured."""
    return subprocess.run([MPIEXEC, "-n", str(n), sys.executable, *argv], env=environment(),
                          capture_output=True, text=True, timeout=timeout)
