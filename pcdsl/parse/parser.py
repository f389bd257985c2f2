# ---------------------------------------------------------------------------------------------
# A thin wrapper around Lark: load the grammar (package data, pcdsl/grammars/pcdsl.lark) once,
# parse text into a syntax tree with positions, and turn Lark's exceptions into pcdsl
# diagnostics (E002-E004).
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

from functools import lru_cache
from importlib import resources

import lark
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedToken

from ..diagnostics import PcdslError, Span, did_you_mean, messages

GRAMMAR = resources.files("pcdsl") / "grammars" / "pcdsl.lark"

# How token types read in "expected ..." lists.
_TOKEN_WORDS = {
    "NAME": "a name", "INT": "an integer", "NUMBER": "a number", "SIGNED_NUMBER": "a number",
    "STRING": "a string", "LBRACE": "`{`", "RBRACE": "`}`", "LPAR": "`(`", "RPAR": "`)`",
    "LSQB": "`[`", "RSQB": "`]`", "COMMA": "`,`", "COLON": "`:`", "EQUAL": "`=`", "TILDE": "`~`",
    "PLUS": "`+`", "MINUS": "`-`", "STAR": "`*`", "SLASH": "`/`", "MORETHAN": "`>`",
    "$END": "end of file",
}
# The statement keywords, for the hint when a statement starts with an unknown word.
_KEYWORDS = ("cost", "def", "energy", "input", "label", "output", "size", "state")


@lru_cache(maxsize=1)
def _parser() -> lark.Lark:
    return lark.Lark(GRAMMAR.read_text(encoding="utf-8"), parser="lalr",
                     propagate_positions=True, maybe_placeholders=True)


def _describe(token_type: str) -> str:
    if token_type in _TOKEN_WORDS:
        return _TOKEN_WORDS[token_type]
    if token_type.isupper() and token_type.isalpha():
        return f"`{token_type.lower()}`"          # keywords: MODEL -> `model`
    try:                                          # anonymous tokens (`>=`, `**`): their text
        pattern = _parser().get_terminal(token_type).pattern
    except KeyError:
        return f"`{token_type}`"
    return f"`{pattern.value}`" if isinstance(pattern, lark.lexer.PatternStr) else f"`{token_type}`"


def _expected(tokens) -> str:
    # closing brackets first: after a truncation, "expected `}`" is the one that matters most
    words = sorted({_describe(t) for t in tokens}, key=lambda w: (w not in ("`}`", "`)`", "`]`"), w))
    if len(words) > 8:
        words = words[:8] + ["..."]
    return ", ".join(words) if words else "nothing"


def parse_text(text: str) -> lark.Tree:
    """Parse a whole model file; raise PcdslError (not located) on a syntax error."""
    try:
        return _parser().parse(text)
    except UnexpectedCharacters as err:
        raise PcdslError(messages.UNEXPECTED_CHARACTER, Span.point(err.line, err.column),
                         char=text[err.pos_in_stream] if err.pos_in_stream < len(text) else "")
    except UnexpectedToken as err:
        token = err.token
        if token.type == "$END":
            # lark places $END on the last token: point just after it, not after trailing comments
            if token.end_line is not None and token.end_column is not None:
                line, column = token.end_line, token.end_column
            else:
                line, column = _end_position(text)
            raise PcdslError(messages.UNEXPECTED_END, Span.point(line, column),
                             expected=_expected(err.expected))
        previous = (err.token_history or [None])[-1]
        if set(err.expected) == {"TILDE"} and previous is not None and previous.type == "NAME":
            # `stat h : [3]` or a stray word: the parser took the name for the start of `NAME ~`,
            # but the mistake is the name itself
            raise PcdslError(messages.UNEXPECTED_TOKEN, Span(previous.line, previous.column,
                                                             previous.end_line, previous.end_column),
                             hint=did_you_mean(str(previous), _KEYWORDS) or
                             "a statement starts with a keyword (" + ", ".join(_KEYWORDS) + ") or `NAME ~`",
                             found=f"`{previous}`", expected="a statement keyword or `NAME ~ ...`")
        found = f"`{token.value}`" if token.value else _describe(token.type)
        span = Span(token.line, token.column, token.end_line or token.line,
                    token.end_column or token.column + 1)
        hint = None
        if "RBRACE" in err.expected and token.type == "NAME":
            hint = "a statement starts with a keyword (state, input, output, label, size, def, energy, cost) or `NAME ~`"
        raise PcdslError(messages.UNEXPECTED_TOKEN, span, hint=hint, found=found,
                         expected=_expected(err.expected))
    except UnexpectedEOF as err:
        line, column = _end_position(text)
        raise PcdslError(messages.UNEXPECTED_END, Span.point(line, column),
                         expected=_expected(err.expected))


def _end_position(text: str) -> tuple[int, int]:
    lines = text.split("\n")          # as the parser counts lines: at "\n" only
    if len(lines) > 1 and not lines[-1]:
        lines.pop()
    return len(lines), len(lines[-1].removesuffix("\r")) + 1
