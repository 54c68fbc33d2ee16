"""`minicnn gradcheck`: the user-facing report."""
import subprocess
import sys

import pytest

from minicnn import cli


def test_gradcheck_one_op_prints_table(capsys, torch):
    assert cli.main(["gradcheck", "--op", "matmul"]) == 0
    out = capsys.readouterr().out
    assert "matmul" in out and "pass" in out and "fwd f64" in out and "grad f32" in out
    assert "2 passed, 0 failed" in out


def test_gradcheck_without_torch_says_so(capsys):
    assert cli.main(["gradcheck", "--op", "exp", "--no-torch"]) == 0
    out = capsys.readouterr().out
    assert "finite-difference checks alone" in out


def test_unknown_op_is_an_error(capsys):
    assert cli.main(["gradcheck", "--op", "nope"]) == 2
    assert "unknown op 'nope'" in capsys.readouterr().err


def test_failure_gives_exit_status_1(monkeypatch, capsys):
    from minicnn.utils import opcheck
    import numpy as np
    import minicnn as mc
    opcheck.cases()           # load the registry first
    case = opcheck.register("broken_double", "deliberately wrong", lambda r: [r.standard_normal(3)],
                            lambda t: t * 2, lambda t: t * 3)
    try:
        assert cli.main(["gradcheck", "--op", "broken_double"]) == 1
        assert "FAIL" in capsys.readouterr().out
    finally:
        opcheck._REGISTRY.pop("broken_double")
    del case, np, mc


def test_python_dash_m_entry_point():
    run = subprocess.run([sys.executable, "-m", "minicnn", "gradcheck", "--op", "exp"],
                         capture_output=True, text=True)
    assert run.returncode == 0 and "exp" in run.stdout


@pytest.mark.parametrize("command", [[], ["train"], ["summary"], ["gradcheck"]])
def test_help_is_plain_text(command, capsys):
    """--help is read in a terminal: no reST markup (``name``) from docstrings."""
    try:
        status = cli.main(command + ["--help"])     # sub-commands with their own parser
    except SystemExit as exc:                       # argparse's own exit
        status = exc.code
    assert status == 0
    text = capsys.readouterr().out
    assert "usage: minicnn" in text and "``" not in text
