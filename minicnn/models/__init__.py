"""The model zoo: one file per architecture family, PyTorch-compatible state dicts."""
from .lenet import *        # noqa: F401,F403
from .alexnet import *      # noqa: F401,F403
from .vgg import *          # noqa: F401,F403
from .nin import *          # noqa: F401,F403
from .googlenet import *    # noqa: F401,F403
from .resnet import *       # noqa: F401,F403
from .densenet import *     # noqa: F401,F403
from .transfer import *     # noqa: F401,F403
