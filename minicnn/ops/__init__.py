"""torchvision.ops' twin: box operations, non-maximum suppression, RoI pooling and
RoI align (Functions with hand-written backward passes), anchors and default boxes, box
coding, matching and sampling -- the parts every detector is built from.

Names, arguments and semantics follow ``torchvision.ops`` and
``torchvision.models.detection._utils`` / ``anchor_utils``, so detection code written for
torchvision runs with its imports changed.
"""
from .boxes import *        # noqa: F401,F403
from .coding import *       # noqa: F401,F403
from .anchors import *      # noqa: F401,F403
from .roi import *          # noqa: F401,F403
from .misc import *         # noqa: F401,F403
from .feature_pyramid_network import *     # noqa: F401,F403
