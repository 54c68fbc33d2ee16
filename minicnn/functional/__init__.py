"""Every differentiable op of minicnn, one file per family, each a Function with a
hand-written backward. Re-exported as ``minicnn.nn.functional`` (the ``F`` of model code).
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
