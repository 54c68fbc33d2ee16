"""The README's promises: its two commands exist, CI runs the test one, and CI can't pass
with the torch comparisons skipped."""
import os
import pathlib
import subprocess
import sys


ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import readme_commands  # noqa: E402


def test_readme_opens_with_main_and_test_commands():
    main, test = readme_commands.commands()
    assert "minicnn train" in main and "pip install" in main
    assert "pytest" in test and ".[test]" in test
    text = (ROOT / "README.md").read_text()
    # they open the README: nothing but the title and a line of prose before them
    assert text.index(main) < text.index(test) < 1200


def test_ci_runs_the_readme_test_command_and_requires_torch():
    script = (ROOT / ".ci" / "run").read_text()
    _, test = readme_commands.commands()
    commands = [line.strip() for line in script.splitlines()
                if line.strip() and not line.lstrip().startswith(("#", "set ", "cd ", "export "))]
    assert commands == [test], f".ci/run runs {commands}, the README says {test!r}"
    assert "MINICNN_REQUIRE_TORCH=1" in script
    assert os.access(ROOT / ".ci" / "run", os.X_OK)


def test_skipped_torch_comparison_fails_the_run_when_torch_is_required(tmp_path):
    # a tiny suite whose only test asks for torch but skips: with the flag it must fail
    (tmp_path / "conftest.py").write_text((ROOT / "tests" / "conftest.py").read_text())
    (tmp_path / "test_x.py").write_text(
        "import pytest\n\ndef test_t():\n    pytest.skip('PyTorch is not installed')\n")
    env = dict(os.environ, MINICNN_REQUIRE_TORCH="1", PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                         cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.returncode != 0, run.stdout
    assert "torch comparison(s) were skipped" in run.stdout
    env["MINICNN_REQUIRE_TORCH"] = "0"
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                         cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout


def test_readme_python_examples_run():
    import re
    blocks = re.findall(r"```python\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S)
    assert blocks
    # the first block is a complete program; the Sigmoid one is an excerpt of
    # minicnn/functional/activation.py and must stay true to it
    namespace = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    assert namespace["loss"].item() > 0
    source = (ROOT / "minicnn" / "functional" / "activation.py").read_text()
    # inline comments added for the reader (two spaces then #) are not in the source
    excerpt = [re.sub(r"\s{2,}#.*$", "", line) for line in blocks[1].splitlines()]
    for line in excerpt:
        assert line.strip() in source, f"README excerpt no longer in activation.py: {line}"


def test_readme_training_excerpt_names_what_exists():
    """The Training section's excerpt (GoogLeNet with auxiliary losses) is a fragment, not
    a program; it must still compile and name the real API."""
    import inspect
    import re

    from minicnn import train
    blocks = re.findall(r"```python\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S)
    excerpt = next(b for b in blocks if "Classification" in b)
    compile(excerpt, "README.md", "exec")
    exec(excerpt.splitlines()[0], {})                   # the import line runs
    assert "aux_weight" in inspect.signature(train.Classification).parameters
    assert "task" in inspect.signature(train.Trainer).parameters
