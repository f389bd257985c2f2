# ---------------------------------------------------------------------------------------------
# The one diagnostic type: parse errors and semantic errors alike.
#
# A `PcdslError` carries a message code, the formatted text, a source span and an optional hint.
# `render()` prints it the way compilers do:
#
#     models/bad.pc:4:18: error[E101]: unknown name `h3`
#         h2 ~ relu(dense(h3, 10))
#                         ^^
#     hint: did you mean `h1`?
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Iterable, Optional

from .messages import Message


@dataclass(frozen=True)
class Span:
    line: int          # 1-based
    column: int        # 1-based
    end_line: int
    end_column: int    # exclusive

    @staticmethod
    def point(line: int, column: int) -> "Span":
        return Span(line, column, line, column + 1)


class PcdslError(Exception):
    """A user-facing compiler error. Never shown as a traceback."""

    def __init__(self, message: Message, span: Optional[Span] = None, hint: Optional[str] = None,
                 **fields):
        self.code = message.code
        self.text = message.template.format(**fields)
        self.span = span
        self.hint = hint
        self.file: Optional[str] = None
        self.source: Optional[str] = None
        super().__init__(f"error[{self.code}]: {self.text}")

    def located(self, file: str, source: Optional[str]) -> "PcdslError":
        """Attach the file name and text, once, at the outermost stage that knows them."""
        if self.file is None:
            self.file, self.source = file, source
        return self

    def render(self) -> str:
        where = self.file or "<input>"
        if self.span is not None:
            where += f":{self.span.line}:{self.span.column}"
        lines = [f"{where}: error[{self.code}]: {self.text}"]
        if self.span is not None and self.source is not None:
            # the parser counts lines at "\n" only; str.splitlines also breaks at \f, \r, \u2028, ...
            source_lines = [line.removesuffix("\r") for line in self.source.split("\n")]
            if 1 <= self.span.line <= len(source_lines):
                text = source_lines[self.span.line - 1].expandtabs(1)
                width = 1
                if self.span.end_line == self.span.line:
                    width = max(1, self.span.end_column - self.span.column)
                width = min(width, max(1, len(text) - self.span.column + 1))
                lines.append("    " + text)
                lines.append("    " + " " * (self.span.column - 1) + "^" * width)
        if self.hint:
            lines.append(f"hint: {self.hint}")
        return "\n".join(lines)

    def as_dict(self) -> dict:
        span = self.span
        return {"code": self.code, "message": self.text, "file": self.file,
                "line": span.line if span else None, "column": span.column if span else None,
                "hint": self.hint}


def did_you_mean(name: str, candidates: Iterable[str]) -> Optional[str]:
    """A hint naming the closest candidate, or None when nothing is close."""
    pool = sorted(set(candidates))
    match = difflib.get_close_matches(name, pool, n=1, cutoff=0.6)
    if not match:
        # short names fall below difflib's ratio for a single typo (`h3` vs `h1`: 0.5), and case
        # counts fully there (`s` vs `S`): accept one edit, or a difference in case only
        match = [c for c in pool if c.lower() == name.lower()] or \
            ([c for c in pool if _one_edit(name, c)] if len(name) >= 2 else [])
    return f"did you mean `{match[0]}`?" if match else None


def _one_edit(a: str, b: str) -> bool:
    """Whether a and b differ by one substitution, insertion or deletion."""
    if abs(len(a) - len(b)) > 1 or a == b:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b)) == 1
    short, long = (a, b) if len(a) < len(b) else (b, a)
    return any(long[:i] + long[i + 1:] == short for i in range(len(long)))
