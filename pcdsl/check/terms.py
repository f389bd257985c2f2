# ---------------------------------------------------------------------------------------------
# One energy term as the checker sees it: the record the model, the rule derivation and the
# planner share.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import sympy as sp


@dataclass
class TermInfo:
    name: str
    target: Optional[str]
    energy: sp.Expr                          # scalar, in terms of the named intermediates
    line: int
    span: object
    prediction: Optional[sp.Expr] = None     # `~` terms: the prediction f(...) in named form
    states: set[str] = field(default_factory=set)   # free states it touches
    reads_input: bool = False
