"""Module methods given the wrong kind of argument say what they expected."""
import pytest

from minicnn import nn


@pytest.mark.parametrize("bad,message", [
    ([1, 2], "expected a mapping of parameter names to tensors .* got list"),
    ("weights.npz", "expected a mapping .* got str"),
    ({1: 2}, r"keys must be parameter names \(str\), got \[1\]"),
])
def test_load_state_dict_of_something_that_is_not_a_state_dict(bad, message):
    with pytest.raises(TypeError, match=message):
        nn.Linear(2, 2).load_state_dict(bad)
