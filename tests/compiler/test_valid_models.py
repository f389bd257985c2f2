# ---------------------------------------------------------------------------------------------
# One semantic check per rule, each with a valid and an invalid model file.
#
# For every invalid/*.pc of a semantic check (E1xx-E4xx), valid/ holds the same model with the
# mistake corrected, under the same name: it must compile, and its generated module must run
# (executed from source text, as the runtime loads it) and build a torch Model. Pairing by name
# is the mapping from code to valid model; the pair must differ in a few lines only, so the valid
# file really is the corrected invalid one.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import difflib

import pytest
import torch

from pcdsl.runtime.loading import load_model_class

from pcdsl.diagnostics import messages
from pcdsl.pipeline import compile_file

from .cases import INVALID_DIR, VALID_DIR, invalid_cases, is_semantic, valid_files

VALID = valid_files()
SEMANTIC_CASES = [c for c in invalid_cases() if is_semantic(c.code)]


def _model_lines(path) -> list[str]:
    """The model text without the leading comment lines (expectation, hint, description)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    return lines


# -- the mapping ------------------------------------------------------------------------------
def test_every_semantic_code_has_a_valid_and_an_invalid_model():
    paired = {c.code for c in SEMANTIC_CASES if (VALID_DIR / c.path.name).exists()}
    assert paired == {code for code in messages.MESSAGES if is_semantic(code)}


@pytest.mark.parametrize("case", SEMANTIC_CASES, ids=lambda c: c.id)
def test_each_semantic_invalid_model_has_its_valid_counterpart(case):
    assert (VALID_DIR / case.path.name).exists()


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_model_is_the_invalid_one_corrected(path):
    invalid = INVALID_DIR / path.name
    assert invalid.exists(), f"{path.name} has no invalid counterpart"
    diff = [d for d in difflib.ndiff(_model_lines(invalid), _model_lines(path)) if d[:1] in "+-"]
    assert 0 < len(diff) <= 6, "\n".join(diff)


# -- the valid models compile and their modules run -------------------------------------------
@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_model_compiles_and_its_module_imports(path):
    compiled = compile_file(path)
    model = load_model_class(compiled.source, module_name=f"pcdsl_generated_{path.stem}")()
    assert isinstance(model, torch.nn.Module)
    assert sum(p.numel() for p in model.parameters()) == compiled.checked.parameter_count
