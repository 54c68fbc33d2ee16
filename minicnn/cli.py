"""The ``minicnn`` command (also ``python -m minicnn``).

    minicnn train       train a CNN (default: LeNet-5 on the offline digits set)
    minicnn gradcheck   check every op against PyTorch and finite differences
    minicnn summary     layer table of a model: shapes, parameters, multiply-adds
    minicnn bench       minicnn vs PyTorch timings
"""
from __future__ import annotations

import argparse
import sys


def _gradcheck(args):
    from .utils import opcheck
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
    parser = argparse.ArgumentParser(prog="minicnn", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("gradcheck", help="check every op against PyTorch and by finite differences")
    p.add_argument("--op", help="check only this op (e.g. conv2d)")
    p.add_argument("--no-torch", action="store_true", help="finite differences only")
    p.set_defaults(run=_gradcheck)

    for name, module, help_text in (
            ("train", "minicnn.train", "train a CNN (default: LeNet-5 on the offline digits set)"),
            ("summary", "minicnn.utils.summary", "layer table of a model"),
            ("bench", "benchmarks.__main__", "minicnn vs PyTorch timings")):
        p = sub.add_parser(name, help=help_text, add_help=False)
        p.set_defaults(run=_delegate(module, name))
    return parser


def _delegate(module_name, command):
    """Sub-commands with many options own their parser (``module.cli_main(argv)``)."""
    def run(args):
        import importlib
        module = importlib.import_module(module_name)
        return module.cli_main(args.rest, prog=f"minicnn {command}")
    return run


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    # everything after a delegated sub-command goes to that command's own parser
    if argv and argv[0] in ("train", "summary", "bench"):
        args = parser.parse_args(argv[:1])
        args.rest = argv[1:]
    else:
        args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    raise SystemExit(main())
