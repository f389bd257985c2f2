# ---------------------------------------------------------------------------------------------
# The canonical layout of a model file: one statement per line, two spaces of indentation per
# block, one space around binary operators, `~`, `:` and a statement's `=` (none around a
# keyword argument's `=` or after a unary minus), one after each comma, none inside brackets;
# consecutive declarations aligned in columns (keyword, name, shape, domain, prediction);
# comments kept where they were (a comment inside a statement split over lines moves to the end
# of that statement), at most one blank line in a row, one newline at the end.
#
# The grammar drops comments, so the layout works on tokens, not on the parse tree: a tokenizer
# with the grammar's token rules plus comments and line breaks. The file must parse before and
# after (the caller checks that the model it describes is unchanged).
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import re
from dataclasses import dataclass, field

from pcdsl.diagnostics import PcdslError
from pcdsl.parse.parser import parse_text
from pcdsl.parse.train_block import ALL_SETTINGS

_TOKEN = re.compile(r"""
    (?P<comment>\#[^\n]*)
  | (?P<newline>\n)
  | (?P<space>[ \t\r\f]+)
  | (?P<string>"[^"\n]*")
  | (?P<number>([0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)([eE][-+]?[0-9]+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>\*\*|>=|[-+*/~=:,(){}\[\]])
""", re.VERBOSE)

DECLARATIONS = ("input", "state", "output", "label")
BINARY = {"+", "-", "*", "/", "**"}
OPENING, CLOSING = {"(", "["}, {")", "]"}


class FormatError(ValueError):
    """The text cannot be laid out; the message is for the user."""


@dataclass
class _Line:
    tokens: list[str]                     # the statement's tokens (no comments)
    comment: str | None = None            # a trailing comment, or the whole line's
    blank_before: bool = False
    depth: int = 0                        # block depth (0: the top; 1: inside model/train)
    comments_inside: list[str] = field(default_factory=list)


def _tokens(text: str) -> list[tuple[str, str]]:
    out, position = [], 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise FormatError(f"unexpected character {text[position]!r} at offset {position}")
        kind = match.lastgroup
        if kind != "space":
            out.append((kind, match.group()))
        position = match.end()
    return out


def _statements(text: str) -> list[_Line]:
    """Physical lines joined into statements: a line continues while a bracket is open, when it
    ends with an operator, or when the next one starts with one."""
    physical: list[list] = [[[], None, False]]     # [tokens, comment, made by splitting at a brace]
    for kind, value in _tokens(text):
        current = physical[-1]
        if kind == "newline":
            physical.append([[], None, False])
        elif kind == "comment":
            if current[2] and not current[0] and physical[-2][1] is None:
                physical[-2][1] = value           # `model m {  # ...`: the comment stays with its brace
            else:
                current[1] = value
        elif value == "{":                        # a block's brace ends its header's line
            current[0].append(value)
            physical.append([[], None, True])
        elif value == "}":                        # and a closing brace stands on its own line
            if current[0]:
                physical.append([[], None, True])
            physical[-1][0].append(value)
            physical.append([[], None, True])
        else:
            current[0].append(value)
    physical = [split_part for line in physical for split_part in _split_statements(line)]
    lines: list[_Line] = []
    blank = False
    open_brackets = 0
    continuing = False
    for tokens, comment, split in physical:
        if not tokens and comment is None:
            blank = blank or (bool(lines) and not split)
            continue
        # no statement starts with these: the line continues the one before
        starts_with_operator = bool(tokens) and tokens[0] in BINARY | {"~", "=", ",", ">=", ":", "(", "[", "in"}
        if lines and lines[-1].tokens and (continuing or (starts_with_operator and tokens)):
            line = lines[-1]
            line.tokens += tokens
            if comment:
                line.comments_inside.append(comment)
        else:
            lines.append(_Line(tokens, comment, blank_before=blank))
        blank = False
        for token in tokens:
            open_brackets += token in OPENING
            open_brackets -= token in CLOSING
        last = lines[-1].tokens[-1] if lines[-1].tokens else None
        bare_keyword = lines[-1].tokens == [last] and last in _STATEMENT_WORDS - {"model", "train"}
        continuing = bool(lines[-1].tokens) and (open_brackets > 0 or bare_keyword
                                                 or last in BINARY | {"~", "=", ",", ">=", ":", "in"})
    return lines


def _split_statements(line: list) -> list[list]:
    """A physical line holding several statements, cut where the next one starts: a statement
    keyword, a pc_term's `NAME ~`, or a train setting's name, at bracket depth 0 and after
    something that can end a statement."""
    tokens, comment, split = line
    parts, start, depth = [], 0, 0
    for index, token in enumerate(tokens):
        if index > start and depth == 0 and _ends_statement(tokens[index - 1]) and (
                token in _STATEMENT_WORDS - {"in"}
                or (re.match(r"[A-Za-z_]", token) and index + 1 < len(tokens) and tokens[index + 1] == "~")
                or (token in _SETTING_WORDS and tokens[index - 1] not in _SETTING_WORDS)):
            parts.append([tokens[start:index], None, split])
            start = index
        depth += (token in OPENING) - (token in CLOSING)
    parts.append([tokens[start:], comment, split])
    return parts


def _ends_statement(token: str) -> bool:
    return token in {")", "]", '"'} or token.endswith('"') or bool(re.match(r"[A-Za-z0-9_.]", token))


def _spaced(tokens: list[str]) -> str:
    """One statement's tokens joined with the canonical spacing."""
    out, previous, parens, brackets, unary_at = "", None, 0, 0, set()
    for index, token in enumerate(tokens):
        # a sign: after an operator or an opening, or after a train setting's name (`seed -1`)
        if token in ("-", "+") and (previous is None or previous in _BEFORE_UNARY
                                    or (index == 1 and previous not in _STATEMENT_WORDS)):
            unary_at.add(index)
        if previous is None or token in {",", ")", "]"} or previous in {"(", "["}:
            gap = ""
        elif token == "**" or previous == "**":                           # h**2, as it is read
            gap = ""
        elif brackets > parens and (token in BINARY or previous in BINARY):  # a shape: [64, S/2, S/2]
            gap = ""
        elif token == "(" and re.match(r"[A-Za-z_]", previous):          # a call
            gap = ""
        elif parens > 0 and (token == "=" or previous == "="):            # a keyword argument
            gap = ""
        elif index - 1 in unary_at:
            gap = ""
        else:
            gap = " "
        out += gap + token
        parens += (token == "(") - (token == ")")
        brackets += (token == "[") - (token == "]")
        previous = token
    return out


_BEFORE_UNARY = {"(", "[", ",", "=", "~", ":", ">=", "+", "-", "*", "/", "**"}
_STATEMENT_WORDS = {"model", "train", "size", "input", "state", "output", "label", "def", "energy", "cost"}
_SETTING_WORDS = set(ALL_SETTINGS)


def _declaration_columns(tokens: list[str]) -> list[str] | None:
    """A declaration split into its columns: keyword, name, `: shape`, domain, `~ prediction`."""
    if len(tokens) < 4 or tokens[0] not in DECLARATIONS or tokens[2] != ":":
        return None
    depth, end = 0, 3
    for end in range(3, len(tokens)):
        depth += tokens[end] == "["
        depth -= tokens[end] == "]"
        if depth == 0:
            break
    shape = _spaced(tokens[3:end + 1])
    rest = tokens[end + 1:]
    tilde = rest.index("~") if "~" in rest else len(rest)
    domain = _spaced(rest[:tilde])
    prediction = _spaced(rest[tilde:])
    return [tokens[0], tokens[1], ": " + shape, domain, prediction]


def _align(rows: list[list[str]], least: tuple[int, int] = (0, 0)) -> list[str]:
    """Columns padded to their widest cell; the keyword and name columns at least `least` wide
    (the widest of the whole file, so that every declaration's name starts in one column)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    widths[0], widths[1] = max(widths[0], least[0]), max(widths[1], least[1])
    out = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths)]
        # an empty domain or prediction column takes no room unless another row fills it
        out.append(" ".join(cell for cell, width in zip(cells, widths) if width).rstrip())
    return out


def format_text(text: str) -> str:
    """The canonical layout of `text`, a model file that parses (else its PcdslError). The
    result parses to the same tree (Lark's trees compare their rules and tokens, not positions);
    FormatError if it would not (a bug here: then nothing should be written)."""
    tree = parse_text(text)
    lines = _statements(text)
    depth = 0
    for line in lines:
        if line.tokens and line.tokens[0] == "}":
            depth -= 1
        line.depth = max(depth, 0)
        depth += line.tokens.count("{") - line.tokens.count("}") + (line.tokens[0] == "}" if line.tokens else 0)
    out: list[str] = []
    group: list[_Line] = []
    declared = [_declaration_columns(line.tokens) for line in lines if line.tokens]
    declared = [row for row in declared if row is not None]
    least = (max((len(r[0]) for r in declared), default=0), max((len(r[1]) for r in declared), default=0))

    def flush() -> None:
        if not group:
            return
        texts = _align([_declaration_columns(line.tokens) for line in group], least)
        comments = [([line.comment] if line.comment else []) + line.comments_inside for line in group]
        # trailing comments of consecutive lines share a column
        widths, start = [0] * len(group), 0
        while start < len(group):
            end = start
            while end < len(group) and comments[end]:
                end += 1
            for index in range(start, end):
                widths[index] = max(len(texts[i]) for i in range(start, end))
            start = end + 1
        for line, body, notes, width in zip(group, texts, comments, widths):
            suffix = " " * (width - len(body)) + "  " + " ".join(notes) if notes else ""
            _emit(out, line, "  " * line.depth + body + suffix)
        group.clear()

    for line in lines:
        if line.tokens and _declaration_columns(line.tokens) is not None and not (line.blank_before and group):
            group.append(line)
            continue
        flush()
        if line.tokens and _declaration_columns(line.tokens) is not None:
            group.append(line)
            continue
        body = _spaced(line.tokens) if line.tokens else ""
        comments = ([line.comment] if line.comment else []) + line.comments_inside
        text_line = body + ("  " if body and comments else "") + " ".join(comments)
        _emit(out, line, "  " * line.depth + text_line)
    flush()
    result = "\n".join(out).rstrip("\n") + "\n"
    try:
        same = parse_text(result) == tree
    except PcdslError:
        same = False
    if not same:
        raise FormatError("the canonical layout would change what the file says (a bug in pcdsl fmt); "
                          "the file is left as it is")
    if text.count("#") != result.count("#"):
        raise FormatError("the canonical layout would lose a comment (a bug in pcdsl fmt); the file is left as it is")
    return result


def _emit(out: list[str], line: _Line, text: str) -> None:
    if line.blank_before and out and out[-1] != "":
        out.append("")
    out.append(text.rstrip())
