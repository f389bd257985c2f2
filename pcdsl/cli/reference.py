# ---------------------------------------------------------------------------------------------
# docs/cli.md, the command-line reference, written from the commands themselves: each command's
# `--help` as `pcdsl COMMAND --help` prints it, at a fixed width. `python -m pcdsl.cli.reference`
# rewrites the page; a test keeps it equal to what this writes, so the page cannot fall behind.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import sys
from pathlib import Path

import click

from ..files import write_generated
from .main import main

WIDTH = 100
TARGET = Path(__file__).resolve().parents[2] / "docs" / "cli.md"

_INTRO = """# Command line

Every command of `pcdsl`, with its `--help` as it prints it. (This page is written from the
commands by `python -m pcdsl.cli.reference`; a test keeps it in step with them.)
"""


def _context(command: click.Command, name: str, parent: click.Context | None = None) -> click.Context:
    # through make_context, as a real call: the command's context settings (`-h` for help) apply
    return command.make_context(name, [], parent=parent, resilient_parsing=True,
                                terminal_width=WIDTH, max_content_width=WIDTH)


def _help(command: click.Command, name: str, parent: click.Context) -> str:
    return command.get_help(_context(command, name, parent))


def reference_text() -> str:
    root = _context(main, "pcdsl")
    parts = [_INTRO, "```text\n" + main.get_help(root) + "\n```\n"]
    for name in sorted(main.list_commands(root)):
        command = main.get_command(root, name)
        summary = command.get_short_help_str(limit=WIDTH)
        parts.append(f"## pcdsl {name}\n\n{summary}\n\n```text\n{_help(command, name, root)}\n```\n")
    return "\n".join(parts)


if __name__ == "__main__":
    write_generated(TARGET, reference_text(), sys.argv[1:])
