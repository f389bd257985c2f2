# ---------------------------------------------------------------------------------------------
# `pcdsl fmt` on every shipped, example and test model: the layout is idempotent, the file
# parses to the same tree (Lark compares rules and tokens), compiles to the same module (the
# generated code with its comments, which quote the source lines, and the source hash left
# out), and keeps every comment; a messy file gets exactly the pinned layout.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

from pathlib import Path

import pytest

from helpers import ROOT, run_cli
from pcdsl.diagnostics import PcdslError
from pcdsl.fmt import format_text
from pcdsl.parse.parser import parse_text
from pcdsl.pipeline import compile_text

FILES = sorted((ROOT / "models").glob("*.pc")) + sorted((ROOT / "examples").glob("*.pc")) + \
    sorted((ROOT / "tests" / "models").glob("*.pc")) + sorted((ROOT / "tests" / "compiler" / "valid").glob("*.pc")) + \
    [ROOT / "tests" / "golden" / "tiny_pcn.pc"]


def _code(text: str) -> str:
    """The generated module without its comments and source hash (which quote the file)."""
    source = compile_text(text, "m.pc").source
    return "\n".join(line for line in source.splitlines()
                     if not line.lstrip().startswith("#") and "SOURCE_SHA256" not in line)


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_fmt_keeps_the_meaning_and_is_idempotent(path: Path):
    text = path.read_text(encoding="utf-8")
    formatted = format_text(text)
    assert format_text(formatted) == formatted
    assert parse_text(formatted) == parse_text(text)
    assert _code(formatted) == _code(text)
    assert sorted(l.strip() for l in text.splitlines() if "#" in l and l.strip().startswith("#")) == \
        sorted(l.strip() for l in formatted.splitlines() if l.strip().startswith("#"))


MESSY = """# a model written in a hurry
model   m{
size S=8
    input x:[1,S,S]   # the image
  label y :[3]
state h1:[2,S/2,S/2]>=0~relu(maxpool(conv(x,2,k = 3,pad=1)+bias,2))
  state h2 : [4] >=0 ~ relu(dense(flatten(h1),4)
       + bias)   # a statement over two lines
  output o:[3]~dense(h2,3)+bias


  energy sparse = 0.1*sum(h2**2) - sum(h2*-1)
  cost cross_entropy( o , y )
}
train{ep(beta=0.05,steps=4)
  sgd(lr = 0.1)
normalize(mean=[0.5], std=[ 0.25 ])
}
"""

CANONICAL = """# a model written in a hurry
model m {
  size S = 8
  input  x  : [1, S, S]  # the image
  label  y  : [3]
  state  h1 : [2, S/2, S/2] >= 0 ~ relu(maxpool(conv(x, 2, k=3, pad=1) + bias, 2))
  state  h2 : [4]           >= 0 ~ relu(dense(flatten(h1), 4) + bias)  # a statement over two lines
  output o  : [3]                ~ dense(h2, 3) + bias

  energy sparse = 0.1 * sum(h2**2) - sum(h2 * -1)
  cost cross_entropy(o, y)
}
train {
  ep(beta=0.05, steps=4)
  sgd(lr=0.1)
  normalize(mean=[0.5], std=[0.25])
}
"""


def test_a_messy_file_gets_the_pinned_layout():
    assert format_text(MESSY) == CANONICAL
    assert parse_text(CANONICAL) == parse_text(MESSY)


def test_the_command_rewrites_checks_and_refuses_what_does_not_parse(tmp_path):
    path = tmp_path / "m.pc"
    path.write_text(MESSY)
    check = run_cli("fmt", "--check", path)
    assert check.exit_code == 1 and "would reformat" in check.output and path.read_text() == MESSY
    assert run_cli("fmt", path).exit_code == 0 and path.read_text() == CANONICAL
    assert run_cli("fmt", "--check", path).exit_code == 0
    broken = tmp_path / "broken.pc"
    broken.write_text("model m {\n  state h ~ relu(\n")
    refused = run_cli("fmt", broken)
    assert refused.exit_code == 1 and "error[E003]" in refused.output and "broken.pc:2" in refused.output
    assert broken.read_text() == "model m {\n  state h ~ relu(\n"
    with pytest.raises(PcdslError):
        format_text("model m { $ }")


def test_signs_stay_signs():
    text = ("model m {\n  input x : [4]\n  label y : [2]\n  state h : [3] >= +0 ~ relu(dense(x, 3))\n"
            "  output o : [2] ~ dense(h, 2)\n  cost cross_entropy(o, y)\n}\ntrain {\n  seed -1\n}\n")
    formatted = format_text(text)
    assert ">= +0 ~" in formatted and "  seed -1\n" in formatted
    assert parse_text(formatted) == parse_text(text)


def test_statements_sharing_a_line_get_one_line_each():
    one_line = ("model m { input x : [4] label y : [2] state h : [3] >= 0 ~ relu(dense(x, 3)) "
                "output o : [2] ~ dense(h, 2) cost\n cross_entropy(o, y) }\n"
                "train { ep(beta=0.1) sgd(lr=0.1) batch 32 precision float32 }\n")
    assert format_text(one_line) == (
        "model m {\n  input  x : [4]\n  label  y : [2]\n  state  h : [3] >= 0 ~ relu(dense(x, 3))\n"
        "  output o : [2]      ~ dense(h, 2)\n  cost cross_entropy(o, y)\n}\ntrain {\n"
        "  ep(beta=0.1)\n  sgd(lr=0.1)\n  batch 32\n  precision float32\n}\n")
