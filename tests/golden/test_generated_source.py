# ---------------------------------------------------------------------------------------------
# Oracle: a reviewed copy of the generated module.
#
# tiny_pcn.expected.py was read line by line when it was pinned; any change to the generator's
# output shows up here as a diff to review. After an intended change, regenerate with
#     PCDSL_UPDATE_GOLDEN=1 python -m pytest tests/golden
# and review the diff before committing it.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import ast
import os
from pathlib import Path

from pcdsl.pipeline import compile_file

HERE = Path(__file__).resolve().parent


def _generate() -> str:
    # compile from a relative path so the header does not depend on where the checkout lives
    cwd = os.getcwd()
    os.chdir(HERE)
    try:
        return compile_file("tiny_pcn.pc").source
    finally:
        os.chdir(cwd)


def test_generated_source_is_pinned():
    expected_path = HERE / "tiny_pcn.expected.py"
    source = _generate()
    if os.environ.get("PCDSL_UPDATE_GOLDEN"):
        expected_path.write_text(source, encoding="utf-8")
    assert source == expected_path.read_text(encoding="utf-8")


def test_generation_is_deterministic():
    assert _generate() == _generate()


def test_generated_module_imports_only_torch():
    tree = ast.parse(_generate())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
    assert imported <= {"torch", "math"}
