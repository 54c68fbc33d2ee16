"""The bench's data-parallel row (benchmarks/scaling.py): it runs on 1 and 2 ranks and its
figures add up (timings themselves belong to the bench, not to a test)."""
import json

import mpi_launch
import pytest


@mpi_launch.requires_mpi
def test_minicnn_bench_ranks_prints_the_scaling_table(tmp_path, capsys):
    from benchmarks import scaling
    from benchmarks.__main__ import cli_main
    out = tmp_path / "rows.json"
    assert scaling.main(["--ranks", "1,2", "--steps", "2", "--warmup", "0",
                         "--global-batch", "8", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "data-parallel scaling: lenet5 (61,706 parameters" in table
    rows = json.loads(out.read_text())
    assert [(r["ranks"], r["per_rank_batch"]) for r in rows] == [(1, 8), (2, 4)]
    for r in rows:
        assert r["step_ms"] == pytest.approx(r["compute_ms"] + r["exposed_ms"])
        assert r["steps_s"] == pytest.approx(1e3 / r["step_ms"])
        assert r["allreduce_ms"] >= 0
    assert rows[0]["speedup"] == 1.0
    assert cli_main(["--ranks", "0"], prog="minicnn bench") == 2
    assert "--ranks takes positive integers" in capsys.readouterr().err
