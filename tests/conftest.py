"""Shared test set-up.

PyTorch is the reference for every op. Without it the comparisons are skipped, unless
MINICNN_REQUIRE_TORCH=1 (set by .ci/run): then a missing torch is an error, and a run in
which any torch comparison was skipped fails.
"""
import os

import numpy as np
import pytest

import minicnn

REQUIRE_TORCH = os.environ.get("MINICNN_REQUIRE_TORCH") == "1"
_torch_skips = []


def _import_torch():
    try:
        import torch
    except ImportError:
        if REQUIRE_TORCH:
            raise
        return None
    torch.set_num_threads(max(1, torch.get_num_threads()))
    return torch


TORCH = _import_torch()


@pytest.fixture
def torch():
    """The torch module; the test is skipped when torch is missing (fails in CI)."""
    if TORCH is None:
        pytest.skip("PyTorch is not installed: comparison against torch skipped")
    return TORCH


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same random state."""
    minicnn.manual_seed(0)
    yield


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def pytest_runtest_logreport(report):
    if report.skipped and "torch" in str(report.longrepr).lower():
        _torch_skips.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    if REQUIRE_TORCH and _torch_skips:
        print(f"\nMINICNN_REQUIRE_TORCH=1 but {len(_torch_skips)} torch comparison(s) were "
              f"skipped, e.g. {_torch_skips[0]}")
        session.exitstatus = 1
