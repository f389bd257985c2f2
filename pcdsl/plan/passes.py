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
#
# The wavefront (PCNs): at the free state every prediction error is zero, so a state's gradient
# is zero, and its update leaves it where it is, until a term it belongs to holds a state that
# has moved. The output moves first (the cost's pull); each half-sweep then moves the states
# that share a term with a moved one. `wavefront` lists, per iteration, the states each
# half-sweep really moves, until an iteration moves all of them (or no more ever will): those
# iterations are peeled off the loop and reduced to their live states.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from ..check.algebra import Definitions
from ..ops import MaxPool, MaxPoolWithIndices, PoolIndices


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
        companion = defs.companions.get(symbol)
        if companion is not None and companion not in computed and companion not in valid:
            computed.append(companion)

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


def resolve(roots, defs: Definitions, valid: set) -> tuple[list, set]:
    """What a straight-line block computes (in dependency order) and what it reuses, given the
    values valid on entry (no separate invariants: they are among the valid values)."""
    return _resolve(roots, defs, valid, set())


def invalidated(valid: set, writes: set, state_deps: dict) -> set:
    """The values still valid after the states `writes` change."""
    return {s for s in valid if not (state_deps[s] & writes)}


def wavefront(groups: list[list[str]], term_states: list[set[str]], output: str) -> list[list[list[str]]]:
    """The states each half-sweep moves, per iteration, for the iterations in which some state
    does not move yet. A state moves when it is the output or belongs to a term holding a moved
    state; states of one group update from the same values, so they see what earlier groups of
    the same iteration moved."""
    moved: set[str] = set()
    iterations: list[list[list[str]]] = []
    previous = None
    while True:
        live_sets = []
        for group in groups:
            live = [s for s in group if s == output or any(s in t and t & moved for t in term_states)]
            live_sets.append(live)
            moved |= set(live)
        if all(len(live) == len(group) for live, group in zip(live_sets, groups)) or live_sets == previous:
            return iterations
        iterations.append(live_sets)
        previous = live_sets


def fuse_pools(assigns: list) -> list:
    """`a = maxpool(z)` and `idx = argmax_positions(z)` in one block become one call returning
    both, at the place of the first of them (both read only z, which comes before either)."""
    from .program import Assign
    out = list(assigns)
    for i, assign in enumerate(assigns):
        if not isinstance(assign.value, PoolIndices):
            continue
        pool = MaxPool(*assign.value.args)
        j = next((j for j, other in enumerate(out) if other is not None and other.value == pool), None)
        if j is None:
            continue
        first, second = min(i, j), max(i, j)
        out[first] = Assign((out[j].target, assign.target), MaxPoolWithIndices(*assign.value.args), out[j].line)
        out[second] = None
    return [a for a in out if a is not None]
