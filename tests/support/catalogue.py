# ---------------------------------------------------------------------------------------------
# Every model the checker accepts that the oracle tests run: the shipped models, the language
# models of tests/models/ and the examples. Each file's `# gradcheck: beta=B steps=K
# [free_steps=N]` line gives a beta small enough and iterations enough for EP to agree with
# backprop; the shipped models (whose headers are for users) are listed here, VGG10 at S=32.
# A generative model (its input predicted; no cost, so no EP) says `# gradcheck: generative
# free_steps=N`: relaxations long enough for its update to match autograd of the relaxed energy.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[2]
_SETTINGS = re.compile(r"^# gradcheck: (.*)$", re.MULTILINE)


@dataclass(frozen=True)
class Entry:
    path: Path
    beta: float
    steps: int
    free_steps: Optional[int] = None
    sets: tuple[str, ...] = field(default_factory=tuple)

    @property
    def id(self) -> str:
        return self.path.stem


SHIPPED = [
    Entry(ROOT / "models" / "mlp_digits.pc", 1e-4, 30),
    Entry(ROOT / "models" / "mlp_mnist.pc", 1e-4, 30),
    Entry(ROOT / "models" / "vgg5_mnist.pc", 1e-4, 30),
    Entry(ROOT / "models" / "vgg5_cifar10.pc", 1e-4, 30),
    Entry(ROOT / "models" / "vgg10_imagenet.pc", 1e-4, 40, sets=("S=32",)),
    Entry(ROOT / "models" / "vgg10skip_imagenet.pc", 1e-4, 40, sets=("S=32",)),
    Entry(ROOT / "models" / "hopfield_tiny.pc", 1e-3, 150, 400),
]


def _header(path: Path) -> list[str]:
    found = _SETTINGS.search(path.read_text(encoding="utf-8"))
    if found is None:
        raise ValueError(f"{path} has no `# gradcheck: beta=... steps=...` line")
    return found.group(1).split()


def _from_header(path: Path) -> Entry:
    values = dict(item.split("=") for item in _header(path) if "=" in item)
    if "generative" in _header(path):
        return Entry(path, 0.0, 0, int(values["free_steps"]))
    return Entry(path, float(values["beta"]), int(values["steps"]),
                 int(values["free_steps"]) if "free_steps" in values else None)


_FILES = sorted((ROOT / "tests" / "models").glob("*.pc")) + sorted((ROOT / "examples").glob("*.pc"))
# supervised models (EP's oracle: backprop of the cost) and generative ones
GENERATIVE = [_from_header(p) for p in _FILES if "generative" in _header(p)]
LANGUAGE = [_from_header(p) for p in sorted((ROOT / "tests" / "models").glob("*.pc")) if "generative" not in _header(p)]
EXAMPLES = [_from_header(p) for p in sorted((ROOT / "examples").glob("*.pc")) if "generative" not in _header(p)]
ALL = SHIPPED + LANGUAGE + EXAMPLES
