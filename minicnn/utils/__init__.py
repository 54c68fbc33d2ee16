"""Tools around the engine: gradient checking, torch comparison, summaries, receptive fields,
serialization."""
from .receptive_field import receptive_field  # noqa: F401  minicnn.utils.receptive_field(...)
