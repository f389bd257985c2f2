"""Stage 1: text -> syntax tree (Lark) -> ModelIR (lowering)."""
from __future__ import annotations

from pathlib import Path

import lark

from ..diagnostics import PcdslError, messages
from .parser import parse_text

__all__ = ["read_model_file", "declared_sizes", "parse_text"]


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


def declared_sizes(tree: lark.Tree) -> set[str]:
    """The sizes a parsed file declares (what `--set NAME=VALUE` may name besides train keys)."""
    model = tree.children[0]
    return {str(item.children[0]) for item in model.children[1:]
            if isinstance(item, lark.Tree) and item.data == "size_decl"}
