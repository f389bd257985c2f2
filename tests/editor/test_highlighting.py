# ---------------------------------------------------------------------------------------------
# Highlighting: the Pygments lexer (registered as an entry point) tokenises every model of the
# repository without an error token and classifies the language's words as the compiler defines
# them; the VS Code extension's TextMate grammar is the one written from the same vocabulary,
# its patterns compile, and the extension's manifest points at files that exist.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import json
import re
from importlib.metadata import entry_points

import pytest
from pygments.lexers import get_lexer_by_name, get_lexer_for_filename
from pygments.token import Comment, Error, Keyword, Name, Number

from helpers import ROOT
from pcdsl.editor.pygments_lexer import PcdslLexer
from pcdsl.editor.textmate import TARGET, grammar_text, textmate_grammar
from pcdsl.editor.vocabulary import KEYWORDS, OPERATORS
from pcdsl.ops import REGISTRY
from pcdsl.parse.parser import _KEYWORDS

FILES = sorted((ROOT / "models").glob("*.pc")) + sorted((ROOT / "examples").glob("*.pc")) + \
    sorted((ROOT / "tests" / "models").glob("*.pc"))
VSCODE = ROOT / "editors" / "vscode"


def test_the_lexer_is_registered_and_found():
    assert "pcdsl" in {e.name for e in entry_points(group="pygments.lexers")}
    assert isinstance(get_lexer_by_name("pcdsl"), PcdslLexer)
    text = (ROOT / "models" / "mlp_digits.pc").read_text()
    assert isinstance(get_lexer_for_filename("m.pc", code=text), PcdslLexer)   # not pkg-config's


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_every_model_lexes_without_an_error_token(path):
    tokens = list(PcdslLexer().get_tokens(path.read_text()))
    assert not [value for kind, value in tokens if kind in Error]
    assert "".join(value for _, value in tokens).rstrip("\n") == path.read_text().rstrip("\n")


def test_words_are_classified_as_the_compiler_defines_them():
    text = (ROOT / "models" / "vgg10_imagenet.pc").read_text()
    kinds = {}
    for kind, value in PcdslLexer().get_tokens(text):
        kinds.setdefault(value, kind)
    assert kinds["model"] in Keyword and kinds["state"] in Keyword and kinds["cost"] in Keyword
    assert kinds["relu"] in Name.Builtin and kinds["dense"] in Name.Builtin and kinds["cross_entropy"] in Name.Builtin
    assert kinds["ep"] in Name.Function and kinds["sgd"] in Name.Function
    assert kinds["224"] in Number and kinds["h10"] is Name
    assert any(kind in Comment for kind, _ in PcdslLexer().get_tokens(text))
    assert set(_KEYWORDS) <= set(KEYWORDS) and set(OPERATORS) == set(REGISTRY)


def test_settings_are_settings_in_the_train_block_only():
    text = "model m {\n  input x : [3, 8, 8]\n  state h : [4, 8, 8] ~ conv(x, 4, k=3, pad=1)\n}\n" \
           "train {\n  pad 4\n  sgd(lr=0.1)\n}\n"
    pads = [kind for kind, value in PcdslLexer().get_tokens(text) if value == "pad"]
    assert pads[0] is Name and pads[1] in Name.Function                  # a conv option, then a setting
    assert [kind for kind, value in PcdslLexer().get_tokens(text) if value == "sgd"] == [Name.Function]
    named_train = text.replace("model m {", "model train {")              # a model may be named train
    assert [kind for kind, value in PcdslLexer().get_tokens(named_train) if value == "pad"][0] is Name
    train_block = next(r for r in textmate_grammar()["patterns"] if "begin" in r)
    assert re.search(train_block["begin"], "train") and not re.search(train_block["begin"], "model train {")


def test_the_textmate_grammar_is_the_one_written_from_the_vocabulary():
    assert TARGET.read_text(encoding="utf-8") == grammar_text(), "regenerate: python -m pcdsl.editor.textmate"
    def patterns(rules):
        for rule in rules:
            yield from (rule[key] for key in ("match", "begin", "end") if key in rule)
            yield from patterns(rule.get("patterns", []))
    for pattern in patterns(textmate_grammar()["patterns"]):
        re.compile(pattern)
    words = json.dumps(textmate_grammar())
    assert all(f"|{op}|" in words or f"({op}|" in words or f"|{op})" in words for op in REGISTRY)


def test_the_extension_manifest_points_at_its_files():
    manifest = json.loads((VSCODE / "package.json").read_text())
    language = manifest["contributes"]["languages"][0]
    assert language["extensions"] == [".pc"]
    assert (VSCODE / language["configuration"]).exists()
    grammar = manifest["contributes"]["grammars"][0]
    assert (VSCODE / grammar["path"]).resolve() == TARGET and grammar["scopeName"] == textmate_grammar()["scopeName"]
    json.loads((VSCODE / "language-configuration.json").read_text())
