"""``python -m benchmarks.gpu``: the prepared check of minicnn's GPU path, for a machine
with a GPU (CuPy installed: ``pip install -e .[gpu]``).

    python -m benchmarks.gpu                 everything below; exit 0 when all of it passed
    python -m benchmarks.gpu --json r.json   also write every figure
    python -m benchmarks.gpu --dry-run       the same steps, tiny, untimed (the tests run it
                                             on their fake CuPy so that it cannot rot)

1. every registered op case (minicnn/utils/opcheck.py) in float32 and float64, forward
   and every input gradient, on the GPU against the CPU;
2. five training steps of a small CNN (conv, batch norm, ReLU, max pooling, LRN, dropout,
   linear, cross-entropy, SGD with momentum) on both devices from one seed: minicnn's
   Philox generator gives both the same weights and dropout masks, so the losses agree;
3. the checkpoint round trip: a GPU Trainer's checkpoint loads into a CPU model (same
   weights) and resumes on the GPU;
4. ``minicnn train --device cuda`` for one tiny epoch;
5. timings of minicnn on the GPU against PyTorch CUDA (forward + backward of conv2d, max
   pooling, batch norm, LRN, and a training step), where PyTorch has CUDA.

Without a usable GPU it says why and exits with status 3 (NO_GPU); a failed check exits 1.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time

import numpy as np

NO_GPU = 3


def main(argv=None):
    args = _parser().parse_args(argv)
    import minicnn as mc
    from minicnn import backend
    if not backend.is_cuda_available():
        reason = backend._cupy_error or "no CUDA device"
        print(f"benchmarks.gpu: no GPU to check here ({reason}). Run it on a machine with "
              "an NVIDIA GPU and `pip install -e .[gpu]`.", file=sys.stderr)
        return NO_GPU
    mc.manual_seed(0)
    report = {"device": _device_name(), "dry_run": args.dry_run}
    failures = []
    for name, step in (("op cases", _op_cases), ("training steps", _training_steps),
                       ("checkpoint", _checkpoint), ("cli", _cli), ("timings", _timings)):
        started = time.perf_counter()
        try:
            result, problems = step(args)
        except Exception as exc:             # report it and go on with the other checks
            result, problems = None, [f"{type(exc).__name__}: {exc}"]
        report[name] = result
        failures += [f"{name}: {p}" for p in problems]
        state = "ok" if not problems else f"{len(problems)} problem(s)"
        print(f"{name:15s} {state:18s} {time.perf_counter() - started:7.1f} s", flush=True)
    for line in failures:
        print("  " + line)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1, default=str)
    _print_timings(report.get("timings"))
    return 1 if failures else 0


def _parser():
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true",
                   help="every step tiny and untimed (what the tests run on a fake GPU)")
    p.add_argument("--json", metavar="PATH", help="write every figure to this JSON file")
    p.add_argument("--only", metavar="OP", help="op cases of this op only")
    return p


def _device_name():
    from minicnn import backend
    try:
        props = backend.cupy().cuda.runtime.getDeviceProperties(0)
        return props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    except Exception:                        # a stand-in CuPy without the runtime call
        return "cuda:0"


# ------------------------------------------------------------------- 1. op cases

def _op_cases(args):
    from minicnn.utils import opcheck
    problems, worst = [], {}
    for case in opcheck.cases(args.only):
        inputs = case.make_inputs(np.random.default_rng(0))
        for dtype, rtol, atol in ((np.float64, 1e-9, 1e-11),
                                  (np.float32, case.rtol32, case.atol32)):
            host = run_case_on(case, inputs, "cpu", dtype)
            dev = run_case_on(case, inputs, "cuda", dtype)
            name = f"{case.op}[{case.label}] {np.dtype(dtype).name}"
            for what, h, d in zip(_names(host), _flat(host), _flat(dev)):
                if h is None or d is None:
                    if (h is None) != (d is None):
                        problems.append(f"{name}: {what} is missing on one device")
                    continue
                error = float(np.max(np.abs(d - h), initial=0.0))
                key = np.dtype(dtype).name
                worst[key] = max(worst.get(key, 0.0), error)
                if d.shape != h.shape or not np.allclose(d, h, rtol=rtol, atol=atol,
                                                         equal_nan=True):
                    problems.append(f"{name}: {what} differs by {error:.3g}")
    return {"cases": len(opcheck.cases(args.only)), "max_abs_error": worst}, problems


def run_case_on(case, inputs, device, dtype):
    """One op case on ``device``: (outputs, input gradients) as host arrays (None where an
    input takes no gradient), from the same inputs and upstream gradients."""
    import minicnn as mc
    tensors = []
    for v in inputs:
        if isinstance(v, np.ndarray):
            arr = v.astype(dtype) if v.dtype.kind == "f" else v
            t = mc.tensor(arr, device=device, requires_grad=v.dtype.kind == "f")
            tensors.append(t)
        else:
            tensors.append(v)
    mc.manual_seed(0)
    out = case.fn(*tensors)
    outs = [o for o in (out if isinstance(out, (tuple, list)) else [out])
            if isinstance(o, mc.Tensor)]
    total = None
    for k, o in enumerate(o for o in outs if o.requires_grad):
        up = np.random.default_rng(k).standard_normal(o.shape).astype(o.dtype)
        term = (o * mc.tensor(up, device=device)).sum()
        total = term if total is None else total + term
    if total is not None:
        total.backward()
    grads = [t.grad.numpy() if isinstance(t, mc.Tensor) and t.grad is not None else None
             for t in tensors]
    return [o.numpy() for o in outs], grads


def _names(result):
    outs, grads = result
    return [f"output {k}" for k in range(len(outs))] + [f"grad {k}" for k in range(len(grads))]


def _flat(result):
    return list(result[0]) + list(result[1])


# ------------------------------------------------------------- 2. training steps

def small_cnn():
    from minicnn import nn
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.MaxPool2d(2), nn.LocalResponseNorm(3), nn.Dropout(0.3),
                         nn.Flatten(), nn.Linear(8 * 8 * 8, 10))


def _batches(count, batch, seed=0):
    import minicnn as mc
    rng = np.random.default_rng(seed)
    return [(mc.tensor(rng.standard_normal((batch, 3, 16, 16)).astype(np.float32)),
             mc.tensor(rng.integers(0, 10, batch))) for _ in range(count)]


def _train(device, batches):
    import minicnn as mc
    from minicnn.nn import functional as F
    mc.manual_seed(0)
    model = small_cnn().to(device)
    opt = mc.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for x, y in batches:
        opt.zero_grad()
        loss = F.cross_entropy(model(x.to(device)), y.to(device))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, {k: v.numpy() for k, v in model.state_dict().items()}


def _training_steps(args):
    batches = _batches(5, 4 if args.dry_run else 32)
    cpu_losses, cpu_weights = _train("cpu", batches)
    gpu_losses, gpu_weights = _train("cuda", batches)
    problems = []
    if not np.allclose(gpu_losses, cpu_losses, rtol=1e-3):
        problems.append(f"losses differ: CPU {cpu_losses}, GPU {gpu_losses}")
    worst = max(float(np.max(np.abs(gpu_weights[k] - w), initial=0.0))
                for k, w in cpu_weights.items())
    if worst > 1e-3:
        problems.append(f"weights after 5 steps differ by {worst:.3g}")
    return {"cpu_losses": cpu_losses, "gpu_losses": gpu_losses,
            "max_weight_difference": worst}, problems


# ---------------------------------------------------------------- 3. checkpoint

def _checkpoint(args):
    import minicnn as mc
    from minicnn import train
    from minicnn.data import DataLoader, TensorDataset
    batches = _batches(1, 16)
    data = TensorDataset(*batches[0])
    problems = []
    with tempfile.TemporaryDirectory() as folder:
        mc.manual_seed(0)
        model = small_cnn()
        trainer = train.Trainer(model, mc.optim.Adam(model.parameters(), lr=1e-3),
                                device="cuda", out_dir=folder, progress=False, log=False)
        trainer.fit(DataLoader(data, batch_size=8, shuffle=True), epochs=1)
        saved = {k: v.numpy() for k, v in model.state_dict().items()}
        host = small_cnn()
        host.load_state_dict(train.load_checkpoint(folder)["model"])
        for k, v in host.state_dict().items():
            if v.device != "cpu" or not np.array_equal(v.numpy(), saved[k]):
                problems.append(f"{k} did not come back to the CPU unchanged")
        mc.manual_seed(0)
        again = small_cnn()
        resumed = train.Trainer(again, mc.optim.Adam(again.parameters(), lr=1e-3),
                                device="cuda", out_dir=folder, progress=False, log=False)
        resumed.fit(DataLoader(data, batch_size=8, shuffle=True), epochs=2, resume=folder)
        if resumed.epoch != 2:
            problems.append(f"the resumed run ended at epoch {resumed.epoch}, not 2")
    return {"tensors": len(saved)}, problems


# ----------------------------------------------------------------------- 4. CLI

def _cli(args):
    from minicnn.cli import train as train_command
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "run")
        argv = ["--dataset", "synthetic", "--subset", "32" if args.dry_run else "256",
                "--batch-size", "16", "--epochs", "1", "--quiet", "--device", "cuda",
                "--out", out]
        status = train_command.cli_main(argv)
        made = sorted(os.listdir(out)) if os.path.isdir(out) else []
    problems = [] if status == 0 and "checkpoint.npz" in made else \
        [f"minicnn train {' '.join(argv[:-2])} exited {status}, made {made}"]
    return {"argv": argv, "status": status}, problems


# ------------------------------------------------------------------- 5. timings

def _workloads(small):
    """name -> (build(library, device) -> a function that runs forward + backward once)."""
    n, c, s = (2, 4, 8) if small else (32, 64, 56)

    def op(call):
        def build(lib, device):
            rng = np.random.default_rng(0)
            x = _tensor(lib, rng.standard_normal((n, c, s, s)).astype(np.float32), device)
            w = _tensor(lib, rng.standard_normal((c, c, 3, 3)).astype(np.float32) * 0.05,
                        device)
            return lambda: call(lib, x, w).sum().backward()
        return build

    def step(lib, device):
        if lib.__name__ == "minicnn":
            model, F = small_cnn().to(device), lib.nn.functional
        else:
            model, F = _torch_cnn(lib).to(device), lib.nn.functional
        opt = lib.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        rng = np.random.default_rng(0)
        x = _tensor(lib, rng.standard_normal((4 if small else 128, 3, 16, 16))
                    .astype(np.float32), device, grad=False)
        y = _tensor(lib, rng.integers(0, 10, x.shape[0]), device, grad=False)

        def run():
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        return run

    return {
        f"conv2d {n}x{c}x{s}x{s} k3": op(lambda lib, x, w: lib.nn.functional.conv2d(
            x, w, padding=1)),
        f"max_pool2d {n}x{c}x{s}x{s} 3/2": op(lambda lib, x, w: lib.nn.functional.max_pool2d(
            x, 3, 2)),
        f"batch_norm {n}x{c}x{s}x{s}": op(lambda lib, x, w: lib.nn.functional.batch_norm(
            x, None, None, training=True)),
        f"lrn {n}x{c}x{s}x{s} size 5": op(lambda lib, x, w: lib.nn.functional.local_response_norm(
            x, 5)),
        "training step small CNN": step,
    }


def _tensor(lib, array, device, grad=None):
    grad = array.dtype.kind == "f" if grad is None else grad
    return lib.tensor(array, device=device, requires_grad=grad)


def _torch_cnn(torch):
    nn = torch.nn
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.MaxPool2d(2), nn.LocalResponseNorm(3), nn.Dropout(0.3),
                         nn.Flatten(), nn.Linear(8 * 8 * 8, 10))


def _timings(args):
    import minicnn as mc
    from minicnn import backend
    torch = _torch_cuda()
    sides = {"minicnn": (mc, lambda: _sync_cupy(args.dry_run))}
    if torch is not None and not args.dry_run:
        sides["torch"] = (torch, torch.cuda.synchronize)
    rows = []
    for name, build in _workloads(args.dry_run).items():
        row = {"workload": name}
        for side, (lib, sync) in sides.items():
            run = build(lib, "cuda")
            row[side + "_ms"] = _median_ms(run, sync, 1 if args.dry_run else 20)
        if "torch_ms" in row:
            row["minicnn_over_torch"] = row["minicnn_ms"] / row["torch_ms"]
        rows.append(row)
    note = None if "torch" in sides else "PyTorch without CUDA: minicnn timed alone"
    return {"rows": rows, "note": note, "cupy": getattr(backend.cupy(), "__version__", "?")}, []


def _torch_cuda():
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def _sync_cupy(dry_run):
    if not dry_run:
        from minicnn import backend
        backend.cupy().cuda.Device().synchronize()


def _median_ms(run, sync, repeats):
    run()                                   # first call: compiles kernels, allocates
    sync()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        sync()
        samples.append((time.perf_counter() - started) * 1e3)
    return statistics.median(samples)


def _print_timings(timings):
    if not timings:
        return
    print(f"\n{'workload':36s} {'minicnn ms':>11s} {'torch ms':>9s} {'ratio':>6s}")
    for row in timings["rows"]:
        torch_ms = row.get("torch_ms", math.nan)
        ratio = row.get("minicnn_over_torch", math.nan)
        print(f"{row['workload']:36s} {row['minicnn_ms']:11.3f} {torch_ms:9.3f} {ratio:6.2f}")
    if timings["note"]:
        print(timings["note"])


if __name__ == "__main__":
    sys.exit(main())
