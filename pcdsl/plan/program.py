# ---------------------------------------------------------------------------------------------
# The program plan: what the compiled module computes, phase by phase, as ordered, typed
# assignments of the tensor algebra. No target syntax appears here.
#
#   forward        the free phase of a feedforward model: each state from its prediction
#   energies       the per-term energies
#   state_grads    dF/dh of F = E + beta * C for every state (explicit adjoints)
#   relaxation     the iteration: loop invariants (computed once), the asynchronous half-sweeps
#                  with what each computes, reuses from an earlier half-sweep and writes, the
#                  prologue that starts that carry, and the synchronous variant
#
# Analysis happens on the plan (passes.py: hoisting, the carry); a backend only prints it.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import sympy as sp

from ..check.model import CheckedModel
from ..check.symbols import symbol

STEP = symbol("aux", "relax_step")            # the module's RELAX_STEP
MOMENTUM = symbol("aux", "relax_momentum")    # the module's RELAX_MOMENTUM


def local(kind: str, state: str) -> sp.Symbol:
    """A value the plan names for one state: nudge, delta, grad, velocity, next."""
    return symbol("aux", f"{kind}:{state}")


@dataclass(frozen=True)
class Assign:
    """`target = value`. `line`: the .pc line it comes from; `guard`: "beta" when the value is
    0 at beta = 0 and must not be evaluated there (the cost's pull needs a label)."""
    target: sp.Symbol
    value: sp.Expr
    line: Optional[int] = None
    guard: Optional[str] = None


@dataclass(frozen=True)
class StateUpdate:
    """One state's new value in a half-sweep.

    closed form: `value` is Proj(-r / c) (PGD); with `mod_node` set, that node (the state's own
    activation act(a)) is replaced by a in the mod-PGD form. gradient: `value` is
    Proj(h - step * direction), `velocity` the heavy-ball buffer when momentum is on."""
    state: str
    symbol: sp.Symbol
    rule: str                              # "closed" | "gradient"
    value: sp.Expr
    mod_node: Optional[sp.Expr] = None
    velocity: Optional[Assign] = None
    note: Optional[str] = None             # a comment for the reader


@dataclass
class HalfSweep:
    index: int
    states: list[str]
    body: list[Assign]                     # computed here (values carried in are not recomputed)
    reused: list[sp.Symbol]                # taken from an earlier half-sweep (or the prologue)
    updates: list[StateUpdate]


@dataclass
class Relaxation:
    invariants: list[Assign]               # depend only on the input and the parameters
    prologue: list[Assign]                 # async: carried into the first half-sweep of the loop
    sweeps: list[HalfSweep]                # async: one per update group, in traversal order
    synchronous: HalfSweep                 # every group from the same old states
    velocities: list[sp.Symbol] = field(default_factory=list)   # momentum buffers, zero at start


@dataclass
class Phase:
    """A straight-line computation: `body`, then the named results."""
    body: list[Assign]
    results: list[tuple[str, sp.Expr]]


@dataclass
class Plan:
    model: CheckedModel
    forward: Optional[Phase]               # None: the free phase is a relaxation from rest
    energies: Phase
    state_grads: Phase
    relaxation: Relaxation
    rest_values: dict[str, float]          # where a relaxation from rest starts each state
    relax_step: float
    relax_momentum: float
