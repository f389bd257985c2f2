# ---------------------------------------------------------------------------------------------
# The whole pipeline behind one call: file -> IR -> checked model -> generated source.
# The CLI, the runtime and the tests all go through here, so every entry point reports the same
# diagnostics for the same file.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from .check import CheckedModel, check_model
from .codegen import GENERATORS
from .diagnostics import PcdslError, messages
from .ir.model import ModelIR
from .parse import lower_text, read_model_file
from .parse.train_block import parse_overrides


@dataclass
class Compiled:
    text: str               # the .pc source
    ir: ModelIR
    checked: CheckedModel
    source: str             # the generated module


def size_names(text: str) -> set[str]:
    """Sizes declared in a file, for validating `--set` before the full parse."""
    import re
    return set(re.findall(r"^\s*size\s+([A-Za-z_][A-Za-z0-9_]*)", text, flags=re.MULTILINE))


def check_text(text: str, file: str, overrides: Optional[dict[str, Any]] = None) -> CheckedModel:
    return _compile(text, file, overrides, None).checked


def compile_text(text: str, file: str, overrides: Optional[dict[str, Any]] = None,
                 target: str = "torch") -> Compiled:
    return _compile(text, file, overrides, target)


def _compile(text: str, file: str, overrides, target: Optional[str]) -> Compiled:
    try:
        ir = lower_text(text, file, overrides)
        checked = check_model(ir)
        source = GENERATORS[target].generate(checked) if target else ""
    except PcdslError as err:
        raise err.located(file, text)
    except RecursionError:
        # every stage walks expressions recursively; report the limit instead of crashing
        raise PcdslError(messages.TOO_DEEP, hint="split the expression with macros or intermediate states"
                         ).located(file, text)
    return Compiled(text, ir, checked, source)


def compile_file(path: str | Path, set_items: Optional[list[str]] = None, target: str = "torch") -> Compiled:
    text = read_model_file(path)
    try:
        overrides = parse_overrides(list(set_items or []), size_names(text))
    except PcdslError as err:
        raise err.located(str(path), None)
    return compile_text(text, str(path), overrides, target)
