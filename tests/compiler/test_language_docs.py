# ---------------------------------------------------------------------------------------------
# docs/language.md against the registries it documents: every operator of pcdsl/ops and every
# train setting must have its row, so adding one without its docs fails here.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import re
from pathlib import Path

import pytest

from pcdsl.ops import REGISTRY
from pcdsl.parse.train_block import CALL_SETTINGS, VALUE_SETTINGS

DOC = (Path(__file__).resolve().parents[2] / "docs" / "language.md").read_text(encoding="utf-8")
ROWS = [line for line in DOC.splitlines() if line.startswith("| `")]


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_operator_has_a_row_with_its_options(name):
    op = REGISTRY[name]
    row = next((r for r in ROWS if re.match(rf"\| `{name}\(", r)), None)
    assert row is not None, f"docs/language.md has no operator row for `{name}`"
    for option in op.options:
        assert f"{option.name}=" in row, f"`{name}`'s row does not show option `{option.name}`"


@pytest.mark.parametrize("name", sorted(set(CALL_SETTINGS) | set(VALUE_SETTINGS)))
def test_every_train_setting_has_a_row(name):
    assert any(re.search(rf"`{name}[( ]", r) for r in ROWS), f"docs/language.md has no row for `{name}`"
