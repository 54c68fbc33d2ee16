"""Shared test set-up.

PyTorch is the reference for every op. Without it the comparisons are skipped, unless
MINICNN_REQUIRE_TORCH=1 (set by .ci/run): then a missing torch is an error, and a run in
which any torch comparison was skipped fails.

Hypothesis: in CI (MINICNN_REQUIRE_TORCH=1, or a CI environment variable) the "ci"
profile runs, derandomized: each test draws the same examples on every run of
the same source (as many as elsewhere: max_examples is untouched), so CI cannot fail at
random on a corner it happened to draw this time, and it uses no example database. Local
runs keep hypothesis's default, random draws (and the .hypothesis/ database that replays
what failed), so new examples are still explored. HYPOTHESIS_PROFILE=ci (or default)
picks one explicitly, e.g. to replay CI's examples locally.
"""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import minicnn

REQUIRE_TORCH = os.environ.get("MINICNN_REQUIRE_TORCH") == "1"
_torch_skips = []

# the profile recent hypothesis versions load by themselves under a CI variable; written
# out so that .ci/run gets it whatever the machine and the hypothesis version
settings.register_profile("ci", derandomize=True, database=None, print_blob=True,
                          deadline=None, suppress_health_check=[HealthCheck.too_slow])
_profile = os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if REQUIRE_TORCH or "CI" in os.environ
                                                    else None)
if _profile:
    settings.load_profile(_profile)


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
