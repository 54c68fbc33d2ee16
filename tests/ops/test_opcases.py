"""Every registered op case (minicnn/utils/opcases/) against torch, float64 and float32,
plus finite differences: the same checks `minicnn gradcheck` reports."""
import pytest

from minicnn.utils import opcheck

CASES = opcheck.cases()


@pytest.mark.parametrize("case", CASES, ids=[f"{c.op}[{c.label}]" for c in CASES])
def test_case_matches_torch_and_finite_differences(case, torch):
    row = opcheck.run_case(case, use_torch=True)
    assert row["passed"], "\n".join(row["notes"])
