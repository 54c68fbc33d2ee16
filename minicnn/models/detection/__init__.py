"""Object detectors with torchvision's conventions: a list of images (or a batch) in; in
training mode a dict of losses, in eval mode one dict per image of ``boxes`` (xyxy, in
the input image's pixels), ``labels`` and ``scores``.
"""
from .transform import *    # noqa: F401,F403
from .yolo import *         # noqa: F401,F403
from .ssd import *          # noqa: F401,F403
from .sliding_window import *   # noqa: F401,F403
from .rcnn import *          # noqa: F401,F403
from .roi_heads import *     # noqa: F401,F403
from .faster_rcnn import *   # noqa: F401,F403
from .mask_rcnn import *     # noqa: F401,F403
