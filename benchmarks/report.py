"""Presenting the figures: the table, the JSON file, the scaling plot.

A result row is a plain dict (it is also what the JSON holds)::

    {"name": ..., "kind": "op" | "train" | "inference" | "scaling", "params": {...},
     "status": "ok" | "skipped" | "error", "note": "...", "flops": nominal FLOPs,
     "minicnn": {"median_s", "samples_s", "number", "gflops", "peak_mb"} or None,
     "torch": the same, "ratio": torch median / minicnn median}

``--compare-algorithms`` rows are ``algorithms.compare``'s (one time per algorithm and
torch); :func:`format_algorithms` prints them under the same header.
"""
from __future__ import annotations

import itertools
import json
import math
import os

__all__ = ["format_header", "format_table", "format_algorithms", "write_json",
           "plot_scaling", "geometric_means"]

_KIND_TITLES = {"op": "ops: forward + backward", "train": "training step",
                "inference": "inference (eval, no_grad)", "scaling": "scaling (conv2d)"}
_KIND_SHORT = {"op": "ops", "train": "training", "inference": "inference",
               "scaling": "scaling"}


def _ms(side):
    return f"{side['median_s'] * 1e3:.2f}" if side else "-"


def _gflops(side):
    return f"{side['gflops']:.1f}" if side and side.get("gflops") is not None else "-"


def _mb(side):
    return f"{side['peak_mb']:.0f}" if side and side.get("peak_mb") is not None else "-"


def geometric_means(rows):
    """{kind: geometric mean of torch/minicnn} over the rows with both timings."""
    by_kind = {}
    for r in rows:
        if r.get("ratio"):
            by_kind.setdefault(r["kind"], []).append(math.log(r["ratio"]))
    return {k: math.exp(sum(v) / len(v)) for k, v in by_kind.items()}


def format_header(meta):
    """The lines that say what ran: versions, timing, threads, and the matmul ceiling with
    the BLAS NumPy used (library, version, kernels, an OPENBLAS_CORETYPE pin and the
    ceiling without it: ``blas.describe``)."""
    from .blas import describe
    t = meta["threads"]
    ceiling = meta["ceiling_gflops"]
    blas = (f" ({describe(meta['blas'], meta.get('ceiling_unpinned'))})"
            if meta.get("blas") else "")
    return [
        f"minicnn {meta['versions']['minicnn']} vs PyTorch {meta['versions']['torch']} "
        f"(CPU, float32), size {meta['size']}",
        f"timing: first call and {meta['warmup']} warm-up run(s) untimed, then the median "
        f"of {meta['repeats']} samples"
        + (f" (fewer, at least 3, where that would exceed {meta['budget_s']:g} s)"
           if meta.get("budget_s") and meta["repeats"] > 3 else "")
        + ", minicnn and torch alternating"
        + (f", {meta['pause_s']:g} s pause before each sample" if meta.get("pause_s") else ""),
        f"threads: torch {t['torch']} | numpy BLAS {t['numpy_blas']}"
        + (f" | numba {t['numba']}" if t.get("numba") is not None else ""),
        f"ceiling, float32 matmul {meta['matmul_n']}^3: numpy {ceiling['numpy']:.1f} "
        f"GFLOP/s{blas}, torch {ceiling['torch']:.1f} GFLOP/s",
    ]


def format_table(meta, rows, memory=False):
    """The whole report as text: a header (threads, ceiling), one line per workload
    grouped by kind, notes for skipped/failed rows, and the geometric means."""
    lines = format_header(meta) + [
        "torch/minicnn = torch time / minicnn time: above 1 means minicnn is faster"]
    if memory:
        lines.append("MB = peak resident memory above a process that only imports both "
                     "libraries (first-use overheads included), one process per figure")
    lines.append("")
    width = max([len(r["name"]) for r in rows] + [8])
    head = (f"{'workload':<{width}}  {'minicnn ms':>10}  {'torch ms':>10}  "
            f"{'torch/minicnn':>13}  {'minicnn GFLOP/s':>15}  {'torch GFLOP/s':>13}")
    if memory:
        head += f"  {'minicnn MB':>10}  {'torch MB':>8}"
    lines += [head, "-" * len(head)]
    def line_of(r):
        mc, th = r.get("minicnn"), r.get("torch")
        ratio = f"{r['ratio']:.2f}" if r.get("ratio") else r["status"]
        line = (f"{r['name']:<{width}}  {_ms(mc):>10}  {_ms(th):>10}  {ratio:>13}  "
                f"{_gflops(mc):>15}  {_gflops(th):>13}")
        return line + (f"  {_mb(mc):>10}  {_mb(th):>8}" if memory else "")

    notes = []
    for kind, group in itertools.groupby(rows, key=lambda r: r["kind"]):
        lines.append(f"[{_KIND_TITLES.get(kind, kind)}]")
        lines += _row_lines(group, line_of, notes)
    lines += _note_lines(notes)
    means = geometric_means(rows)
    if means:
        lines.append("")
        lines.append("geometric mean of torch/minicnn: " + ", ".join(
            f"{_KIND_SHORT.get(k, k)} {v:.2f}"
            for k, v in means.items()))
    return "\n".join(lines)


def format_algorithms(meta, rows):
    """``--compare-algorithms`` as text: the header, then per conv2d shape the ms of each
    algorithm and of torch, torch / minicnn's fastest, which algorithm that is, and which
    one "auto" chose; notes for failures; the geometric mean of the ratios."""
    from .algorithms import ALGORITHMS, geometric_mean_ratio
    columns = list(ALGORITHMS) + ["torch"]
    lines = format_header(meta) + [
        "conv2d forward + backward (grad of input and weight), ms per call; torch/best = "
        "torch time / the fastest minicnn algorithm's: above 1 means minicnn is faster",
        ""]
    width = max([len(r["name"]) for r in rows] + [8])
    cells = [max(len(c), 8) for c in columns]
    head = (f"{'workload':<{width}}  " + "  ".join(f"{c:>{n}}" for c, n in zip(columns, cells))
            + f"  {'torch/best':>10}  {'fastest':<12}  auto runs")
    lines += [head, "-" * len(head)]
    def line_of(r):
        ratio = f"{r['ratio']:.2f}" if r.get("ratio") else r["status"]
        return (f"{r['name']:<{width}}  "
                + "  ".join(f"{_ms(r['times'].get(c)):>{n}}" for c, n in zip(columns, cells))
                + f"  {ratio:>10}  {r.get('best') or '-':<12}  {r.get('auto_choice', '?')}")

    notes = []
    lines += _row_lines(rows, line_of, notes) + _note_lines(notes)
    mean = geometric_mean_ratio(rows)
    if mean:
        lines += ["", f"geometric mean of torch/best: {mean:.2f}"]
    return "\n".join(lines)


def _row_lines(rows, line_of, notes):
    """``line_of(row)`` for each row, marked "[i]" where the row has a note (the row is
    then appended to ``notes``, i being its place there)."""
    lines = []
    for r in rows:
        line = line_of(r)
        if r.get("note"):
            notes.append(r)
            line += f"  [{len(notes)}]"
        lines.append(line)
    return lines


def _note_lines(notes):
    """The notes the "[i]" marks refer to, after an empty line (none: no lines)."""
    return [""] + [f"[{i}] {r['name']}: {r['note']}" for i, r in enumerate(notes, 1)] \
        if notes else []


def write_json(path, meta, rows):
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"meta": meta, "results": rows}, f, indent=1)


def plot_scaling(rows, path):
    """Two log-log panels of conv2d time: against the batch size and against the image
    side, both frameworks, with the ideal growth (linear in N, quadratic in the side)
    drawn from minicnn's first point. Returns the path, or None when nothing to plot."""
    points = [r for r in rows if r["kind"] == "scaling" and r["status"] == "ok"]
    if not points:
        return None
    import matplotlib
    matplotlib.use("Agg")             # files only, no display needed
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, sweep, key, power, label in (
            (axes[0], "batch", "N", 1, "batch size N"),
            (axes[1], "side", "H", 2, "image side H = W")):
        mine = sorted((r for r in points if r["params"].get("sweep") == sweep),
                      key=lambda r: r["params"][key])
        if not mine:
            ax.set_visible(False)
            continue
        xs = [r["params"][key] for r in mine]
        for side, style in (("minicnn", "o-"), ("torch", "s-")):
            ys = [r[side]["median_s"] * 1e3 if r.get(side) else math.nan for r in mine]
            ax.plot(xs, ys, style, label=side)
        first = mine[0]["minicnn"]
        if first:
            ideal = [first["median_s"] * 1e3 * (x / xs[0]) ** power for x in xs]
            ax.plot(xs, ideal, ":", color="gray",
                    label="ideal (" + ("linear" if power == 1 else "quadratic") + ")")
        p = mine[0]["params"]
        fixed = (f"{p['C']}->{p['K']} ch, {p['H']}x{p['W']}" if sweep == "batch"
                 else f"N={p['N']}, {p['C']}->{p['K']} ch")
        ax.set(xscale="log", yscale="log", xlabel=label, ylabel="forward + backward, ms",
               title=f"conv2d 3x3 s1 p1 ({fixed})")
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xticks(xs)
        ax.set_xticklabels([str(x) for x in xs])
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
