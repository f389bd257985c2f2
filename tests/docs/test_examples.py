# ---------------------------------------------------------------------------------------------
# The models the documentation shows compile: every ```pcdsl block of docs/ that is a whole
# model file (it has a `model` block) passes the checker. Blocks that are one statement, shown
# to be added to a model, or a deliberate mistake followed by its diagnostic, are fragments.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import re

import pytest

from helpers import ROOT
from pcdsl.pipeline import compile_text

BLOCKS = [(path, match.group(1)) for path in sorted((ROOT / "docs").rglob("*.md"))
          for match in re.finditer(r"```pcdsl\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)
          if re.search(r"^\s*model\s+\w+\s*\{", match.group(1), flags=re.M)]


def test_the_docs_show_whole_models():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("path, text", BLOCKS, ids=lambda v: v.stem if hasattr(v, "stem") else "")
def test_each_whole_model_in_the_docs_compiles(path, text):
    compile_text(text, str(path.relative_to(ROOT)))
