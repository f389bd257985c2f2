# ---------------------------------------------------------------------------------------------
# A Pygments lexer for .pc model files, registered under the entry point `pygments.lexers`, so
# that `pygmentize -l pcdsl FILE.pc` and documentation tools highlight the language.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import re

from pygments.lexer import RegexLexer, bygroups, include, words
from pygments.token import Comment, Keyword, Name, Number, Operator, Punctuation, String, Text

from pcdsl.editor.vocabulary import CONSTANTS, COST_NAMES, KEYWORDS, OPERATORS, SETTINGS


class PcdslLexer(RegexLexer):
    name = "pcdsl"
    aliases = ["pcdsl", "pc"]
    filenames = ["*.pc"]
    mimetypes = ["text/x-pcdsl"]

    @staticmethod
    def analyse_text(text):
        """`*.pc` is pkg-config's suffix too: a `model NAME {` block says it is ours."""
        return 0.9 if re.search(r"^\s*model\s+[A-Za-z_]\w*\s*\{", text, re.MULTILINE) else 0.0

    # train settings are words of the train block only: `pad` is a setting there and a conv
    # option in the model block, `normalize` a setting and nothing else
    tokens = {
        "root": [
            (r"\b(model)(\s+)([A-Za-z_]\w*)", bygroups(Keyword, Text, Name)),     # (a model may be named train)
            (r"\b(train)(\s*)(\{)", bygroups(Keyword, Text, Punctuation), "train"),
            include("common"),
        ],
        "train": [
            (r"\}", Punctuation, "#pop"),
            (words(SETTINGS, suffix=r"\b"), Name.Function),
            include("common"),
        ],
        "common": [
            (r"#[^\n]*", Comment.Single),
            (r"\s+", Text),
            (words(KEYWORDS, suffix=r"\b"), Keyword),
            (words(COST_NAMES, suffix=r"\b"), Name.Builtin),
            (words(OPERATORS, suffix=r"\b"), Name.Builtin),
            (words(CONSTANTS, suffix=r"\b"), Keyword.Constant),
            (r'"[^"\n]*"', String.Double),
            (r"([0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)([eE][-+]?[0-9]+)?", Number),
            (r"[A-Za-z_][A-Za-z0-9_]*", Name),
            (r"\*\*|>=|[-+*/~=]", Operator),
            (r"[{}()\[\],:]", Punctuation),
        ],
    }
