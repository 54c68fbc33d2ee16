"""``minicnn show filters``: the picture of a model's first-layer filters.

    minicnn show filters --model alexnet --out filters.png
    minicnn show filters --model alexnet --checkpoint runs/alexnet --out filters.png

Without ``--checkpoint`` the filters are the builder's random initialisation (noise: the
picture to compare a trained one with). With one (a run folder or ``checkpoint.npz``
written by ``minicnn train``, or a state dict saved with ``minicnn.save``) the model is
built with the checkpoint's own sizes: ``in_channels`` from the first 4-D weight,
``num_classes`` from the last weight's first dimension (``--num-classes`` overrides).
"""
from __future__ import annotations

import argparse
import sys

from .. import models
from ..utils.visualize import show_filters

__all__ = ["cli_main"]


class _UsageError(ValueError):
    pass


def _sizes(state):
    """``(in_channels, num_classes)`` as the state dict's weights say."""
    weights = [(k, v) for k, v in state.items() if k.endswith("weight")]
    first_conv = next((v for _, v in weights if v.ndim == 4), None)
    if first_conv is None:
        raise _UsageError("the checkpoint's model has no convolution weight")
    return int(first_conv.shape[1]), int(weights[-1][1].shape[0])


def cli_main(argv=None, prog="minicnn show"):
    parser = argparse.ArgumentParser(
        prog=prog, description="Pictures of a model: 'filters' saves the first "
        "convolution's filters as a grid (one RGB tile per filter for 3 input channels).")
    parser.add_argument("what", choices=("filters",))
    parser.add_argument("--model", required=True, help="builder name, e.g. alexnet")
    parser.add_argument("--checkpoint", help="run folder, checkpoint.npz or a saved state dict")
    parser.add_argument("--num-classes", type=int, help="passed to the builder")
    parser.add_argument("--in-channels", type=int, help="passed to the builder")
    parser.add_argument("--nrow", type=int, default=8, help="filters per row (default 8)")
    parser.add_argument("--scale", type=int, default=4,
                        help="magnify each filter pixel this many times (default 4)")
    parser.add_argument("--out", default="filters.png", help="the PNG to write")
    args = parser.parse_args(argv)
    try:
        kwargs = {}
        state = (models.load_model_state(args.checkpoint, op="--checkpoint")
                 if args.checkpoint else None)
        if state is not None:
            kwargs["in_channels"], kwargs["num_classes"] = _sizes(state)
        if args.num_classes is not None:
            kwargs["num_classes"] = args.num_classes
        if args.in_channels is not None:
            kwargs["in_channels"] = args.in_channels
        model = models.get_model(args.model, **kwargs)
        if state is not None:
            model.load_state_dict(state)
        grid = show_filters(model, args.out, nrow=args.nrow, scale=args.scale)
    except (_UsageError, ValueError, KeyError, FileNotFoundError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: the {grid.shape[2]}x{grid.shape[1]} grid of "
          f"{type(model).__name__}'s first-layer filters")
    return 0
