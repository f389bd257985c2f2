# ---------------------------------------------------------------------------------------------
# The reference models shipped with pcdsl (package data: pcdsl/models/*.pc).
#
# A user names them without a path: `pcdsl check vgg10_imagenet`, `pcdsl.load("mlp_digits")`.
# A path that exists always wins over a shipped name, so a local file called `mlp_digits` (or
# `./mlp_digits.pc`) is never shadowed.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Optional

SHIPPED = resources.files("pcdsl") / "models"


def shipped_models() -> dict[str, str]:
    """name -> the one-line summary on the first line of its file, for every shipped model."""
    found = {}
    for entry in sorted(SHIPPED.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".pc"):
            found[entry.name.removesuffix(".pc")] = _summary(entry.read_text(encoding="utf-8"))
    return found


def _summary(text: str) -> str:
    """The header's first line, `# name: what it is.`, as `what it is`."""
    first = text.split("\n", 1)[0]
    return first.lstrip("#").split(":", 1)[-1].strip().rstrip(".") if first.startswith("#") else ""


def shipped_model_path(name: str) -> Optional[Path]:
    """The file of the shipped model `name` (with or without `.pc`), or None."""
    stem = name.removesuffix(".pc")
    if not stem or "/" in name or "\\" in name or stem not in shipped_models():
        return None
    return Path(str(SHIPPED / f"{stem}.pc"))


def resolve_model_file(path_or_name: str | Path) -> Path:
    """An existing path as given; otherwise the shipped model of that name; otherwise the path
    as given (reading it then reports that it does not exist)."""
    path = Path(path_or_name)
    if path.exists():
        return path
    return shipped_model_path(str(path_or_name)) or path
