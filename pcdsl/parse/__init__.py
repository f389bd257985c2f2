"""Stage 1: text -> syntax tree (Lark) -> ModelIR (lowering)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from ..diagnostics import PcdslError, messages
from ..ir.model import ModelIR
from .lower import Lowerer
from .parser import parse_text


def read_model_file(path: str | Path) -> str:
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PcdslError(messages.FILE_UNREADABLE, reason="no such file").located(str(path), None)
    except IsADirectoryError:
        raise PcdslError(messages.FILE_UNREADABLE, reason="it is a folder").located(str(path), None)
    except UnicodeDecodeError:
        raise PcdslError(messages.FILE_UNREADABLE, reason="it is not UTF-8 text").located(str(path), None)
    except OSError as err:
        raise PcdslError(messages.FILE_UNREADABLE, reason=err.strerror or str(err)).located(str(path), None)


def lower_text(text: str, file: str = "<input>", overrides: Optional[dict[str, Any]] = None) -> ModelIR:
    try:
        tree = parse_text(text)
        return Lowerer(file, text).lower(tree, overrides or {})
    except PcdslError as err:
        raise err.located(file, text)
