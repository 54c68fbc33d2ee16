"""Every differentiable op of minicnn, one file per family, each a Function with a
hand-written backward. Re-exported as ``minicnn.nn.functional`` (the ``F`` of model code).

One notation in every file:

* Shapes: N batch, C channels (O output channels, G groups), H×W input, KH×KW kernel,
  SH×SW stride, PH×PW padding, DH×DW dilation, OH×OW output. The weight is ``weight``
  (``w`` in code), never W, which is the width.
* Reading order: the public function, then its Function, then the helpers at the bottom.
* Gradients: ``backward(self, g)`` receives g = dL/dy (one argument per output:
  ``g, g_indices``); the gradient of an input is g followed by the name forward gives
  that input (``gx, gw, gb``; ``ga, gb``; ``gx, gy``), and likewise for intermediates
  (``gcols``, ``gxhat``). Docstring formulas write dL/dx.
* Argument checks shared by several ops (an (h, w) ``pair``, ``float_input``,
  ``positive_int``, ``check_reduction``) live in ``_checks.py``, so that every error
  names the op, the argument, what was expected and what was given.
* A compiled fast path joins an op through one seam, described in ``kernels/dispatch.py``.
"""
from .elementwise import *      # noqa: F401,F403
from .shape import *            # noqa: F401,F403
from .reduction import *        # noqa: F401,F403
from .linalg import *           # noqa: F401,F403
from .activation import *       # noqa: F401,F403
from .padding import *          # noqa: F401,F403
from .conv import *             # noqa: F401,F403
from .pooling import *          # noqa: F401,F403
from .normalization import *    # noqa: F401,F403
from .dropout import *          # noqa: F401,F403
from .loss import *             # noqa: F401,F403
from .vision import *           # noqa: F401,F403
from .conversion import *       # noqa: F401,F403
from .detection import *        # noqa: F401,F403
