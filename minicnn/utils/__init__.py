"""Tools around the engine: gradient checking, torch comparison, summaries, receptive fields,
serialization, pictures (image grids, first-layer filters, class activation maps)."""
from .receptive_field import receptive_field  # noqa: F401  minicnn.utils.receptive_field(...)
from .visualize import make_grid, save_image, show_filters  # noqa: F401
from .cam import class_activation_map  # noqa: F401
