"""``minicnn.nn.functional`` is ``minicnn.functional`` (as ``torch.nn.functional``)."""
from ..functional import *  # noqa: F401,F403
