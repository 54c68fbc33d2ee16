"""Data-parallel scaling: training steps per second on 1, 2, ... MPI ranks at one global
batch, and where each step's time goes.

    minicnn bench --ranks 1,2                      LeNet-5, global batch 64
    python -m benchmarks.scaling --ranks 1,2 --model resnet20 --global-batch 64

Each rank count is a separate ``mpiexec -n N`` job running :func:`worker`: every rank
builds the same model, wraps it in ``DistributedDataParallel`` and trains on random data,
``global_batch / N`` examples per rank per step (SGD with momentum). Rank 0 times the
steps and reports:

* ``steps_s``: steps per second (and examples per second = steps_s * global batch);
* ``compute_ms``: a step's time minus the communication it waited for -- forward,
  backward and the optimizer on ``global_batch / N`` examples;
* ``exposed_ms``: the time backward's end waited for the gradient allreduces (what the
  overlap with backward did not hide), plus the time spent starting them;
* ``allreduce_ms``: one allreduce of every gradient (one flat float32 array) alone, the
  communication's full cost without overlap.

Each rank's thread pools (BLAS, OpenMP, numba) get one thread by default (``--threads``
sets another number), as ``torchrun`` sets ``OMP_NUM_THREADS=1``: N ranks then use N
cores, the ideal speed-up is N while N is at most the number of cores, and the allreduce
is extra work for the same cores. NOTE: with wider pools the baseline says little on a
machine that other jobs keep busy: spin-waiting BLAS threads lose badly to the
oversubscribed cores (LeNet-5's step took 142 ms with 2 threads and 15 ms with 1 on the
shared 2-core machine).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                     "NUMBA_NUM_THREADS")


def worker(model_name, global_batch, steps, warmup, bucket_cap_mb):
    """One rank's part (under mpiexec); rank 0 returns the figures, the others None."""
    import numpy as np

    import minicnn
    from minicnn import distributed as dist
    from minicnn import models, optim
    from minicnn.nn import functional as F

    comm = dist.init_process_group()
    if global_batch % comm.size:
        raise ValueError(f"--global-batch {global_batch} does not split over {comm.size} ranks")
    per_rank = global_batch // comm.size
    minicnn.manual_seed(0)
    if model_name.startswith("lenet5"):
        model, shape = models.get_model(model_name, num_classes=10, in_channels=1,
                                        input_size=28), (1, 28, 28)
    else:
        model, shape = models.get_model(model_name, num_classes=10, in_channels=3), (3, 32, 32)
    ddp = dist.DistributedDataParallel(model, bucket_cap_mb=bucket_cap_mb)
    optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(comm.rank)
    x = minicnn.tensor(rng.standard_normal((per_rank,) + shape).astype(np.float32))
    y = minicnn.tensor(rng.integers(0, 10, per_rank))

    def step():
        optimizer.zero_grad()
        F.cross_entropy(ddp(x), y).backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    comm.barrier()
    times, exposed = [], []
    for _ in range(steps):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
        exposed.append(ddp.timings["wait_s"] + ddp.timings["launch_s"])
    # the whole gradient, reduced alone
    n = sum(p.numel() for p in model.parameters())
    flat = np.zeros(n, dtype=np.float32)
    comm.barrier()
    alone = []
    for _ in range(max(5, steps)):
        started = time.perf_counter()
        comm.allreduce(flat)
        alone.append(time.perf_counter() - started)
    if comm.rank != 0:
        return None
    step_s = float(np.median(times))
    compute_s = float(np.median(np.subtract(times, exposed)))
    return {"ranks": comm.size, "model": model_name, "global_batch": global_batch,
            "per_rank_batch": per_rank, "steps": steps, "parameters": n,
            "buckets": len(ddp._buckets), "threads_per_rank": os.environ.get("OMP_NUM_THREADS"),
            "steps_s": 1.0 / step_s, "examples_s": global_batch / step_s,
            "step_ms": 1e3 * step_s,
            "compute_ms": 1e3 * compute_s, "exposed_ms": 1e3 * (step_s - compute_s),
            "allreduce_ms": 1e3 * float(np.median(alone))}


def run(ranks, model="lenet5", global_batch=64, steps=20, warmup=3, bucket_cap_mb=25.0,
        threads=1, log=print):
    """One ``mpiexec -n N`` job per rank count; the rows of rank 0's figures."""
    mpiexec = shutil.which("mpiexec")
    if mpiexec is None:
        raise RuntimeError("the scaling row needs mpiexec: pip install 'minicnn[dist]' "
                           "(mpi4py and MPICH)")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rows = []
    for n in ranks:
        per_rank = str(threads or 1)
        env = dict(os.environ, **{v: per_rank for v in _THREAD_VARIABLES})
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        command = [mpiexec, "-n", str(n), sys.executable, "-m", "benchmarks.scaling",
                   "--worker", "--model", model, "--global-batch", str(global_batch),
                   "--steps", str(steps), "--warmup", str(warmup),
                   "--bucket-cap-mb", str(bucket_cap_mb)]
        result = subprocess.run(command, env=env, capture_output=True, text=True, cwd=root)
        if result.returncode:
            raise RuntimeError(f"{' '.join(command[:3])} ... failed:\n{result.stderr[-2000:]}")
        row = json.loads(result.stdout.strip().splitlines()[-1])
        rows.append(row)
        log(f"{n} rank(s): {row['steps_s']:.2f} steps/s")
    base = rows[0]["steps_s"] if rows else None
    for row in rows:
        row["speedup"] = row["steps_s"] / base
    return rows


def table(rows):
    """The rows as a text table, with what limits them."""
    if not rows:
        return ""
    r0 = rows[0]
    lines = [f"data-parallel scaling: {r0['model']} ({r0['parameters']:,} parameters, "
             f"{r0['buckets']} gradient bucket(s)), global batch {r0['global_batch']}, "
             f"{os.cpu_count()} cores",
             f"{'ranks':>5} {'threads':>7} {'per rank':>8} {'steps/s':>8} {'images/s':>9} {'step ms':>8} "
             f"{'compute':>8} {'exposed':>8} {'allreduce':>9} {'speed-up':>8}"]
    for r in rows:
        lines.append(f"{r['ranks']:>5} {r['threads_per_rank']:>7} {r['per_rank_batch']:>8} {r['steps_s']:>8.2f} "
                     f"{r['examples_s']:>9.0f} {r['step_ms']:>8.1f} {r['compute_ms']:>8.1f} "
                     f"{r['exposed_ms']:>8.2f} {r['allreduce_ms']:>9.2f} {r['speedup']:>7.2f}x")
    lines.append("compute: forward + backward + step on the rank's share; exposed: the "
                 "allreduce time backward did not hide; allreduce: the whole gradient "
                 "reduced alone")
    return "\n".join(lines)


def build_parser(prog="python -m benchmarks.scaling"):
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("--ranks", default="1,2", help="rank counts, comma-separated (default 1,2)")
    p.add_argument("--model", default="lenet5", help="lenet5 (default) or a CIFAR ResNet "
                   "such as resnet20")
    p.add_argument("--global-batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=20, help="timed steps (the median is kept)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--bucket-cap-mb", type=float, default=25.0)
    p.add_argument("--threads", type=int, default=1, help="threads per rank (default 1)")
    p.add_argument("--json", metavar="PATH", help="write the rows to this JSON file")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return p


def main(argv=None, prog="python -m benchmarks.scaling"):
    args = build_parser(prog).parse_args(argv)
    if args.worker:
        row = worker(args.model, args.global_batch, args.steps, args.warmup,
                     args.bucket_cap_mb)
        if row is not None:
            print(json.dumps(row), flush=True)
        return 0
    try:
        ranks = [int(n) for n in args.ranks.split(",")]
    except ValueError:
        ranks = []
    if not ranks or min(ranks) < 1:
        print(f"{prog}: --ranks takes positive integers separated by commas, got "
              f"{args.ranks!r}", file=sys.stderr)
        return 2
    try:
        rows = run(ranks, args.model, args.global_batch, args.steps, args.warmup,
                   args.bucket_cap_mb, threads=args.threads,
                   log=lambda line: print(line, file=sys.stderr))
    except RuntimeError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    print(table(rows))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
