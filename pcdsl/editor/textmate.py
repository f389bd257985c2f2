# ---------------------------------------------------------------------------------------------
# The TextMate grammar of .pc files (editors/vscode/syntaxes/pcdsl.tmLanguage.json), written
# from the language's vocabulary. The committed file must equal what this writes (a test checks
# it); regenerate with `python -m pcdsl.editor.textmate`.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import json
import sys
from pathlib import Path

from pcdsl.editor.vocabulary import CONSTANTS, COST_NAMES, KEYWORDS, OPERATORS, SETTINGS
from pcdsl.files import write_generated

TARGET = Path(__file__).resolve().parents[2] / "editors" / "vscode" / "syntaxes" / "pcdsl.tmLanguage.json"


NUMBER = r"\b([0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)([eE][-+]?[0-9]+)?\b"


def _words(names) -> str:
    return r"\b(" + "|".join(sorted(names, key=lambda n: (-len(n), n))) + r")\b"


def textmate_grammar() -> dict:
    return {
        "$schema": "https://raw.githubusercontent.com/martinring/tmlanguage/master/tmlanguage.json",
        "name": "pcdsl",
        "scopeName": "source.pcdsl",
        "fileTypes": ["pc"],
        "patterns": [
            {"name": "comment.line.number-sign.pcdsl", "match": "#.*$"},
            {"name": "string.quoted.double.pcdsl", "match": '"[^"\\n]*"'},
            # the train block: its settings are its words only (`pad` is a conv option elsewhere)
            # (TextMate matches a line at a time: the `{` may stand on the next line)
            {"begin": r"^\s*(train)\b", "end": r"\}",
             "beginCaptures": {"1": {"name": "keyword.control.block.pcdsl"}},
             "patterns": [
                 {"name": "comment.line.number-sign.pcdsl", "match": "#.*$"},
                 {"name": "string.quoted.double.pcdsl", "match": '"[^"\\n]*"'},
                 {"name": "entity.name.function.setting.pcdsl", "match": _words(SETTINGS)},
                 {"name": "constant.language.pcdsl", "match": _words(CONSTANTS)},
                 {"name": "constant.numeric.pcdsl", "match": NUMBER},
                 {"name": "keyword.operator.pcdsl", "match": r"\*\*|>=|[-+*/~=]"},
             ]},
            {"match": r"\b(model)\s+([A-Za-z_][A-Za-z0-9_]*)?",
             "captures": {"1": {"name": "keyword.control.block.pcdsl"},
                          "2": {"name": "entity.name.type.model.pcdsl"}}},
            {"match": r"\b(input|state|output|label|size|energy|def)\s+([A-Za-z_][A-Za-z0-9_]*)",
             "captures": {"1": {"name": "keyword.declaration.pcdsl"},
                          "2": {"name": "variable.other.declaration.pcdsl"}}},
            {"name": "keyword.other.pcdsl", "match": _words(KEYWORDS)},
            {"name": "support.function.cost.pcdsl", "match": _words(COST_NAMES)},
            {"name": "support.function.operator.pcdsl", "match": _words(OPERATORS)},
            {"name": "constant.language.pcdsl", "match": _words(CONSTANTS)},
            {"name": "constant.numeric.pcdsl", "match": NUMBER},
            {"name": "keyword.operator.pcdsl", "match": r"\*\*|>=|[-+*/~=]"},
        ],
    }


def grammar_text() -> str:
    return json.dumps(textmate_grammar(), indent=2) + "\n"


if __name__ == "__main__":
    write_generated(TARGET, grammar_text(), sys.argv[1:])
