# Source spans: Lark positions -> IR spans -> diagnostic spans, and raising at a span.
from __future__ import annotations

from ..diagnostics import PcdslError, Span
from ..ir.model import SourceSpan


def to_span(meta_or_token) -> SourceSpan:
    return SourceSpan(line=meta_or_token.line, column=meta_or_token.column,
                      end_line=meta_or_token.end_line, end_column=meta_or_token.end_column)


def diag_span(span: SourceSpan) -> Span:
    return Span(span.line, span.column, span.end_line, span.end_column)


def fail(message, where, hint=None, **fields):
    span = where if isinstance(where, SourceSpan) else to_span(where)
    raise PcdslError(message, diag_span(span), hint=hint, **fields)
