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
#   factors        what dE/dθ needs at a relaxed state: the named cotangents at every weighted
#                  operator, the energy, and the products that turn them into parameter
#                  gradients (one per phase, or one for all phases where the input is shared)
#   nudged         (PCNs) the relaxation from the free state at beta, then the factors: the free
#                  pass's values carried in, the first iterations reduced to the states the
#                  error has reached, the factors from the values the last iteration left valid
#
# Analysis happens on the plan (passes.py: hoisting, the carry, the wavefront); a backend only
# prints it.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import sympy as sp

from ..check.algebra import Definitions
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
    0 at beta = 0 and must not be evaluated there (the cost's pull needs a label). A tuple of
    targets unpacks a call that returns several values (a pool and its argmax positions)."""
    target: sp.Symbol | tuple
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


@dataclass(frozen=True)
class ParamProduct:
    """dE/dθ of one parameter, summed over the batch: coefficient * node, where the node's
    cotangent is a factor a phase hands over (a named cotangent or a state). When its input
    reads no state (`invariant_input`: the first layer's x) it is the same in every phase, and
    the phases' cotangents are combined before one product is formed."""
    param: str
    symbol: sp.Symbol
    coefficient: sp.Expr
    node: sp.Expr
    invariant_input: bool


@dataclass
class Factors:
    """What the parameter gradients need at one relaxed state."""
    roots: list[sp.Symbol]          # intermediates the cotangents, the energy and the factors read directly
    body: list[Assign]              # everything they need, computed at arbitrary states
    cotangents: list[Assign]        # g_h = the cotangent at h's weighted operators (when not a bare symbol)
    energy: sp.Expr                 # the per-example total energy E
    returned: list[sp.Symbol]       # handed to the products: named cotangents, states, intermediates
    products: list[ParamProduct]    # in parameters() order
    product_invariants: list[Assign]   # invariant intermediates the shared inputs read


@dataclass
class Iteration:
    """A peeled iteration of the nudged relaxation: the half-sweeps that move a state."""
    number: int
    sweeps: list[HalfSweep]


@dataclass
class NudgedPhase:
    """PCNs: `steps` iterations from the free state at beta, then the factors. At the free state
    every prediction error is zero, so the first iterations move only the states the output's
    error has reached (a wavefront, two layers per iteration); those are peeled off the loop and
    reduced to what they change. Values the free pass computed are carried in, not recomputed."""
    carried: list[sp.Symbol]        # valid at the start: read from the free phase's carry
    peeled: list[Iteration]
    before_loop: list[Assign]       # what the loop's first iteration reuses and the peeled ones did not leave
    loop: list[HalfSweep]
    epilogue: list[Assign]          # what the factors need that is not valid after every iteration count
    velocities: list[sp.Symbol] = field(default_factory=list)
    moved_from: list[sp.Symbol] = field(default_factory=list)   # free values the moved forms add to
    handed: list[sp.Symbol] = field(default_factory=list)       # what free_phase hands over: both


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
    factors: Factors = None
    nudged: Optional[NudgedPhase] = None   # None: not a PCN (the nudged phase is relax + factors)
    definitions: Optional[Definitions] = None   # the model's intermediates and those the plan adds
    predictions: Optional[Phase] = None    # generative models: every `~` term's prediction
