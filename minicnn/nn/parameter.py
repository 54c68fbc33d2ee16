"""Parameter: a Tensor that a Module registers as learnable."""
from __future__ import annotations

from ..autograd import Tensor, _to_array


class Parameter(Tensor):
    """A leaf Tensor that requires a gradient by default and that ``Module`` collects.

    ``Parameter(t)`` shares ``t``'s array (no copy), as ``torch.nn.Parameter`` does.
    """

    def __init__(self, data=None, requires_grad=True):
        if data is None:
            data = []
        array = data.array if isinstance(data, Tensor) else _to_array(data)
        super().__init__(array, requires_grad=False)
        self.array = array
        if requires_grad:
            self.requires_grad_(True)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()
