# ---------------------------------------------------------------------------------------------
# What an editor asks about a model file, answered from the compiler itself, with no editor
# protocol in sight (the language server, language_server.py, only translates):
#
#   problems      the pipeline's diagnostic for the text, with its range
#   hover         what a name is: a state's shape, domain, layer, energy term and derived update
#                 rule; a macro's definition; an operator's signature; a size's value
#   definition    where a name is declared: a macro's `def`, a macro parameter, a state, a size
#   symbols       the declarations, for an outline
#   completions   what may be typed at a place: statements, names, macros, operators and their
#                 options, costs, train settings and theirs
#
# Positions are 0-based lines and characters counted in code points, as Lark counts them (lines
# end at "\n"); converting to the client's units is the server's business.
#
# Names come from the syntax tree of the text when it parses, and otherwise from the last text
# that parsed, kept only where the name still stands at the same place: while a line is being
# typed, the rest of the file still answers. Shapes and update rules come only from a text that
# passes the checker; they are never shown from an older version.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field, replace
from typing import Optional

import lark

from ..diagnostics import PcdslError
from ..ops import COSTS, REGISTRY
from ..parse import parse_text
from ..parse.train_block import ALL_SETTINGS, CALL_SETTINGS, VALUE_SETTINGS
from ..pipeline import compile_text
from ..report import model_report, rule_lines

Position = tuple[int, int]                   # (line, character), 0-based


@dataclass(frozen=True)
class TextRange:
    start: Position
    end: Position                            # exclusive

    def moved(self, lines: int) -> "TextRange":
        return TextRange((self.start[0] + lines, self.start[1]), (self.end[0] + lines, self.end[1]))

    def contains(self, position: Position) -> bool:
        # the end is included: a cursor just after a name (where typing leaves it) is on that name
        return self.start <= position <= self.end

    @staticmethod
    def of(token) -> "TextRange":
        """The range of a Lark token, or of a tree's meta (a whole statement)."""
        return TextRange((token.line - 1, token.column - 1), (token.end_line - 1, token.end_column - 1))


@dataclass(frozen=True)
class Problem:
    range: TextRange
    code: str
    message: str                             # the diagnostic text, with its hint on a second line


@dataclass(frozen=True)
class Declaration:
    name: str
    kind: str                                # size, input, state, output, label, energy, macro, parameter
    range: TextRange                         # the name where it is declared
    statement: str                           # the declaring statement's text
    extent: TextRange                        # the declaring statement
    macro: Optional[str] = None              # a parameter's macro


@dataclass(frozen=True)
class Occurrence:
    """A name in the text and what it refers to: the key of a declaration in `Symbols.declared`
    (a macro parameter's key is (macro, name)), an operator, a cost, or nothing known."""
    range: TextRange
    name: str
    role: str                                # declaration, reference, call, cost, option, setting
    target: Optional[tuple] = None


@dataclass
class Symbols:
    declared: dict[tuple, Declaration] = field(default_factory=dict)
    occurrences: list[Occurrence] = field(default_factory=list)

    def at(self, position: Position) -> Optional[Occurrence]:
        hits = [o for o in self.occurrences if o.range.contains(position)]
        # between two adjacent names (`a+b` with the cursor after `a`) prefer the one starting here
        hits.sort(key=lambda o: o.range.start != position)
        return hits[0] if hits else None


# -- names from the syntax tree -----------------------------------------------------------------
_DECLARATIONS = {"size_decl": "size", "input_decl": "input", "state_decl": "state",
                 "output_decl": "output", "label_decl": "label", "energy_term": "energy"}


def symbols_of(tree: lark.Tree, text: str) -> Symbols:
    symbols = Symbols()
    model = tree.children[0]
    for item in model.children[1:]:
        if not isinstance(item, lark.Tree):
            continue
        statement = text[item.meta.start_pos:item.meta.end_pos]
        if item.data in _DECLARATIONS:
            name = item.children[0]
            _declare(symbols, (str(name),), Declaration(str(name), _DECLARATIONS[item.data], TextRange.of(name),
                                                        statement, TextRange.of(item.meta)))
            _walk_expression(symbols, item.children[1:], params={})
        elif item.data == "macro_def":
            name, *params, body = item.children
            _declare(symbols, (str(name),), Declaration(str(name), "macro", TextRange.of(name), statement,
                                                        TextRange.of(item.meta)))
            scope = {}
            for param in params:
                if param is not None:
                    key = (str(name), str(param))
                    scope[str(param)] = key
                    _declare(symbols, key, Declaration(str(param), "parameter", TextRange.of(param), statement,
                                                       TextRange.of(param), macro=str(name)))
            _walk_expression(symbols, [body], params=scope)
        elif item.data == "pc_term":
            name, body = item.children
            symbols.occurrences.append(Occurrence(TextRange.of(name), str(name), "reference", (str(name),)))
            _walk_expression(symbols, [body], params={})
        elif item.data == "cost_decl":
            kind, output, label = item.children
            symbols.occurrences.append(Occurrence(TextRange.of(kind), str(kind), "cost"))
            for name in (output, label):
                symbols.occurrences.append(Occurrence(TextRange.of(name), str(name), "reference", (str(name),)))
    if len(tree.children) > 1 and tree.children[1] is not None:
        for setting in tree.children[1].children:
            symbols.occurrences.append(Occurrence(TextRange.of(setting.children[0]), str(setting.children[0]),
                                                  "setting"))
    return symbols


def _declare(symbols: Symbols, key: tuple, declaration: Declaration) -> None:
    symbols.declared.setdefault(key, declaration)      # a duplicate is the checker's error to report
    symbols.occurrences.append(Occurrence(declaration.range, declaration.name, "declaration", key))


def _walk_expression(symbols: Symbols, nodes, params: dict) -> None:
    for node in nodes:
        if not isinstance(node, lark.Tree):
            continue
        if node.data == "name":
            token = node.children[0]
            key = params.get(str(token), (str(token),))
            symbols.occurrences.append(Occurrence(TextRange.of(token), str(token), "reference", key))
            continue
        if node.data == "call":
            token = node.children[0]
            symbols.occurrences.append(Occurrence(TextRange.of(token), str(token), "call", (str(token),)))
            for argument in node.children[1:]:
                if isinstance(argument, lark.Tree) and argument.data == "keyword":
                    option = argument.children[0]
                    symbols.occurrences.append(Occurrence(TextRange.of(option), str(option), "option",
                                                          (str(token),)))
                    _walk_expression(symbols, argument.children[1:], params)
                else:
                    _walk_expression(symbols, [argument], params)
            continue
        _walk_expression(symbols, node.children, params)


def _still_there(symbols: Symbols, old_lines: list[str], lines: list[str]) -> Symbols:
    """The occurrences of an older parse (of `old_lines`) that still stand in the text of `lines`:
    on a line that the edit left as it was or edited in place (followed to where inserted or
    deleted lines moved it), with the same name at the same column."""
    shift = {}                               # old line -> how far it moved
    matcher = difflib.SequenceMatcher(None, old_lines, lines, autojunk=False)
    for kind, a0, a1, b0, b1 in matcher.get_opcodes():
        # unchanged lines, and lines edited in place (as many before as after: the line being
        # typed), map one to one; names on them are kept where they still stand
        if kind == "equal" or (kind == "replace" and a1 - a0 == b1 - b0):
            for k in range(a1 - a0):
                shift[a0 + k] = b0 - a0

    def follow(where: TextRange) -> Optional[TextRange]:
        return where.moved(shift[where.start[0]]) if where.start[0] in shift else None

    def stands(where: Optional[TextRange], name: str) -> bool:
        if where is None:
            return False
        (line, start), (end_line, end) = where.start, where.end
        return (line == end_line and line < len(lines) and lines[line][start:end] == name
                and not _is_word(lines[line][end:end + 1]) and not _is_word(lines[line][start - 1:start]))

    kept = Symbols()
    for occurrence in symbols.occurrences:
        where = follow(occurrence.range)
        if stands(where, occurrence.name):
            kept.occurrences.append(replace(occurrence, range=where))
    for key, declaration in symbols.declared.items():
        where = follow(declaration.range)
        if stands(where, declaration.name):
            moved = where.start[0] - declaration.range.start[0]
            kept.declared[key] = replace(declaration, range=where, extent=declaration.extent.moved(moved))
    return kept


def _is_word(char: str) -> bool:
    return bool(char) and (char.isalnum() or char == "_")


# -- one version of a document ------------------------------------------------------------------
@dataclass
class Analysis:
    text: str
    lines: list[str]                         # the text split at "\n", as positions count lines
    problems: list[Problem]
    symbols: Symbols
    report: Optional[dict]                   # `pcdsl check --json` of the text, when it checks
    current_names: bool                      # whether `symbols` come from this very text

    def hover(self, position: Position) -> Optional[tuple[str, TextRange]]:
        """Markdown describing the name at `position`, and the name's range."""
        occurrence = self.symbols.at(position)
        if occurrence is None:
            return None
        text = _describe(self, occurrence)
        return (text, occurrence.range) if text else None

    def definition(self, position: Position) -> Optional[TextRange]:
        occurrence = self.symbols.at(position)
        if occurrence is None or occurrence.target is None or occurrence.role in ("option",):
            return None
        declaration = self.symbols.declared.get(occurrence.target)
        return declaration.range if declaration is not None else None

    def declarations(self) -> list[Declaration]:
        return [d for d in self.symbols.declared.values() if d.kind != "parameter"]


def analyse(text: str, file: str = "<input>", previous: Optional[Analysis] = None) -> Analysis:
    """Compile `text` as the pipeline does; never raise for any text."""
    lines = text.split("\n")
    try:
        tree = parse_text(text)
        symbols, current = symbols_of(tree, text), True
    except (PcdslError, RecursionError):     # the pipeline below says why, parsing again
        tree = None
        symbols, current = (_still_there(previous.symbols, previous.lines, lines) if previous else Symbols()), False
    problems: list[Problem] = []
    report = None
    try:
        report = model_report(compile_text(text, file, target=None, tree=tree).checked)   # planning raises nothing
    except PcdslError as err:
        problems.append(_problem(err))
    except Exception as err:                 # a compiler bug must not take the editor down
        problems.append(_internal(err))
    return Analysis(text, lines, problems, symbols, report, current)


def _problem(err: PcdslError) -> Problem:
    message = err.text + (f"\nhint: {err.hint}" if err.hint else "")
    if err.span is None:
        where = TextRange((0, 0), (0, 0))
    else:
        start = (err.span.line - 1, err.span.column - 1)
        end = (err.span.end_line - 1, err.span.end_column - 1)
        where = TextRange(start, max(start, end))
    return Problem(where, err.code, message)


def _internal(err: Exception) -> Problem:
    return Problem(TextRange((0, 0), (0, 0)), "internal",
                   f"pcdsl failed on this text ({type(err).__name__}: {err}); please report it with the file")


# -- hover text ---------------------------------------------------------------------------------
def _describe(analysis: Analysis, occurrence: Occurrence) -> Optional[str]:
    if occurrence.role == "call" and occurrence.target not in analysis.symbols.declared:
        return _operator_text(occurrence.name)
    if occurrence.role == "option":
        return _option_text(occurrence.target[0], occurrence.name)
    if occurrence.role == "cost":
        cost = COSTS.get(occurrence.name)
        return f"**cost** `{occurrence.name}`: {cost.formula}" if cost else None
    if occurrence.role == "setting":
        return _setting_text(occurrence.name)
    declaration = analysis.symbols.declared.get(occurrence.target) if occurrence.target else None
    if declaration is None:
        return _BIAS if occurrence.name == "bias" else None
    if declaration.kind == "parameter":
        return f"parameter `{declaration.name}` of the macro `{declaration.macro}`\n\n" + _code(declaration.statement)
    if declaration.kind == "macro":
        uses = sum(1 for o in analysis.symbols.occurrences if o.role == "call" and o.target == occurrence.target)
        return (f"**macro** `{declaration.name}`, used {uses} time{'s' if uses != 1 else ''} "
                "(each use creates its own parameters)\n\n" + _code(declaration.statement))
    if analysis.report is None or not analysis.current_names:
        return _code(declaration.statement) + "\n\n_Shape and update rule: once the model checks._"
    head, derived = _variable_text(analysis.report, declaration)
    return "\n\n".join(part for part in (head, _code(declaration.statement), derived) if part)


def _code(text: str) -> str:
    return f"```pcdsl\n{text.strip()}\n```"


def _variable_text(report: dict, declaration: Declaration) -> tuple[str, str]:
    """The first line of a name's hover, and a state's derived update rule."""
    name = declaration.name
    if declaration.kind == "size":
        return f"**size** `{name}` = {report['sizes'].get(name)}", ""
    if declaration.kind == "energy":
        return f"**energy term** `{name}`", ""
    entries = [report["input"], report["label"], *report["states"]]
    entry = next((e for e in entries if e and e["name"] == name), None)
    if entry is None:
        return "", ""
    shape = "[" + ", ".join(map(str, entry["shape"])) + "]"
    symbolic = "[" + ", ".join(entry["symbolic_shape"]) + "]"
    head = f"**{entry['role']}** `{name}` : `{shape}`" + (f" = `{symbolic}`" if symbolic != shape else "")
    if entry["role"] not in ("state", "output"):
        return head, ""
    head += f", domain `{entry['domain']}`"
    layer = report["layers"].get(name) if report["layers"] else None
    group = next((i for i, g in enumerate(report["update_groups"], 1) if name in g), None)
    facts = ([f"layer {layer}"] if layer is not None else []) + \
            ([f"update group {group} of {len(report['update_groups'])}"] if group is not None else [])
    if facts:
        head += " (" + ", ".join(facts) + ")"
    rule = next((r for r in report["rules"] if r["state"] == name), None)
    if rule is None:
        return head, ""
    lines = rule_lines(rule)                 # as `pcdsl check` prints it
    where = [f"{k} = {v}" for k, v in _definitions_used(report["definitions"], "\n".join(lines))]
    body = "\n".join(lines + ([""] + where if where else []))
    return head, f"derived update:\n```\n{body}\n```"


def _definitions_used(definitions: dict, text: str) -> list[tuple[str, str]]:
    """The intermediates the text names, and those they name in turn, in definition order."""
    wanted, pending = set(), [text]
    while pending:
        for word in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", pending.pop()):
            if word in definitions and word not in wanted:
                wanted.add(word)
                pending.append(definitions[word])
    return [(k, v) for k, v in definitions.items() if k in wanted]


def signature(op) -> str:
    """An operator's call as a model file writes it: `conv(x, size, k=, stride=1, pad=0, ...)`."""
    tensors = {1: ["x"], 2: ["a", "b"]}.get(op.tensors, ["x", "..."] if op.tensors < 0 else
                                             [f"x{i}" for i in range(1, op.tensors + 1)])
    parts = tensors + [o.name for o in op.sizes]
    for option in op.options:
        default = option.default
        shown = "" if default is None else (f"{default:g}" if isinstance(default, (int, float)) and
                                             not isinstance(default, bool) else "…")
        parts.append(f"{option.name}={shown}")
    return f"{op.op_name}({', '.join(parts)})"


def _operator_text(name: str) -> Optional[str]:
    op = REGISTRY.get(name)
    if op is None:
        return None
    lines = [f"**operator** `{signature(op)}`", op.summary]
    documented = [o for o in (*op.sizes, *op.options) if o.doc]
    if documented:
        lines.append("\n".join(f"- `{o.name}`: {o.doc}" for o in documented))
    if op.has_weight:
        lines.append("Creates its own learned weight at each call.")
    return "\n\n".join(line for line in lines if line)


_BIAS = "**bias**: a learned bias, shaped like what it is added to (one value per channel of a feature map)"


def _setting_text(name: str) -> Optional[str]:
    if name in CALL_SETTINGS:
        keys = ", ".join(f"{k}=" for k in CALL_SETTINGS[name][1])
        return f"**train setting** `{name}({keys})`"
    if name in VALUE_SETTINGS:
        return f"**train setting** `{name} VALUE`"
    if name == "init_gain":
        return "**train setting** `init_gain(STATE=GAIN, ...)`: the initial weights' gain per state"
    return None


def _option_text(operator: str, option: str) -> Optional[str]:
    op = REGISTRY.get(operator)
    if op is None:
        return None
    found = next((o for o in (*op.sizes, *op.options) if o.name == option), None)
    if found is None:
        return None
    return f"`{option}` of `{signature(op)}`" + (f": {found.doc}" if found.doc else "")


# -- completion ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Completion:
    label: str
    kind: str                                # keyword, operator, macro, name, option, setting, cost
    detail: str = ""
    insert: Optional[str] = None             # the text to insert when it differs from the label


_STATEMENTS = ("size", "input", "state", "output", "label", "def", "energy", "cost")
_NAME_KINDS = ("size", "input", "state", "output", "label")


def completions(analysis: Analysis, position: Position) -> list[Completion]:
    """What may be typed at `position`, from what the text declares and the language's words."""
    lines = analysis.lines
    line, character = position
    if line >= len(lines):
        return []
    if "#" in re.sub(r'"[^"\n]*"', "", lines[line][:character]):
        return []                                                         # inside a comment
    before = "\n".join(lines[:line] + [lines[line][:character]])
    before = re.sub(r'#[^\n]*|"[^"\n]*"', "", before)                  # comments and strings say nothing
    word_start = len(re.search(r"[A-Za-z0-9_]*$", before).group(0))
    head = before[:len(before) - word_start]
    states = [d.name for d in analysis.declarations() if d.kind in ("state", "output")]
    if head.count("{") <= head.count("}"):                                # between the blocks
        return [Completion(k, "keyword") for k in ("model", "train")] if re.search(r"(^|\n)\s*$", head) else []
    if re.search(r"(^|\n)\s*train\s*\{", head):                          # the train block
        call = _open_call(head)
        if call is not None and re.search(r"[(,]\s*$", head):
            keys = states if call == "init_gain" else CALL_SETTINGS.get(call, ({}, {}))[1]
            return [Completion(f"{k}=", "option", f"of {call}") for k in keys]
        if re.search(r"(^|\n)\s*$", head):
            return [Completion(s, "setting") for s in ALL_SETTINGS]
        return []                                                         # a value: anything may stand
    if re.search(r"(^|[{\n])\s*$", head) and not _continues(head):     # a statement begins
        return [Completion(k, "keyword") for k in _STATEMENTS] + \
            [Completion(name, "name", f"add a prediction term  {name} ~ ...") for name in states]
    if re.search(r"\bcost\s+$", head):
        return [Completion(c, "cost", COSTS[c].formula) for c in sorted(COSTS)]
    if re.search(r"\b(size|input|state|output|label|def|energy)\s+$", head) or re.search(r"\bdef\s+\w+\([\w\s,]*$", head):
        return []                                                         # a new name: nothing to offer
    found: list[Completion] = []
    call = _open_call(head)
    if call in REGISTRY and re.search(r",\s*$", head):
        op = REGISTRY[call]
        found += [Completion(f"{o.name}=", "option", o.doc or f"of {call}") for o in op.options]
    macro = _enclosing_macro(head)
    if macro is not None:
        name, parameters = macro
        found += [Completion(p, "name", f"parameter of {name}") for p in parameters]
    found += [Completion(d.name, "name", d.kind) for d in analysis.declarations() if d.kind in _NAME_KINDS]
    found += [Completion(d.name, "macro", d.statement.strip(), insert=f"{d.name}(")
              for d in analysis.declarations() if d.kind == "macro"]
    found += [Completion(name, "operator", REGISTRY[name].summary, insert=f"{name}(") for name in sorted(REGISTRY)]
    found.append(Completion("bias", "keyword", "a learned bias shaped like what it is added to"))
    return found


def _open_call(head: str) -> Optional[str]:
    """The name before the innermost `(` still open at the end of `head`, if any."""
    depth = 0
    for index in range(len(head) - 1, -1, -1):
        char = head[index]
        if char in ")]":
            depth += 1
        elif char in "([":
            if depth == 0:
                match = re.search(r"([A-Za-z_][A-Za-z0-9_]*)\s*$", head[:index]) if char == "(" else None
                return match.group(1) if match else None
            depth -= 1
        elif char in "{}\n" and depth == 0 and char != "\n":
            return None
    return None


def _continues(head: str) -> bool:
    """Whether the text before the cursor ends inside an unfinished expression (after `=`, an
    operator, an open bracket or a comma): the next line goes on with it."""
    stripped = head.rstrip()
    return bool(stripped) and stripped[-1] in "=~+-*/([,:>"


def _enclosing_macro(head: str) -> Optional[tuple[str, list[str]]]:
    """The macro whose body the end of `head` is in (a `def NAME(...) =` beginning the present
    statement, which may go on over several lines), and its parameters as written, parsed or not."""
    lines = head.split("\n")
    start = len(lines) - 1
    while start > 0 and _continues("\n".join(lines[:start])):
        start -= 1                           # the statement began on an earlier line
    statement = " ".join(lines[start:])
    match = re.match(r"\s*def\s+([A-Za-z_][A-Za-z0-9_]*)\s*\(([^)]*)\)\s*=", statement)
    if match is None:
        return None
    return match.group(1), re.findall(r"[A-Za-z_][A-Za-z0-9_]*", match.group(2))
