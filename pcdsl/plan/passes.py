# ---------------------------------------------------------------------------------------------
# Passes over the plan: loop-invariant hoisting and the carry between half-sweeps.
#
# Hoisting: an intermediate that depends only on the input and the parameters (the first
# layer's pre-activation) is the same in every iteration, so the relaxation computes it once.
#
# The carry (METHOD.md section 6: with cached pre-activations an iteration costs one forward and
# one transposed pass): the asynchronous half-sweeps run in a cycle, and a value one half-sweep
# computed stays valid until a later half-sweep writes a state it depends on. `schedule_cycle`
# finds, for a loop body of half-sweeps, which values each one must compute and which it may
# reuse, including across the loop's back edge; what the first half-sweep of the first iteration
# reuses from "the previous iteration" is computed once before the loop (the prologue).
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from ..check.algebra import Definitions


def hoistable(defs: Definitions, states: set[sp.Symbol]) -> list[sp.Symbol]:
    """The intermediates that read no state: loop invariants, in dependency order."""
    return [s for s in defs if not (defs.bases(defs[s]) & states)]


@dataclass
class SweepNeeds:
    roots: set[sp.Symbol]          # intermediates the half-sweep's updates read directly
    writes: set[sp.Symbol]         # the states it updates


def _resolve(roots, defs: Definitions, valid: set, invariants: set) -> tuple[list, set]:
    """What a half-sweep computes (in dependency order) and what it reuses, given the values
    valid on entry."""
    computed: list[sp.Symbol] = []
    reused: set[sp.Symbol] = set()

    def need(symbol):
        if symbol in invariants or symbol in computed:
            return
        if symbol in valid:
            reused.add(symbol)
            return
        for ref in sorted(defs[symbol].free_symbols & set(defs), key=list(defs).index):
            need(ref)
        computed.append(symbol)

    for root in sorted(roots, key=list(defs).index):
        need(root)
    return computed, reused


def _simulate(sweeps: list[SweepNeeds], defs: Definitions, state_deps: dict, valid_in: set,
              invariants: set):
    valid = set(valid_in)
    plans, from_head = [], set()
    computed_so_far: set = set()
    for sweep in sweeps:
        computed, reused = _resolve(sweep.roots, defs, valid, invariants)
        from_head |= {s for s in reused if s in valid_in and s not in computed_so_far}
        computed_so_far |= set(computed)
        valid |= set(computed)
        valid -= {s for s in valid if state_deps[s] & sweep.writes}
        plans.append((computed, reused))
    return plans, valid, from_head


def schedule_cycle(sweeps: list[SweepNeeds], defs: Definitions, state_deps: dict, invariants: set):
    """[(computed, reused)] per half-sweep, and the prologue's values.

    Starts from nothing valid at the loop head, then lets the head see what the end of the body
    leaves valid, until that is stable; the result is kept only if every value assumed valid at
    the head really is valid at the end of the body (so every iteration may reuse it)."""
    valid_in: set = set()
    for _ in range(len(sweeps) + 2):
        plans, valid_out, from_head = _simulate(sweeps, defs, state_deps, valid_in, invariants)
        if valid_out == valid_in:
            break
        valid_in = valid_out
    while True:
        plans, valid_out, from_head = _simulate(sweeps, defs, state_deps, valid_in, invariants)
        if valid_in <= valid_out:
            return plans, from_head
        valid_in &= valid_out
