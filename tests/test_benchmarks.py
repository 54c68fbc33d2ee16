"""The benchmark harness works end to end (benchmarks/). No timing is asserted: only that
the harness times what it says, in the order it says, and writes what it promises."""
import json
import math

import numpy as np
import pytest

from benchmarks import harness, memory, models, report, workloads
from benchmarks import __main__ as bench_main
from benchmarks.__main__ import cli_main, run_workload

TINY_CONV = "conv2d 8x1x28x28 k6x5x5 s1 p2"            # --quick's smallest conv2d
TINY_SCALING = "scaling side: conv2d 1x64x8x8 k64x3x3 s1 p1"
TINY_TRAIN = "train lenet5 batch 8 1x28x28"


class FakeClock:
    """A clock that only moves when a fake run says how long it took."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_measure_alternates_warms_up_and_takes_the_median():
    clock, log = FakeClock(), []
    durations = {"minicnn": iter([0.5, 0.5] + [2.0, 7.0, 2.0, 1.0, 2.0] * 10),
                 "torch": iter([0.5, 0.5] + [1.0] * 50)}

    def runner(side):
        def run():
            log.append(side)
            clock.now += next(durations[side])
        return run

    timings, errors = harness.measure({s: runner(s) for s in harness.SIDES}, warmup=1,
                                      repeats=3, min_time=0.0, clock=clock)
    assert errors == {}
    # first call, one warm-up round in the other order, then 3 alternating samples
    assert log == ["minicnn", "torch", "torch", "minicnn", "minicnn", "torch",
                   "torch", "minicnn", "minicnn", "torch"]
    assert timings["minicnn"].samples == [2.0, 7.0, 2.0]
    assert timings["minicnn"].median == 2.0          # the slow sample does not count
    assert timings["torch"].median == 1.0


def test_measure_groups_fast_calls_into_samples_of_min_time():
    clock = FakeClock()
    calls = {"minicnn": 0, "torch": 0}

    def runner(side, seconds):
        def run():
            calls[side] += 1
            clock.now += seconds
        return run

    timings, _ = harness.measure({"minicnn": runner("minicnn", 0.3), "torch": runner("torch", 1.0)},
                                 warmup=0, repeats=2, min_time=1.0, clock=clock)
    assert timings["minicnn"].number == 4                # ceil(1.0 / 0.3)
    assert timings["torch"].number == 1
    assert calls == {"minicnn": 1 + 2 * 4, "torch": 1 + 2 * 1}
    assert timings["minicnn"].median == pytest.approx(0.3)


def test_measure_budget_cuts_samples_of_slow_workloads_but_keeps_three():
    clock, calls = FakeClock(), []

    def run():
        calls.append(1)
        clock.now += 10.0

    timings, _ = harness.measure({"minicnn": run}, warmup=2, repeats=7, min_time=0.0,
                                 budget=25.0, clock=clock)
    assert len(timings["minicnn"].samples) == 3          # 25 s / 10 s -> 2, raised to 3
    assert len(calls) == 1 + 3                           # no warm-up after a 10 s call
    timings, _ = harness.measure({"minicnn": run}, warmup=0, repeats=7, min_time=0.0,
                                 budget=55.0, clock=clock)
    assert len(timings["minicnn"].samples) == 5


def test_measure_reports_a_failing_side_and_times_the_other():
    def broken():
        raise ValueError("conv2d: bad padding")

    timings, errors = harness.measure({"minicnn": broken, "torch": lambda: None},
                                      warmup=1, repeats=2, min_time=0.0)
    assert list(timings) == ["torch"]
    assert errors == {"minicnn": "ValueError: conv2d: bad padding"}


def test_select_takes_substrings_and_comma_lists():
    names = [w.name for w in workloads.select(workloads.all_workloads("full"),
                                              "MAX_POOL2D, lenet5")]
    assert names and all(n.startswith("max_pool2d") or "lenet5" in n for n in names)
    assert any("lenet5" in n for n in names)
    assert workloads.select(workloads.all_workloads("full"), "") != []
    assert workloads.select(workloads.all_workloads("full"), "no such workload") == []


def test_every_workload_has_a_unique_name():
    for size in workloads.SIZES:
        names = [w.name for w in workloads.all_workloads(size)]
        assert len(names) == len(set(names))


def test_flop_counts(torch):
    w = workloads.conv2d_workload(2, 3, 8, 8, 4, 3, 1, 1)
    assert w.flops() == 3 * 2 * 2 * 4 * 3 * 3 * 3 * 8 * 8        # 3 x 2·N·K·C·KH·KW·OH·OW
    t = workloads.conv_transpose2d_workload(2, 3, 5, 5, 4, 4, 2, 1)
    assert t.flops() == 3 * 2 * 2 * 3 * 4 * 4 * 4 * 5 * 5
    # LeNet-5: conv1 2·6·28²·25, conv2 2·16·10²·150, fc 2·(400·120 + 120·84 + 84·10)
    assert models.count_flops(models.lenet5, (1, 1, 28, 28)) == 235200 + 480000 + 117840


def test_cli_quick_run_prints_the_table_and_writes_json_and_plot(tmp_path, capsys, torch):
    out, png = tmp_path / "bench.json", tmp_path / "scaling.png"
    threads_before = torch.get_num_threads()
    # one thread: on a busy machine two OpenMP threads can be 100x slower, not wrong
    rc = cli_main(["--quick", "--only", f"{TINY_CONV},{TINY_SCALING},lenet", "--repeats", "2",
                   "--threads", "1", "--json", str(out), "--plot", str(png)],
                  prog="minicnn bench")
    text = capsys.readouterr().out
    assert rc == 0
    assert torch.get_num_threads() == threads_before            # settings restored
    assert "torch/minicnn" in text and "GFLOP/s" in text and TINY_CONV in text
    assert "threads: torch 1 | numpy BLAS 1" in text             # both sides, in the header
    data = json.loads(out.read_text())
    assert data["meta"]["ceiling_gflops"]["numpy"] > 0
    assert data["meta"]["threads"]["torch"] == 1
    rows = {r["name"]: r for r in data["results"]}
    assert set(rows) == {TINY_CONV, TINY_SCALING, TINY_TRAIN}
    for row in rows.values():
        assert row["status"] == "ok", row["note"]
        for side in harness.SIDES:
            assert row[side]["median_s"] > 0 and len(row[side]["samples_s"]) == 2
            assert row[side]["gflops"] == pytest.approx(row["flops"] / row[side]["median_s"]
                                                        / 1e9)
        assert row["ratio"] == pytest.approx(row["torch"]["median_s"]
                                             / row["minicnn"]["median_s"])
    assert rows[TINY_TRAIN]["flops"] == 3 * 8 * 833040          # 3 x forward, batch 8
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("name, input_shape", [
    ("lenet5", (2, 1, 28, 28)),
    pytest.param("cifar_resnet18", (2, 3, 32, 32), marks=pytest.mark.slow)])
def test_model_definitions_compute_the_same_function_in_both_libraries(torch, name,
                                                                        input_shape):
    """The torch side of a model workload is the same network as the minicnn side: the
    same weights give the same outputs (train mode: BN uses the batch statistics)."""
    import minicnn
    import minicnn.models
    reference = getattr(models, name)(torch)
    ours = (minicnn.models.lenet5() if name == "lenet5" else models.cifar_resnet18(minicnn))
    ours.load_state_dict(reference.state_dict())
    x = np.random.default_rng(0).standard_normal(input_shape, dtype=np.float32)
    expected = reference(torch.tensor(x)).detach().numpy()
    np.testing.assert_allclose(ours(minicnn.tensor(x)).numpy(), expected, rtol=1e-4, atol=1e-4)


def test_cli_rejects_an_empty_selection(capsys):
    assert cli_main(["--only", "no such workload"], prog="minicnn bench") == 2
    assert "no workload matches" in capsys.readouterr().err


def test_table_marks_skipped_rows_with_their_note():
    meta = {"versions": {"minicnn": "0", "torch": "0"}, "size": "quick", "repeats": 3,
            "warmup": 0, "budget_s": 10.0,
            "threads": {"torch": 2, "numpy_blas": "2 (openblas)", "numba": None},
            "matmul_n": 512, "ceiling_gflops": {"numpy": 10.0, "torch": 12.0}}
    rows = [{"name": "train x", "kind": "train", "status": "skipped",
             "note": "minicnn has no minicnn.optim.SGD yet", "ratio": None,
             "minicnn": None, "torch": None},
            {"name": "conv2d y", "kind": "op", "status": "ok", "note": "", "ratio": 0.5,
             "minicnn": {"median_s": 0.002, "gflops": 1.0, "peak_mb": None},
             "torch": {"median_s": 0.001, "gflops": 2.0, "peak_mb": None}}]
    text = report.format_table(meta, rows)
    assert "[1] train x: minicnn has no minicnn.optim.SGD yet" in text
    assert "2.00" in text and "0.50" in text
    assert math.isclose(report.geometric_means(rows)["op"], 0.5)


@pytest.mark.slow
def test_memory_child_measures_growth_over_an_import_only_baseline(torch):
    # a parent far bigger than its children: Linux keeps ru_maxrss across exec, and a
    # child that reported it would show the parent's peak, hence no growth at all
    ballast = np.ones(100_000_000, dtype=np.float32)           # 400 MB, touched
    base, err = memory.baseline_mb("quick", threads=1)
    assert err is None and base > 0
    # torch's first conv allocates tens of MB (kernel caches, workspace)
    peak, err = memory.peak_mb(TINY_CONV, "torch", "quick", threads=1)
    assert err is None and peak > base + 1
    del ballast


def test_measure_pauses_before_every_sample(monkeypatch):
    from benchmarks import harness
    slept = []
    monkeypatch.setattr(harness.time, "sleep", lambda s: slept.append(s))
    timings, errors = harness.measure({"minicnn": lambda: None, "torch": lambda: None},
                                      warmup=0, repeats=3, min_time=0.0, pause=0.25)
    assert not errors and len(timings["minicnn"].samples) == 3
    assert slept == [0.25] * 6              # 3 rounds x 2 sides


# ------------------------------------------------ the prepared GPU check (benchmarks/gpu.py)

def test_the_gpu_check_says_so_and_exits_3_without_a_gpu(capsys, monkeypatch):
    from benchmarks import gpu
    from minicnn import backend
    monkeypatch.setattr(backend, "_cupy", None)
    monkeypatch.setattr(backend, "_cupy_error", "no CUDA device was found")
    assert gpu.main(["--dry-run"]) == gpu.NO_GPU == 3
    assert "no GPU to check here (no CUDA device was found)" in capsys.readouterr().err


def test_the_gpu_check_runs_every_step_on_the_fake_gpu(tmp_path, capsys, monkeypatch):
    """Its CPU-side preparation cannot rot: --dry-run takes every step on fake_cupy."""
    from benchmarks import gpu
    from fake_cupy import install
    from minicnn.utils import opcheck
    install(monkeypatch)
    assert gpu.main(["--dry-run", "--json", str(tmp_path / "gpu.json")]) == 0
    out = capsys.readouterr().out
    for step in ("op cases", "training steps", "checkpoint", "cli", "timings"):
        assert any(line.startswith(step) and " ok " in line for line in out.splitlines()), out
    report = json.loads((tmp_path / "gpu.json").read_text())
    assert report["op cases"]["cases"] == len(opcheck.cases())
    assert set(report["op cases"]["max_abs_error"]) == {"float32", "float64"}
    assert len(report["training steps"]["gpu_losses"]) == 5
    assert report["cli"]["status"] == 0 and "--device" in report["cli"]["argv"]
    assert len(report["timings"]["rows"]) == 5


def test_the_gpu_check_reports_a_device_that_disagrees(capsys, monkeypatch):
    from benchmarks import gpu
    from fake_cupy import install
    install(monkeypatch)
    real = gpu.run_case_on

    def wrong_on_the_device(case, inputs, device, dtype):
        outs, grads = real(case, inputs, device, dtype)
        return ([o + 1 for o in outs] if device == "cuda" else outs), grads
    monkeypatch.setattr(gpu, "run_case_on", wrong_on_the_device)
    assert gpu.main(["--dry-run", "--only", "relu"]) == 1
    assert "op cases: relu" in capsys.readouterr().out


# ------------------------------------------------ the detector row (workloads.detector_workload)

DETECTOR = "inference fasterrcnn_resnet50_fpn 1 image 3x480x640"


def test_the_detector_row_is_in_the_suite():
    full = {w.name: w for w in workloads.all_workloads("full")}
    row = full[DETECTOR]
    assert row.kind == "inference" and row.needs == ("models.detection.fasterrcnn_resnet50_fpn",)
    assert row.params == dict(model="fasterrcnn_resnet50_fpn", N=1, input=[3, 480, 640],
                              min_size=800, max_size=1333)     # torchvision's defaults
    assert row.flops() is None
    quick = [w.name for w in workloads.all_workloads("quick")]
    assert DETECTOR + " (min_size 240, max_size 320)" in quick


def test_an_unavailable_side_leaves_the_other_timed_alone():
    """torchvision missing is not a failure: the row is ok, minicnn's side alone, the
    reason in the note; a workload without nominal FLOPs has no GFLOP/s."""
    def unavailable():
        raise harness.Unavailable("torchvision is not importable here")

    w = harness.Workload("alone", "inference", lambda: None, lambda: (lambda: None),
                         unavailable)
    row = run_workload(w, warmup=0, repeats=1, min_time=0.0, budget=None)
    assert row["status"] == "ok" and row["note"] == "torchvision is not importable here"
    assert row["torch"] is None and row["ratio"] is None and row["flops"] is None
    assert row["minicnn"]["gflops"] is None
    assert "[1] alone: torchvision is not importable here" in report.format_table(
        {"versions": {"minicnn": "0", "torch": "0"}, "size": "quick", "repeats": 1,
         "warmup": 0, "threads": {"torch": 1, "numpy_blas": "1"}, "matmul_n": 8,
         "ceiling_gflops": {"numpy": 1.0, "torch": 1.0}}, [row])


def test_dry_run_runs_each_side_once_and_reports_failures(capsys, monkeypatch):
    calls = []

    def broken():
        raise ValueError("bad shape")

    fake = [harness.Workload("fine", "op", lambda: 1, lambda: (lambda: calls.append("m")),
                             lambda: (lambda: calls.append("t"))),
            harness.Workload("torch broken", "op", lambda: 1, lambda: (lambda: None),
                             lambda: broken),
            harness.Workload("not yet", "op", lambda: 1, lambda: None, lambda: None,
                             needs=("models.no_such_model",))]
    monkeypatch.setattr(bench_main, "all_workloads", lambda size: fake)
    assert cli_main(["--dry-run"], prog="minicnn bench") == 1
    out = capsys.readouterr().out
    assert calls == ["m", "t"]
    assert "[1/3] fine: minicnn ok, torch ok" in out
    assert "[2/3] torch broken: minicnn ok, torch FAILED (ValueError: bad shape)" in out
    assert "[3/3] not yet: skipped, minicnn has no minicnn.models.no_such_model yet" in out
    assert "dry run: 3 workload(s), 1 failure(s)" in out


@pytest.mark.slow
def test_the_detector_row_dry_runs(capsys):
    """--quick --dry-run builds minicnn's fasterrcnn_resnet50_fpn and runs it once on the
    480x640 image (shrunk to 240x320 by the transform); torchvision's side runs too, or is
    said to be unavailable. Nothing is timed."""
    assert cli_main(["--quick", "--only", "fasterrcnn", "--dry-run"],
                    prog="minicnn bench") == 0
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if DETECTOR in l)
    assert "minicnn ok" in line
    assert "torch ok" in line or "torch unavailable (torchvision is not importable" in line


# ------------------------------------------------ the BLAS in the header (benchmarks/blas.py)

OPENBLAS_HASWELL = {"user_api": "blas", "internal_api": "openblas", "version": "0.3.31.188.0",
                    "architecture": "Haswell", "num_threads": 2,
                    "filepath": "/site-packages/numpy.libs/libscipy_openblas64_.so"}
PINNED_META = {"versions": {"minicnn": "0", "torch": "0"}, "size": "full", "repeats": 7,
               "warmup": 1, "threads": {"torch": 2, "numpy_blas": "2 (openblas)"},
               "matmul_n": 2048, "ceiling_gflops": {"numpy": 239.8, "torch": 141.4},
               "blas": {"library": "OpenBLAS", "version": "0.3.31.188.0",
                        "core_type": "Haswell", "threads": 2, "coretype_env": "Haswell",
                        "pinned": True},
               "ceiling_unpinned": {"numpy": 461.0, "core_type": "SkylakeX", "error": None}}


def test_blas_info_names_the_library_its_kernels_and_the_pin():
    from benchmarks import blas
    info = blas.blas_info({"OPENBLAS_CORETYPE": "Haswell"}, [OPENBLAS_HASWELL])
    assert info == PINNED_META["blas"]
    assert blas.blas_info({}, [OPENBLAS_HASWELL])["pinned"] is False
    assert blas.blas_info({"OPENBLAS_CORETYPE": ""}, [OPENBLAS_HASWELL])["pinned"] is False
    mkl = dict(OPENBLAS_HASWELL, internal_api="mkl", architecture=None, version="2024.0")
    info = blas.blas_info({"OPENBLAS_CORETYPE": "Haswell"}, [mkl])
    assert (info["library"], info["core_type"], info["pinned"]) == ("MKL", None, False)
    # nothing known (no threadpoolctl): the variable alone, and no claim about a pin
    info = blas.blas_info({"OPENBLAS_CORETYPE": "Haswell"}, [])
    assert info == {"library": None, "version": None, "core_type": None, "threads": None,
                    "coretype_env": "Haswell", "pinned": None}


def test_blas_info_without_threadpoolctl_says_core_type_unknown(monkeypatch):
    import sys
    from benchmarks import blas
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)      # import fails
    monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    info = blas.blas_info()
    assert info["library"] is None and info["core_type"] is None
    assert blas.describe(info) == "BLAS library unknown, core type unknown"
    assert blas.describe(dict(PINNED_META["blas"], core_type=None)) == (
        "OpenBLAS 0.3.31, core type unknown, pinned by OPENBLAS_CORETYPE=Haswell")
    assert harness.thread_report()["numpy_blas"] == "unknown"


def test_the_ceiling_line_says_the_kernels_the_pin_and_the_unpinned_figure():
    text = report.format_table(PINNED_META, [])
    assert ("ceiling, float32 matmul 2048^3: numpy 239.8 GFLOP/s (OpenBLAS 0.3.31 Haswell "
            "kernels, pinned by OPENBLAS_CORETYPE=Haswell; 461.0 GFLOP/s unpinned, SkylakeX "
            "kernels), torch 141.4 GFLOP/s") in text
    unpinned_failed = dict(PINNED_META, ceiling_unpinned={
        "numpy": None, "core_type": None, "error": "the unpinned child timed out after 300 s"})
    assert ("pinned by OPENBLAS_CORETYPE=Haswell; unpinned figure missing: the unpinned "
            "child timed out after 300 s), torch" in report.format_table(unpinned_failed, []))
    free = dict(PINNED_META, blas=dict(PINNED_META["blas"], coretype_env=None, pinned=False,
                                       core_type="SkylakeX"), ceiling_unpinned=None)
    assert "numpy 239.8 GFLOP/s (OpenBLAS 0.3.31 SkylakeX kernels), torch" in \
        report.format_table(free, [])


def test_the_unpinned_child_runs_without_the_variable_and_the_parent_keeps_it(monkeypatch):
    import os
    import subprocess
    from benchmarks import blas
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    seen = {}

    def fake_run(cmd, env, **kwargs):
        seen.update(cmd=cmd, env=env)
        answer = {"numpy": 461.0, "blas": dict(PINNED_META["blas"], core_type="SkylakeX")}
        return subprocess.CompletedProcess(cmd, 0, stdout=json.dumps(answer) + "\n", stderr="")
    monkeypatch.setattr(blas.subprocess, "run", fake_run)
    assert blas.unpinned_ceiling(2048, 5, 2) == {"numpy": 461.0, "core_type": "SkylakeX",
                                                  "error": None}
    assert "OPENBLAS_CORETYPE" not in seen["env"] and seen["env"]["OPENBLAS_NUM_THREADS"] == "2"
    assert seen["cmd"][1:] == ["-m", "benchmarks.blas", "--n", "2048", "--repeats", "5",
                               "--threads", "2"]
    assert os.environ["OPENBLAS_CORETYPE"] == "Haswell"           # the user's, untouched

    def failing(cmd, env, **kwargs):
        return subprocess.CompletedProcess(cmd, 1, stdout="", stderr="Traceback\nOSError: x\n")
    monkeypatch.setattr(blas.subprocess, "run", failing)
    assert blas.unpinned_ceiling(64, 1, 1) == {"numpy": None, "core_type": None,
                                               "error": "the unpinned child failed: OSError: x"}


def test_the_unpinned_child_answers_in_json():
    """The real child, on a tiny product (its figure is not checked, only its answer)."""
    import os
    from benchmarks import blas
    got = blas.unpinned_ceiling(32, 1, 1, environ=dict(os.environ, OPENBLAS_CORETYPE="Haswell"))
    assert got["error"] is None and got["numpy"] > 0
    assert got["core_type"] is None or isinstance(got["core_type"], str)


@pytest.mark.parametrize("variable", ["Haswell", None])
def test_the_header_measures_the_unpinned_ceiling_only_under_a_pin(monkeypatch, variable):
    from benchmarks import blas
    calls = []
    if variable:
        monkeypatch.setenv("OPENBLAS_CORETYPE", variable)
    else:
        monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    monkeypatch.setattr(harness, "matmul_gflops", lambda n, repeats: {"numpy": 1.0, "torch": 2.0})
    real_blas_info = blas.blas_info
    monkeypatch.setattr(blas, "blas_info", lambda: real_blas_info(None, [OPENBLAS_HASWELL]))
    monkeypatch.setattr(blas, "unpinned_ceiling", lambda *a: calls.append(a) or {
        "numpy": 3.0, "core_type": "SkylakeX", "error": None})
    args = bench_main.build_parser("minicnn bench").parse_args(["--threads", "2"])
    args.warmup, args.repeats, args.min_time, args.budget, args.matmul_n, args.pause = (
        1, 7, 0.05, 60.0, 2048, 0.2)
    meta = bench_main.measure_header(args, lambda message: None)
    assert meta["ceiling_gflops"] == {"numpy": 1.0, "torch": 2.0}
    assert meta["blas"]["pinned"] is bool(variable)
    if variable:
        assert calls == [(2048, 7, 2)]
        assert meta["ceiling_unpinned"]["numpy"] == 3.0
    else:
        assert calls == [] and meta["ceiling_unpinned"] is None


# ------------------------------------------------ --compare-algorithms (benchmarks/algorithms.py)

def test_comparisons_take_the_suites_3x3_stride_1_convolutions():
    from benchmarks import algorithms
    suite = [c.name for c in algorithms.comparisons("quick")]
    assert suite == ["conv2d 4x64x32x32 k64x3x3 s1 p1", "conv2d 4x128x16x16 k128x3x3 s1 p1",
                     "conv2d 4x256x8x8 k256x3x3 s1 p1"]          # not the 5x5 or 11x11 ones
    everything = algorithms.comparisons("quick", scaling=True)
    shapes = [tuple(c.params[k] for k in "NCHWK") for c in everything]
    assert len(shapes) == len(set(shapes)) > len(suite)           # the sweeps, each shape once
    assert any(c.name.startswith("scaling side: ") for c in everything)
    c = everything[0]
    assert c.sides == ("im2col", "winograd_2x2", "winograd_4x4", "auto", "torch")
    assert c.flops == 3 * 2 * 4 * 64 * 64 * 9 * 32 * 32


def test_each_column_runs_the_algorithm_it_names(monkeypatch):
    """The minicnn columns force conv_algorithm on conv2d; torch's call gets none."""
    import minicnn.nn.functional as mf          # what the workloads call: lib.nn.functional
    from benchmarks import algorithms
    real, asked = mf.conv2d, []

    def spy(*args, **kwargs):
        asked.append(kwargs.get("conv_algorithm"))
        return real(*args, **kwargs)
    monkeypatch.setattr(mf, "conv2d", spy)
    c = algorithms._comparison("tiny", dict(op="conv2d", N=1, C=2, H=6, W=6, K=3, kernel=3,
                                            stride=1, padding=1))
    for side in c.sides:
        c.setup(side)()
    # each setup calls conv2d once without grad (the output's shape), and run() once
    assert asked == [a for a in algorithms.ALGORITHMS for _ in range(2)]


def _fake_compare_timings(monkeypatch, ms):
    """harness.measure answers ``ms`` (per side) without running or timing anything."""
    def fake_measure(runs, warmup, repeats, min_time, budget=None, pause=0.0):
        return {side: harness.Timing(ms[side] / 1e3, [ms[side] / 1e3] * repeats, 1)
                for side in runs}, {}
    monkeypatch.setattr(harness, "measure", fake_measure)


def test_compare_names_the_fastest_algorithm_and_the_ratio(monkeypatch):
    from benchmarks import algorithms
    _fake_compare_timings(monkeypatch, {"im2col": 8.0, "winograd_2x2": 6.0,
                                        "winograd_4x4": 4.0, "auto": 3.0, "torch": 2.0})
    c = algorithms._comparison("tiny", dict(op="conv2d", N=1, C=2, H=6, W=6, K=3, kernel=3,
                                            stride=1, padding=1))
    row = algorithms.compare(c, warmup=0, repeats=3, min_time=0.0, budget=None)
    assert row["status"] == "ok" and row["note"] == ""
    assert row["best"] == "winograd_4x4"            # "auto" runs one of the others
    assert row["ratio"] == pytest.approx(0.5)
    assert row["times"]["torch"]["median_s"] == pytest.approx(2e-3)
    assert row["times"]["im2col"]["gflops"] == pytest.approx(c.flops / 8e-3 / 1e9)
    assert row["auto_choice"] in ("im2col", "winograd_2x2", "winograd_4x4", "winograd")
    text = report.format_algorithms(PINNED_META, [row])
    assert "torch/best" in text and "OPENBLAS_CORETYPE=Haswell" in text
    line = next(l for l in text.splitlines() if l.startswith("tiny"))
    assert line.split()[1:8] == ["8.00", "6.00", "4.00", "3.00", "2.00", "0.50", "winograd_4x4"]
    assert "geometric mean of torch/best: 0.50" in text


def test_auto_choice_is_what_conv2d_runs_by_default(monkeypatch):
    """The "auto runs" column asks the rule conv2d itself applies, with the same shape."""
    import minicnn.functional.conv as conv
    from benchmarks import algorithms
    asked = []

    def rule(x_shape, w_shape, stride, dilation, groups, padding=(1, 1)):
        asked.append((x_shape, w_shape, stride, dilation, groups, padding))
        return ("winograd", 4)
    monkeypatch.setattr(conv, "auto_algorithm", rule)
    params = dict(op="conv2d", N=2, C=8, H=6, W=5, K=4, kernel=3, stride=1, padding=0)
    assert algorithms.auto_choice(params) == "winograd_4x4"
    assert asked == [((2, 8, 6, 5), (4, 8, 3, 3), (1, 1), (1, 1), 1, (0, 0))]
    monkeypatch.setattr(conv, "auto_algorithm", lambda *a, **k: ("im2col", None))
    assert algorithms.auto_choice(params) == "im2col"


def test_compare_reports_a_column_that_fails(monkeypatch):
    from benchmarks import algorithms

    def refuses():
        raise ValueError("conv2d: conv_algorithm='winograd_4x4' needs a 3x3 kernel")
    c = algorithms.Comparison("broken", {}, 1.0, {"im2col": lambda: (lambda: None),
                                                  "winograd_4x4": refuses,
                                                  "torch": lambda: (lambda: None)})
    row = algorithms.compare(c, warmup=0, repeats=1, min_time=0.0, budget=None)
    assert row["status"] == "error" and row["best"] == "im2col"
    assert row["times"]["winograd_4x4"] is None
    assert row["note"] == ("winograd_4x4: setup: ValueError: conv2d: "
                           "conv_algorithm='winograd_4x4' needs a 3x3 kernel")
    assert "[1] broken: winograd_4x4: setup" in report.format_algorithms(PINNED_META, [row])


def test_cli_compare_algorithms_prints_the_table_and_writes_json(tmp_path, capsys,
                                                                 monkeypatch):
    from benchmarks import blas
    _fake_compare_timings(monkeypatch, {"im2col": 5.0, "winograd_2x2": 4.0,
                                        "winograd_4x4": 3.0, "auto": 5.0, "torch": 6.0})
    monkeypatch.setattr(harness, "matmul_gflops", lambda n, repeats: {"numpy": 1.0, "torch": 2.0})
    monkeypatch.setattr(blas, "unpinned_ceiling", lambda *a: {"numpy": 3.0,
                                                              "core_type": "SkylakeX",
                                                              "error": None})
    out = tmp_path / "algorithms.json"
    rc = cli_main(["--compare-algorithms", "--quick", "--only", "4x256x8x8", "--threads", "1",
                   "--json", str(out)], prog="minicnn bench")
    text = capsys.readouterr().out
    assert rc == 0
    assert "conv2d 4x256x8x8 k256x3x3 s1 p1" in text and "winograd_4x4" in text
    data = json.loads(out.read_text())
    assert data["meta"]["algorithms"] == ["im2col", "winograd_2x2", "winograd_4x4", "auto"]
    assert data["meta"]["ceiling_gflops"] == {"numpy": 1.0, "torch": 2.0}
    assert "blas" in data["meta"] and "ceiling_unpinned" in data["meta"]
    [row] = data["results"]
    assert row["kind"] == "algorithms" and row["best"] == "winograd_4x4"
    assert row["ratio"] == pytest.approx(2.0)
    assert set(row["times"]) == {"im2col", "winograd_2x2", "winograd_4x4", "auto", "torch"}


def test_cli_compare_algorithms_dry_runs_every_column(capsys):
    assert cli_main(["--compare-algorithms", "--quick", "--only", "4x256x8x8", "--dry-run"],
                    prog="minicnn bench") == 0
    out = capsys.readouterr().out
    assert ("[1/1] conv2d 4x256x8x8 k256x3x3 s1 p1: im2col ok, winograd_2x2 ok, "
            "winograd_4x4 ok, auto ok, torch ok") in out


def test_cli_compare_algorithms_lists_and_refuses_memory(capsys):
    assert cli_main(["--compare-algorithms", "all", "--quick", "--list"],
                    prog="minicnn bench") == 0
    listed = capsys.readouterr().out.splitlines()
    assert "algorithms conv2d 4x64x32x32 k64x3x3 s1 p1" in listed
    assert any(line.startswith("algorithms scaling batch: ") for line in listed)
    assert cli_main(["--compare-algorithms", "--memory"], prog="minicnn bench") == 2
    assert "does not go with --compare-algorithms" in capsys.readouterr().err


# ------------------------------------------------ the segmentation and SSD rows

def test_the_segmentation_and_ssd_rows_are_in_the_suite():
    full = {w.name: w for w in workloads.all_workloads("full")}
    quick = {w.name: w for w in workloads.all_workloads("quick")}
    for rows, unet_side, fcn_side, image in ((full, 380, 256, "3x480x640"),
                                             (quick, 188, 64, "3x240x320")):
        unet = rows[f"inference unet batch 1 1x{unet_side}x{unet_side}"]
        fcn = rows[f"inference fcn8s batch 1 3x{fcn_side}x{fcn_side}"]
        ssd = rows[f"inference ssd300_vgg16 1 image {image}"]
        assert unet.needs == ("models.segmentation.unet",)
        assert fcn.needs == ("models.segmentation.fcn8s",)
        assert ssd.needs == ("models.detection.ssd300_vgg16",) and ssd.flops() is None
        assert all(w.kind == "inference" for w in (unet, fcn, ssd))


def test_flop_count_includes_transposed_convolutions(torch):
    def up(lib):
        return lib.nn.ConvTranspose2d(4, 2, kernel_size=2, stride=2)
    # every input pixel spreads a 2x2 patch over 2 channels: 2·(N·C·H·W)·K·KH·KW
    assert models.count_flops(up, (1, 4, 5, 5)) == 2 * 100 * 2 * 2 * 2


@pytest.mark.parametrize("name, kwargs, input_shape", [
    ("unet", dict(base_channels=4), (1, 1, 188, 188)),
    ("fcn8s", dict(base_channels=4, fc_channels=8, num_classes=3), (1, 3, 32, 32))])
def test_the_segmentation_twins_compute_what_minicnn_computes(torch, name, kwargs,
                                                               input_shape):
    """The torch side of a segmentation row is minicnn's model file run on torch, with
    minicnn's weights: the same function."""
    import minicnn
    build = workloads._torch_gets_minicnn_weights(
        lambda lib: getattr(models, name)(lib, **kwargs))
    ours, theirs = build(minicnn), build(torch)          # minicnn first, as the harness
    assert isinstance(theirs, torch.nn.Module)
    assert models.param_shapes(ours) == models.param_shapes(theirs)
    x = np.random.default_rng(0).standard_normal(input_shape, dtype=np.float32)
    with torch.no_grad(), minicnn.no_grad():
        expected = theirs.eval()(torch.from_numpy(x)).numpy()
        got = ours.eval()(minicnn.tensor(x)).numpy()
    assert got.shape == expected.shape == (1, kwargs.get("num_classes", 2)) + (
        (4, 4) if name == "unet" else (32, 32))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_fcn8s_twin_upsamples_bilinearly_as_minicnn(torch):
    """torch has no nn.init.bilinear_: the twin's fills the very same kernel."""
    import minicnn
    theirs = models.fcn8s(torch, base_channels=4, fc_channels=8, num_classes=3)
    ours = models.fcn8s(minicnn, base_channels=4, fc_channels=8, num_classes=3)
    np.testing.assert_array_equal(theirs.upscore8.weight.detach().numpy(),
                                  ours.upscore8.weight.numpy())
    assert not theirs.upscore8.weight.requires_grad


@pytest.mark.slow
def test_the_segmentation_and_ssd_rows_dry_run(capsys):
    assert cli_main(["--quick", "--only", "unet,fcn8s,ssd300", "--dry-run"],
                    prog="minicnn bench") == 0
    out = capsys.readouterr().out
    for name in ("unet batch 1 1x188x188", "fcn8s batch 1 3x64x64"):
        assert "minicnn ok, torch ok" in next(l for l in out.splitlines() if name in l)
    ssd = next(l for l in out.splitlines() if "ssd300_vgg16" in l)
    assert "minicnn ok" in ssd
    assert "torch ok" in ssd or "torch unavailable (torchvision is not importable" in ssd
