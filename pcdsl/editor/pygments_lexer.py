# ---------------------------------------------------------------------------------------------
# A Pygments lexer for .pc model files, registered under the entry point `pygments.lexers`, so
# that `pygmentize -l pcdsl FILE.pc` and documentation tools highlight the language.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import re

from pygments.lexer import RegexLexer, words
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

    tokens = {
        "root": [
            (r"#[^\n]*", Comment.Single),
            (r"\s+", Text),
            (words(KEYWORDS, suffix=r"\b"), Keyword),
            (words(COST_NAMES, suffix=r"\b"), Name.Builtin),
            (words(OPERATORS, suffix=r"\b"), Name.Builtin),
            (words(CONSTANTS, suffix=r"\b"), Keyword.Constant),
            (words(SETTINGS, suffix=r"\b"), Name.Function),
            (r'"[^"\n]*"', String.Double),
            (r"([0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)([eE][-+]?[0-9]+)?", Number),
            (r"[A-Za-z_][A-Za-z0-9_]*", Name),
            (r"\*\*|>=|[-+*/~=]", Operator),
            (r"[{}()\[\],:]", Punctuation),
        ],
    }
