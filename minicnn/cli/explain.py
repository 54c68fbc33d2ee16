"""``minicnn explain OP``: a worked example of conv2d, conv_transpose2d or max_pool2d with
real numbers, step by step as the kernels compute it (im2col, the matrix multiply, the
output; then the backward through col2im), printed, and drawn with ``--out``.

    minicnn explain conv2d                      seed 003's 3x3 * 2x2 = [[19, 25], [37, 43]]
    minicnn explain conv2d --size 4 --padding 1 --stride 2 --in-channels 2 --out x.png
    minicnn explain conv_transpose2d            [[0, 1], [2, 3]] at stride 2 -> 4x4
    minicnn explain max_pool2d --size 4         2x2 windows, stride 2
"""
from __future__ import annotations

import argparse
import sys

from ..utils.explain import OPS, explain

__all__ = ["cli_main"]


def cli_main(argv=None, prog="minicnn explain"):
    parser = argparse.ArgumentParser(
        prog=prog, description="A worked example of an op with real numbers: the forward "
        "as im2col + a matrix multiply, the backward as a matrix multiply + col2im.")
    parser.add_argument("op", choices=OPS)
    parser.add_argument("--size", type=int, help="input height = width (default: the seed's)")
    parser.add_argument("--kernel-size", type=int)
    parser.add_argument("--stride", type=int)
    parser.add_argument("--padding", type=int, default=0)
    parser.add_argument("--in-channels", type=int, default=1)
    parser.add_argument("--out-channels", type=int, default=1, help="convolutions only")
    parser.add_argument("--out", help="also draw the steps into this PNG")
    args = parser.parse_args(argv)
    options = dict(size=args.size, kernel_size=args.kernel_size, stride=args.stride,
                   padding=args.padding, in_channels=args.in_channels)
    if args.op != "max_pool2d":
        options["out_channels"] = args.out_channels
    try:
        explanation = explain(args.op, **options)
    except ValueError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    print(explanation.text())
    if args.out:
        if explanation.draw(args.out):
            print(f"drew the steps into {args.out}")
        else:
            print(f"{prog}: matplotlib is not installed; no picture drawn", file=sys.stderr)
    return 0
