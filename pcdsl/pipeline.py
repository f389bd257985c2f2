# ---------------------------------------------------------------------------------------------
# The whole pipeline behind one call:
#
#   text -parse-> tree -lower-> ModelIR -check-> CheckedModel -plan-> Plan -generate-> source
#
# The CLI, the Python API, the runtime and the tests all go through here, so every entry point
# reports the same diagnostics for the same file.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

from .check import CheckedModel, check_model
from .codegen import GENERATORS
from .diagnostics import PcdslError, did_you_mean, messages
from .ir.model import ModelIR
from .parse import declared_sizes, parse_text, read_model_file
from .parse.lower import Lowerer
from .parse.train_block import parse_overrides
from .plan import Plan, make_plan
from .shipped import resolve_model_file, shipped_models


@dataclass
class Compiled:
    text: str               # the .pc source
    file: str               # where it came from (shown in diagnostics and generated headers)
    ir: ModelIR
    checked: CheckedModel
    plan: Optional[Plan]    # None when only checked
    source: str             # the generated module ("" when only checked)


def compile_text(text: str, file: str = "<input>", set_items: Iterable[str] = (), *,
                 overrides: Optional[dict[str, Any]] = None, target: Optional[str] = "torch",
                 tree: Optional[Any] = None) -> Compiled:
    """Compile model text. `set_items` are `--set key=value` strings (train keys and sizes);
    `overrides` the same, already typed. `target=None` stops after the checker. `tree`: the
    text's syntax tree, when the caller has parsed it already (the language server)."""
    try:
        tree = parse_text(text) if tree is None else tree
        given = dict(overrides or {})
        given.update(parse_overrides(list(set_items), declared_sizes(tree)))
        ir = Lowerer(file, text).lower(tree, given)
        checked = check_model(ir)
        plan = make_plan(checked) if target else None
        source = GENERATORS[target].generate(plan) if target else ""
    except PcdslError as err:
        raise err.located(file, text)
    except RecursionError:
        # every stage walks expressions recursively; report the limit instead of crashing
        raise PcdslError(messages.TOO_DEEP, hint="split the expression with macros or intermediate states"
                         ).located(file, text)
    return Compiled(text, file, ir, checked, plan, source)


def compile_file(path_or_name: str | Path, set_items: Iterable[str] = (), target: Optional[str] = "torch"
                 ) -> Compiled:
    """Compile a model file, or a shipped model named without a path (`vgg10_imagenet`)."""
    path = resolve_model_file(path_or_name)
    try:
        text = read_model_file(path)
    except PcdslError as err:
        if err.code == messages.FILE_UNREADABLE.code and not path.exists():
            hint = did_you_mean(path.name.removesuffix(".pc"), shipped_models())
            err.hint = hint or "not a file, nor a shipped model (`pcdsl models` lists them)"
        raise
    return compile_text(text, str(path), set_items, target=target)


def check_file(path_or_name: str | Path, set_items: Iterable[str] = ()) -> Compiled:
    return compile_file(path_or_name, set_items, target=None)
