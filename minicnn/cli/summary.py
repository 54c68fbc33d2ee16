"""``minicnn summary MODEL``: the layer table of a model of the zoo, from the command line.

The table itself is :func:`minicnn.utils.summary.summary`; the model names are
``minicnn.models.MODELS`` (``--list`` prints them).
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from .. import models
from ..utils.summary import summary

__all__ = ["cli_main"]


def _usual_input(name, model):
    """The input a model was designed for: what it says of itself (LeNet-5 knows its
    ``input_size`` and ``in_channels``), else what the zoo records for it."""
    size = getattr(model, "input_size", None)
    if isinstance(size, int):
        first = next((m for m in model.modules() if hasattr(m, "in_channels")), None)
        return (first.in_channels if first is not None else 1, size, size)
    return models.input_size(name)


def _value(text):
    import ast
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def cli_main(argv=None, prog="minicnn summary"):
    """``minicnn summary MODEL [--input-size C H W] ...``: print the layer table."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Layer table of a model from minicnn.models: output "
        "shapes, parameters, multiply-adds (conv/linear) and activation memory, from one "
        "forward pass; with --rf also each layer's receptive field.")
    parser.add_argument("model", nargs="?", help="builder name, e.g. resnet50 (see --list)")
    parser.add_argument("--input-size", nargs="+", type=int, metavar="N",
                        help="input shape without the batch, e.g. 3 224 224 "
                             "(default: the model's usual size, else 3 224 224)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--num-classes", type=int, help="passed to the builder")
    parser.add_argument("--depth", type=int, default=3,
                        help="fold rows nested deeper than this (default 3)")
    parser.add_argument("--train", action="store_true",
                        help="run in training mode (e.g. to see auxiliary heads)")
    parser.add_argument("--shapes-only", action="store_true",
                        help="skip conv/linear arithmetic (same counts, much faster)")
    parser.add_argument("--rf", action="store_true",
                        help="add the receptive field of each row (in input pixels)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="extra builder argument, e.g. --set aux_logits=False")
    parser.add_argument("--list", action="store_true", help="list the model names")
    args = parser.parse_args(argv)

    if args.list or not args.model:
        print("models: " + ", ".join(models.list_models()))
        return 0 if args.list else 2
    try:
        builder = models.get_model_builder(args.model)
    except ValueError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    kwargs = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            print(f"{prog}: --set expects KEY=VALUE, got {item!r}", file=sys.stderr)
            return 2
        kwargs[key] = _value(value)
    if args.num_classes is not None:
        kwargs["num_classes"] = args.num_classes
    input_size = tuple(args.input_size) if args.input_size else None
    try:
        model = builder(**kwargs)
        if input_size is None:
            input_size = _usual_input(args.model, model)
        summary(model, input_size, batch_size=args.batch_size, dtype=getattr(np, args.dtype),
                depth=args.depth, mode="train" if args.train else "eval",
                shapes_only=args.shapes_only, rf=args.rf, verbose=True)
    except (ValueError, TypeError, RuntimeError) as exc:
        shown = f" with input {list(input_size)}" if input_size else ""
        print(f"{prog}: {args.model}{shown}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(cli_main())
