"""The ``minicnn`` command (also ``python -m minicnn``).

    minicnn train       train a CNN (default: LeNet-5 on the offline digits set)
    minicnn gradcheck   check every op against PyTorch and finite differences
    minicnn summary     layer table of a model: shapes, parameters, multiply-adds
    minicnn bench       minicnn vs PyTorch timings
    minicnn show        pictures of a model (show filters: its first-layer filters)
    minicnn explain     a worked example of conv2d / conv_transpose2d / max_pool2d

Argument parsing lives here and only here: ``cli/train.py`` and ``cli/summary.py`` own
the options of their sub-commands; the library below them takes plain arguments.
"""
from __future__ import annotations

import argparse
import importlib
import sys


def _gradcheck(args):
    from ..utils import opcheck
    try:
        cases = opcheck.cases(args.op)
    except KeyError as exc:
        print(f"minicnn gradcheck: {exc.args[0]}", file=sys.stderr)
        return 2
    use_torch = opcheck._torch_available() and not args.no_torch
    if not use_torch:
        print("PyTorch is not installed: running the finite-difference checks alone "
              "(pip install torch==2.13.0 to compare with PyTorch).")
    rows = [opcheck.run_case(c, use_torch) for c in cases]
    print(opcheck.format_table(rows))
    failed = sum(not r["passed"] for r in rows)
    print(f"\n{len(rows) - failed} passed, {failed} failed "
          f"({'against torch float64/float32 and ' if use_torch else ''}finite differences)")
    return 1 if failed else 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="minicnn", description="minicnn: train CNNs, check every op against PyTorch, "
        "summarise models, benchmark against PyTorch.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("gradcheck", help="check every op against PyTorch and by finite differences")
    p.add_argument("--op", help="check only this op (e.g. conv2d)")
    p.add_argument("--no-torch", action="store_true", help="finite differences only")
    p.set_defaults(run=_gradcheck)

    for name, run, help_text in (
            ("train", _train, "train a CNN (default: LeNet-5 on the offline digits set)"),
            ("summary", _summary, "layer table of a model"),
            ("bench", _bench, "minicnn vs PyTorch timings"),
            ("show", _show, "pictures of a model: show filters"),
            ("explain", _explain, "a worked example of an op, with real numbers")):
        p = sub.add_parser(name, help=help_text, add_help=False)
        p.set_defaults(run=run)
    return parser


# Sub-commands with many options own their parser: each gets the rest of the command line.

def _train(args):
    from . import train
    return train.cli_main(args.rest, prog="minicnn train")


def _summary(args):
    from . import summary
    return summary.cli_main(args.rest, prog="minicnn summary")


def _show(args):
    from . import show
    return show.cli_main(args.rest, prog="minicnn show")


def _explain(args):
    from . import explain
    return explain.cli_main(args.rest, prog="minicnn explain")


def _bench(args):
    # NOTE: benchmarks/ sits above the package (it imports minicnn and torch), so the
    # command finds it at run time instead of importing it at the top of this file.
    bench = importlib.import_module("benchmarks.__main__")
    return bench.cli_main(args.rest, prog="minicnn bench")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    # everything after a delegated sub-command goes to that command's own parser
    if argv and argv[0] in ("train", "summary", "bench", "show", "explain"):
        args = parser.parse_args(argv[:1])
        args.rest = argv[1:]
    else:
        args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    raise SystemExit(main())
