"""The portability rule of ARCHITECTURE.md, enforced: inside ``minicnn/functional/`` and the
portable half of ``kernels/`` no NumPy function touches data, so a CuPy array is never pulled
to the host silently. Only dtypes and types may be named through ``np.``.

Kernel modules that are CPU fast paths (``numba_*.py``, or any that imports numba) are exempt
(they are selected only for NumPy arrays); everything else must go through ``xp``.
"""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
ALLOWED = {
    # dtypes and scalar types
    "dtype", "result_type", "promote_types", "can_cast", "finfo", "iinfo",
    "float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16",
    "uint32", "uint64", "bool_",
    "integer", "floating", "number", "signedinteger", "unsignedinteger", "generic",
    "ndarray",  # isinstance checks
    # constants
    "inf", "nan", "pi", "e", "newaxis",
}


def _portable_files():
    files = sorted((ROOT / "minicnn" / "functional").glob("*.py"))
    for path in sorted((ROOT / "kernels").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if (path.name.startswith("numba_") or "import numba" in text
                or "from numba" in text):
            continue          # CPU fast path
        files.append(path)
    return files


def _numpy_aliases(tree):
    aliases = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "numpy":
                    aliases.add(a.asname or "numpy")
    return aliases


def _label(path):
    return str(path.relative_to(ROOT)) if ROOT in path.parents else path.name


def violations(path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    aliases = _numpy_aliases(tree)
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "numpy":
            names = {a.name for a in node.names}
            if names - ALLOWED:
                bad.append(f"{_label(path)}:{node.lineno}: from numpy import {', '.join(sorted(names - ALLOWED))}")
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in aliases and node.attr not in ALLOWED):
            bad.append(f"{_label(path)}:{node.lineno}: {node.value.id}.{node.attr}")
    return bad


def test_rule_catches_a_violation(tmp_path):
    sample = tmp_path / "op.py"
    sample.write_text("import numpy as np\n\ndef f(x):\n    return np.maximum(x, 0)\n"
                      "def g(x):\n    return x.astype(np.float32)\n")
    assert violations(sample) == ["op.py:4: np.maximum"]


@pytest.mark.parametrize("path", _portable_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_numpy_calls_on_data(path):
    bad = violations(path)
    assert not bad, "use xp = backend.get_array_module(x) instead of:\n" + "\n".join(bad)
