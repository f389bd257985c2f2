# ---------------------------------------------------------------------------------------------
# User text in generated code: only ever as an escaped literal or a neutralised comment.
#
# A model file's name, its model name and the source lines quoted in comments come from the
# user. A string literal has its quotes, backslashes and control characters escaped; a
# comment or docstring line has every character that could end it (a newline, a carriage
# return, a form feed, a null, any other non-printable character, and in docstrings the quote)
# replaced by its escape, so no text from a model file can become code.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import json


def literal(text: str) -> str:
    """A double-quoted Python string literal with the value `text` (JSON's escapes are Python's;
    non-ASCII characters stay as they are, control characters are escaped)."""
    return json.dumps(str(text), ensure_ascii=False)


def _escaped(char: str) -> str:
    return char if char.isprintable() else char.encode("unicode_escape").decode("ascii")


def comment(text: str) -> str:
    """`text` as the content of one `#` comment line."""
    return "".join(_escaped(c) for c in text)


def docstring_line(text: str) -> str:
    """`text` as one line inside a triple-quoted docstring."""
    return comment(text).replace("\\", "\\\\").replace('"', '\\"')


def signed_sum(terms: list[str]) -> str:
    """Printed summands joined with + and -: ["a", "-b", "c"] -> "a - b + c"."""
    text = ""
    for term in terms:
        if not text:
            text = term
        elif term.startswith("-"):
            text += " - " + term[1:]
        else:
            text += " + " + term
    return text
