# ---------------------------------------------------------------------------------------------
# The checked-in model files of the compiler tests, and what each one expects.
#
# invalid/*.pc hold one mistake each. Line 1 states where the error must be reported,
# `# expect: CODE LINE:COL` (the caret's line and column, as a user would place it), and an
# optional `# hint: TEXT` line names a text the hint must contain (did-you-mean and friends).
# valid/*.pc hold, under the same file name, the same model with the mistake corrected.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from click.testing import CliRunner, Result

from pcdsl.cli.main import main

HERE = Path(__file__).resolve().parent
INVALID_DIR = HERE / "invalid"
VALID_DIR = HERE / "valid"
MODELS_DIR = HERE.parents[1] / "models"

_EXPECT = re.compile(r"# expect: (E\d{3}) (\d+):(\d+)$")
_HINT = re.compile(r"# hint: (.+)$")


@dataclass(frozen=True)
class Expectation:
    path: Path
    code: str
    line: int
    column: int
    hint: Optional[str]

    @property
    def id(self) -> str:
        return self.path.stem


def read_expectation(path: Path) -> Expectation:
    lines = path.read_text(encoding="utf-8").splitlines()
    match = _EXPECT.match(lines[0])
    if match is None:
        raise ValueError(f"{path.name}: line 1 must be `# expect: CODE LINE:COL`, got {lines[0]!r}")
    hint = _HINT.match(lines[1])
    return Expectation(path, match.group(1), int(match.group(2)), int(match.group(3)),
                       hint.group(1) if hint else None)


def invalid_cases() -> list[Expectation]:
    return [read_expectation(p) for p in sorted(INVALID_DIR.glob("*.pc"))]


def valid_files() -> list[Path]:
    return sorted(VALID_DIR.glob("*.pc"))


def run_cli(*args: str) -> Result:
    """`pcdsl ARGS...` in-process; stdout and stderr stay apart (click >= 8.2)."""
    return CliRunner().invoke(main, list(args))


def is_semantic(code: str) -> bool:
    """E1xx-E4xx: the checks that have a valid counterpart (E0xx is syntax, E5xx the CLI)."""
    return code[1] in "1234"
