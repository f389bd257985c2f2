# ---------------------------------------------------------------------------------------------
# CheckedModel -> Plan: decide what every phase of the compiled module computes.
#
# The update of each state comes from its rule (check/derive.py). Two readability steps are
# taken here, not in a printer: the cost's pull beta * dC/do is named `nudge_o` (and only
# evaluated when beta != 0), and a closed-form update h <- Proj(act(a) + delta) names its
# top-down drive `delta_h`, as METHOD.md writes it. The passes then hoist loop invariants out of
# the relaxation and plan the carry between half-sweeps.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

from typing import Optional

import sympy as sp

from ..check.algebra import Definitions
from ..check.derive import projection
from ..check.model import CheckedModel
from ..check.symbols import BETA
from ..ops import CostGrad, TensorOp, WeightedOp
from .passes import SweepNeeds, hoistable, schedule_cycle
from .program import MOMENTUM, STEP, Assign, HalfSweep, Phase, Plan, Relaxation, StateUpdate, local


def make_plan(model: CheckedModel) -> Plan:
    return _Planner(model).plan()


class _Planner:
    def __init__(self, model: CheckedModel):
        self.m = model
        self.defs: Definitions = model.definitions
        self.state_symbols = {model.symbols[s] for s in model.states}
        config = model.ir.train
        self.momentum = config.relax_momentum

    # ------------------------------------------------------------------ helpers
    def assigns(self, symbols) -> list[Assign]:
        return [Assign(s, self.defs[s], self.m.definition_lines.get(s)) for s in symbols]

    def closure(self, exprs) -> list[sp.Symbol]:
        return self.defs.closure(list(exprs))

    def nudged(self, expr: sp.Expr, state: str) -> tuple[sp.Expr, Optional[Assign]]:
        """`expr` with beta * dC/dh replaced by the named nudge, and that nudge's assignment."""
        if not expr.has(CostGrad):
            return expr, None
        nudge = local("nudge", state)
        pull = BETA * self.m.cost_grad
        replaced = expr.replace(lambda e: isinstance(e, sp.Mul) and BETA in e.args and self.m.cost_grad in e.args,
                                lambda e: nudge * (e / pull))
        return replaced, Assign(nudge, pull, guard="beta")

    # ------------------------------------------------------------------ the phases
    def plan(self) -> Plan:
        m = self.m
        config = m.ir.train
        return Plan(model=m, forward=self.forward() if m.feedforward else None,
                    energies=self.energies(), state_grads=self.state_grads(),
                    relaxation=self.relaxation(), rest_values=self.rest_values(),
                    relax_step=config.relax_step, relax_momentum=config.relax_momentum)

    def forward(self) -> Phase:
        body, done = [], set()
        for state in self.m.feedforward:
            term = self.m.term_of(state)
            needed = [s for s in self.closure([term.prediction]) if s not in done]
            done |= set(needed)
            body += self.assigns(needed)
            body.append(Assign(self.m.symbols[state], term.prediction, term.line))
        return Phase(body, [(s, self.m.symbols[s]) for s in self.m.states])

    def energies(self) -> Phase:
        exprs = [t.energy for t in self.m.terms]
        return Phase(self.assigns(self.closure(exprs)), [(t.name, t.energy) for t in self.m.terms])

    def state_grads(self) -> Phase:
        results, nudges = [], []
        for state in self.m.states:
            gradient, nudge = self.nudged(self.m.rules[state].gradient, state)
            results.append((state, gradient))
            nudges += [nudge] if nudge else []
        return Phase(self.assigns(self.closure([g for _, g in results])) + nudges, results)

    def rest_values(self) -> dict[str, float]:
        """The point of each state's domain nearest 0: where a relaxation from rest starts."""
        values = {}
        for var in self.m.ir.free_states:
            value = 0.0
            if var.domain.low is not None:
                value = max(value, var.domain.low)
            if var.domain.high is not None:
                value = min(value, var.domain.high)
            values[var.name] = value
        return values

    # ------------------------------------------------------------------ the relaxation
    def update(self, state: str) -> tuple[StateUpdate, list[Assign]]:
        """The update of one state and the plan-local values it needs (nudge, delta, grad)."""
        rule = self.m.rules[state]
        h = self.m.symbols[state]
        domain = self.m.ir.variable(state).domain
        if rule.kind == "gradient":
            direction, nudge = self.nudged(rule.gradient, state)
            grad = local("grad", state)
            locals_ = ([nudge] if nudge else []) + [Assign(grad, direction)]
            velocity = None
            if self.momentum:
                v = local("velocity", state)
                velocity = Assign(v, MOMENTUM * v + grad)
                grad = v
            value, _ = projection(domain, h - STEP * grad)
            return StateUpdate(state, h, "gradient", value, velocity=velocity,
                               note=f"gradient step: {rule.reason}"), locals_
        value, nudge = self.nudged(rule.update, state)
        locals_ = [nudge] if nudge else []
        mod_node = self.m.own_activation[state][0] if rule.mod_update is not None else None
        value, delta = self.split_delta(state, rule, value)
        if delta is not None:
            locals_.append(delta)
        return StateUpdate(state, h, "closed", value, mod_node=mod_node), locals_

    def split_delta(self, state: str, rule, value: sp.Expr) -> tuple[sp.Expr, Optional[Assign]]:
        """Name the top-down drive: h <- Proj(own prediction + delta_h), as in METHOD.md."""
        own = self.m.own_activation.get(state, (None,))[0]
        if own is None or rule.curvature != 1:
            return value, None
        inner = value.args[0] if rule.projection != "none" else value
        parts = sp.Add.make_args(inner)
        if own not in parts:
            return value, None
        delta_expr = sp.Add(*(p for p in parts if p != own))
        if not any(isinstance(node, TensorOp) and not isinstance(node, WeightedOp) and node.linear_arg is not None
                   for node in sp.preorder_traversal(delta_expr)):
            return value, None
        delta = local("delta", state)
        projected = own + delta
        new_value = value.func(projected, *value.args[1:]) if rule.projection != "none" else projected
        return new_value, Assign(delta, delta_expr)

    def relaxation(self) -> Relaxation:
        m = self.m
        invariants = set(hoistable(self.defs, self.state_symbols))
        state_deps = {s: self.defs.bases(self.defs[s]) & self.state_symbols for s in self.defs}

        per_group = []
        for group in m.groups:
            updates, locals_ = [], []
            for state in group:
                update, extra = self.update(state)
                updates.append(update)
                locals_ += extra
            exprs = [u.value for u in updates] + [a.value for a in locals_] + \
                [u.velocity.value for u in updates if u.velocity is not None]
            roots = {s for e in exprs for s in e.free_symbols if s in self.defs}
            per_group.append((group, updates, locals_, roots))

        needs = [SweepNeeds(roots, {m.symbols[s] for s in group}) for group, _, _, roots in per_group]
        schedule, carried = schedule_cycle(needs, self.defs, state_deps, invariants)
        sweeps = []
        for index, ((group, updates, locals_, _), (computed, reused)) in enumerate(zip(per_group, schedule)):
            sweeps.append(HalfSweep(index, group, self.assigns(computed) + locals_,
                                    sorted(reused, key=list(self.defs).index), updates))

        all_updates = [u for s in sweeps for u in s.updates]
        all_locals = [a for (_, _, locals_, _) in per_group for a in locals_]
        all_roots = set().union(*(roots for *_, roots in per_group))
        needed = self.closure(list(all_roots))
        synchronous = HalfSweep(0, m.states, self.assigns(s for s in needed if s not in invariants) + all_locals,
                                [], all_updates)
        return Relaxation(invariants=self.assigns(s for s in needed if s in invariants),
                          prologue=self.assigns(s for s in self.closure(list(carried)) if s not in invariants),
                          sweeps=sweeps, synchronous=synchronous,
                          velocities=[u.velocity.target for u in all_updates if u.velocity is not None])
