"""``minicnn bench`` / ``python -m benchmarks``: minicnn against PyTorch, side by side.

    minicnn bench                         the full suite (a few minutes)
    minicnn bench --quick                 small shapes, 3 samples: a smoke run
    minicnn bench --only conv2d,lenet     workloads whose name contains one of these
    minicnn bench --memory --json r.json  also peak memory (slow), and save the figures
    minicnn bench --list                  the workload names
    minicnn bench --dry-run --quick       run every workload once, untimed: does it work?
    minicnn bench --compare-algorithms    3x3 conv2d: im2col, Winograd, auto and torch

See ``benchmarks/__init__.py`` for what is timed and how.
"""
from __future__ import annotations

import argparse
import datetime
import functools
import gc
import os
import platform
import sys

from . import algorithms, blas, harness, memory, report
from .workloads import SIZES, all_workloads, select

# per size: warm-up runs, samples, min seconds per sample, seconds of samples per side
# (slow workloads take fewer samples, at least 3), matmul n for the ceiling
_TIMING_DEFAULTS = {"full": (1, 7, 0.05, 60.0, 2048, 0.2), "quick": (0, 3, 0.0, 10.0, 512, 0.0)}


def build_parser(prog):
    p = argparse.ArgumentParser(prog=prog, description="minicnn against PyTorch (CPU, "
                                "float32), side by side on the same workloads",
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.split("\n")[2:10]))
    p.add_argument("--size", choices=sorted(SIZES), default="full",
                   help="workload sizes (default: full)")
    p.add_argument("--quick", action="store_const", dest="size", const="quick",
                   help="same as --size quick: batch sizes / 8, short sweeps, 3 samples")
    p.add_argument("--only", metavar="NAMES",
                   help="run the workloads whose name contains any of these comma-separated "
                        "substrings (case-insensitive)")
    p.add_argument("--list", action="store_true", help="list the workload names and exit")
    p.add_argument("--dry-run", action="store_true",
                   help="set up each workload and run each side once, untimed, and say "
                        "which worked (no table); exit status 1 if any failed")
    p.add_argument("--json", metavar="PATH", help="write every figure to this JSON file")
    p.add_argument("--plot", metavar="PATH", default=os.path.join("runs", "bench", "scaling.png"),
                   help="where the scaling plot goes (default: %(default)s)")
    p.add_argument("--no-plot", action="store_true", help="do not draw the scaling plot")
    p.add_argument("--memory", action="store_true",
                   help="also measure each workload's peak memory, each side in its own "
                        "process (slow: two processes per workload)")
    p.add_argument("--pause", type=float, default=None,
                   help="seconds to sleep before each timed sample so the other library's "
                        "spinning idle threads are asleep (default 0.2, quick: 0)")
    p.add_argument("--threads", type=int,
                   help="threads for both sides (default: torch.get_num_threads())")
    p.add_argument("--warmup", type=int, help="untimed runs per side after the first call")
    p.add_argument("--repeats", type=int, help="timed samples per side (the median is kept)")
    p.add_argument("--min-time", type=float,
                   help="seconds a sample lasts at least (several calls per sample if needed)")
    p.add_argument("--ranks", metavar="N,M",
                   help="instead of the suite: data-parallel training steps/s of LeNet-5 "
                        "on N, M MPI ranks at global batch 64, compute vs allreduce time "
                        "(benchmarks/scaling.py; more options: python -m benchmarks.scaling)")
    p.add_argument("--compare-algorithms", nargs="?", const="suite", choices=("suite", "all"),
                   metavar="suite|all",
                   help="instead of the suite: each 3x3 stride-1 conv2d shape of the suite "
                        "(all: the scaling sweeps' shapes too), forward + backward with "
                        "conv_algorithm " + ", ".join(algorithms.ALGORITHMS) + " and "
                        "torch, alternating (benchmarks/algorithms.py)")
    p.add_argument("--budget", type=float,
                   help="seconds of samples per side per workload: slow workloads take "
                        "fewer samples, never fewer than 3 (default: 60, quick: 10)")
    return p


def run_workload(workload, warmup, repeats, min_time, budget, pause=0.0):
    """Set both sides up, time them, and return the result row (see report.py)."""
    row = {"name": workload.name, "kind": workload.kind, "params": workload.params,
           "status": "ok", "note": "", "flops": None, "minicnn": None, "torch": None,
           "ratio": None}
    missing = harness.missing_pieces(workload.needs)
    if missing:
        row["status"] = "skipped"
        row["note"] = "minicnn has no " + ", ".join("minicnn." + m for m in missing) + " yet"
        return row
    timings, errors, notes = harness.set_up_and_measure(
        {side: functools.partial(workload.setup, side) for side in harness.SIDES},
        warmup, repeats, min_time, budget, pause)
    try:
        flops = workload.flops()            # None: no nominal count for this workload
        row["flops"] = None if flops is None else float(flops)
    except Exception as exc:
        errors["flops"] = f"{type(exc).__name__}: {exc}"
    for side, t in timings.items():
        row[side] = {"median_s": t.median, "samples_s": t.samples, "number": t.number,
                     "gflops": row["flops"] / t.median / 1e9 if row["flops"] else None,
                     "peak_mb": None}
    if len(timings) == 2:
        row["ratio"] = timings["torch"].median / timings["minicnn"].median
    if errors:
        row["status"] = "error"
    row["note"] = "; ".join(notes + [f"{side}: {msg}" for side, msg in errors.items()])
    return row


def dry_run(workloads, log):
    """Set up every workload (or comparison: each of its columns) and call each side's
    ``run`` once, untimed: a check that the suite works before a long run. Returns the
    number of failures."""
    failures = 0
    for i, w in enumerate(workloads, 1):
        missing = harness.missing_pieces(w.needs)
        if missing:
            log(f"[{i}/{len(workloads)}] {w.name}: skipped, minicnn has no "
                + ", ".join("minicnn." + m for m in missing) + " yet")
            continue
        said = []
        for side in w.sides:
            try:
                w.setup(side)()
            except harness.Unavailable as exc:
                said.append(f"{side} unavailable ({exc})")
            except Exception as exc:
                failures += 1
                said.append(f"{side} FAILED ({type(exc).__name__}: {exc})")
            else:
                said.append(f"{side} ok")
            gc.collect()
        log(f"[{i}/{len(workloads)}] {w.name}: " + ", ".join(said))
    return failures


def add_memory(rows, size, threads, log):
    """Fill each timed side's ``peak_mb`` from a child process (memory.py)."""
    base, err = memory.baseline_mb(size, threads)
    if err:
        log(f"memory baseline failed, no memory figures: {err}")
        return None
    for row in rows:
        for side in harness.SIDES:
            if row.get(side):
                mb, err = memory.peak_mb(row["name"], side, size, threads)
                if err:
                    row["note"] = (row["note"] + "; " if row["note"] else "") + f"{side} {err}"
                else:
                    row[side]["peak_mb"] = mb - base
        if row.get("minicnn") or row.get("torch"):
            log(f"memory {row['name']}: " + ", ".join(
                f"{s} {row[s]['peak_mb']:.0f} MB" for s in harness.SIDES
                if row.get(s) and row[s]["peak_mb"] is not None))
    return base


def measure_header(args, log):
    """What the run is: machine, versions, threads, BLAS, timing settings, and the float32
    matmul ceiling, measured now; where OPENBLAS_CORETYPE pins OpenBLAS's kernels, the
    ceiling again in a child process without it (``blas.py``). Returns the ``meta`` dict."""
    import minicnn
    import numpy as np
    import torch
    log(f"measuring the float32 matmul ceiling ({args.matmul_n}^3) ...")
    ceiling = harness.matmul_gflops(args.matmul_n, repeats=max(3, args.repeats))
    blas_now, unpinned = blas.blas_info(), None
    if blas_now["coretype_env"] and blas_now["pinned"] is not False:
        log(f"... and without {blas.CORETYPE_VARIABLE}={blas_now['coretype_env']}, in a "
            f"child process ...")
        unpinned = blas.unpinned_ceiling(args.matmul_n, max(3, args.repeats), args.threads)
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpu_count": os.cpu_count(), "python": platform.python_version()},
        "versions": {"minicnn": getattr(minicnn, "__version__", "?"), "torch": torch.__version__,
                     "numpy": np.__version__},
        "threads": harness.thread_report(), "blas": blas_now, "size": args.size,
        "warmup": args.warmup, "repeats": args.repeats, "min_time_s": args.min_time,
        "budget_s": args.budget, "pause_s": args.pause, "matmul_n": args.matmul_n,
        "ceiling_gflops": ceiling, "ceiling_unpinned": unpinned, "memory_baseline_mb": None,
        "flops_note": "nominal: conv 2*N*K*C/groups*KH*KW*OH*OW per pass, fwd+bwd = 3x; "
                      "models: conv+linear forward FLOPs, x3 for a training step",
    }


def run_suite(workloads, args, log):
    """The header and ceiling, every workload in turn, then (``--memory``) the memory
    children."""
    meta = measure_header(args, log)
    rows = []
    for i, w in enumerate(workloads, 1):
        row = run_workload(w, args.warmup, args.repeats, args.min_time, args.budget,
                           args.pause)
        rows.append(row)
        mc, th = row["minicnn"], row["torch"]
        log(f"[{i}/{len(workloads)}] {w.name}: " + (
            row["note"] if not (mc or th) else
            f"minicnn {report._ms(mc)} ms, torch {report._ms(th)} ms"
            + (f" ({row['note']})" if row["note"] else "")))
    if args.memory:
        meta["memory_baseline_mb"] = add_memory(rows, args.size, args.threads, log)
    return meta, rows


def run_comparisons(comparisons, args, log):
    """``--compare-algorithms``: the header and ceiling, then every comparison in turn."""
    meta = measure_header(args, log)
    meta["algorithms"] = list(algorithms.ALGORITHMS)
    rows = []
    for i, c in enumerate(comparisons, 1):
        row = algorithms.compare(c, args.warmup, args.repeats, args.min_time, args.budget,
                                 args.pause)
        rows.append(row)
        log(f"[{i}/{len(comparisons)}] {c.name}: " + ", ".join(
            f"{side} {report._ms(t)} ms" for side, t in row["times"].items())
            + (f" ({row['note']})" if row["note"] else ""))
    return meta, rows


def cli_main(argv=None, prog="python -m benchmarks"):
    args = build_parser(prog).parse_args(sys.argv[1:] if argv is None else list(argv))
    if args.ranks:
        from . import scaling
        return scaling.main(["--ranks", args.ranks] + (["--json", args.json] if args.json
                                                       else []), prog=prog)
    if args.compare_algorithms and args.memory:
        print(f"{prog}: --memory measures the suite's workloads; it does not go with "
              f"--compare-algorithms", file=sys.stderr)
        return 2
    if args.compare_algorithms:
        workloads = select(algorithms.comparisons(args.size, args.compare_algorithms == "all"),
                           args.only)
    else:
        workloads = select(all_workloads(args.size), args.only)
    if args.list:
        print("\n".join(f"{w.kind:<10} {w.name}" for w in workloads))
        return 0
    if not workloads:
        print(f"{prog}: no workload matches --only {args.only!r} (see --list)", file=sys.stderr)
        return 2
    defaults = dict(zip(("warmup", "repeats", "min_time", "budget", "matmul_n", "pause"),
                        _TIMING_DEFAULTS[args.size]))
    for key, value in defaults.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if (args.repeats < 1 or args.warmup < 0 or args.min_time < 0 or args.budget < 0
            or args.pause < 0 or (args.threads or 1) < 1):
        print(f"{prog}: --repeats and --threads must be >= 1, --warmup, --min-time, "
              f"--budget and --pause >= 0", file=sys.stderr)
        return 2

    def log(message):           # progress on stderr; the table alone goes to stdout
        print(message, file=sys.stderr, flush=True)

    import torch
    if args.dry_run:
        with harness.threads(args.threads or torch.get_num_threads()):
            failures = dry_run(workloads, lambda m: print(m, flush=True))
        print(f"dry run: {len(workloads)} workload(s), {failures} failure(s)")
        return 1 if failures else 0
    args.threads = args.threads or torch.get_num_threads()
    if args.compare_algorithms:
        with harness.threads(args.threads):
            meta, rows = run_comparisons(workloads, args, log)
        print(report.format_algorithms(meta, rows))
        if args.json:
            report.write_json(args.json, meta, rows)
            print(f"\nfigures written to {args.json}")
        return 1 if any(r["status"] == "error" for r in rows) else 0
    with harness.threads(args.threads):
        meta, rows = run_suite(workloads, args, log)

    print(report.format_table(meta, rows, memory=args.memory))
    if args.json:
        report.write_json(args.json, meta, rows)
        print(f"\nfigures written to {args.json}")
    if not args.no_plot:
        try:
            path = report.plot_scaling(rows, args.plot)
        except ImportError:
            print("no scaling plot: matplotlib is not installed (pip install matplotlib)")
        else:
            if path:
                print(f"scaling plot saved to {path}")
    return 1 if any(r["status"] == "error" for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(cli_main())
