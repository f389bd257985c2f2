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
from ..check.symbols import BETA, intermediate, owner_of, user_name
from ..ops import (AvgPool, BiasGrad, CostGrad, Flatten, GlobalAvgPool, MaxPool, MaxUnpool, MaxUnpoolAt,
                   PoolIndices, TensorOp, Unflatten, Upsample, WeightedOp, WeightGrad)

# operators linear in their (first) argument: a weighted operator of them is linear in the states
LINEAR_STRUCTURE = (Flatten, Unflatten, Upsample, AvgPool, GlobalAvgPool)
from .passes import SweepNeeds, fuse_pools, hoistable, invalidated, resolve, schedule_cycle, wavefront
from .program import (MOMENTUM, STEP, Assign, Factors, HalfSweep, Iteration, NudgedPhase, ParamProduct,
                      Phase, Plan, Relaxation, StateUpdate, local)


def make_plan(model: CheckedModel) -> Plan:
    return _Planner(model).plan()


def _with_pool_indices(model: CheckedModel) -> tuple[Definitions, dict, dict]:
    """The model's named intermediates, with the argmax positions of each named max-pool input
    after it (idx_h after z_h): every unpool then reads the positions the pool found, instead of
    running the pool again. Returns (definitions, z -> idx, lines)."""
    pooled, pool_of = {}, {}
    for name, expr in model.definitions.items():
        for node in sp.preorder_traversal(expr):
            if isinstance(node, MaxPool) and node.args[0] in model.definitions:
                pooled[node.args[0]] = node.args[1:]
                if expr == node:          # a_h = maxpool(z_h): the call returns both
                    pool_of[node.args[0]] = name
    defs, indices, lines = Definitions(), {}, dict(model.definition_lines)
    for symbol, expr in model.definitions.items():
        defs.define(symbol, expr)
        if symbol in pooled:
            indices[symbol] = defs.define(intermediate("idx", owner_of(symbol)), PoolIndices(symbol, *pooled[symbol]))
            lines[indices[symbol]] = lines.get(symbol)
    for z, a in pool_of.items():
        defs.companions[a] = indices[z]
    return defs, indices, lines


class _Planner:
    def __init__(self, model: CheckedModel):
        self.m = model
        self.defs, self.indices, self.lines = _with_pool_indices(model)
        self.state_symbols = {model.symbols[s] for s in model.states}
        config = model.ir.train
        self.momentum = config.relax_momentum
        self.state_deps = {s: self.defs.bases(self.defs[s]) & self.state_symbols for s in self.defs}

    # ------------------------------------------------------------------ helpers
    def assigns(self, symbols) -> list[Assign]:
        """The assignments of these intermediates, in the order given, the pools fused with their
        argmax positions."""
        return fuse_pools([Assign(s, self.defs[s], self.lines.get(s)) for s in symbols])

    def indexed(self, expr: sp.Expr) -> sp.Expr:
        """`expr` with every unpool of a named pool input reading that input's argmax positions."""
        def at(node):
            z = node.args[1]
            height, width = self.m.expr_shapes[z].value[1:]
            return MaxUnpoolAt(node.args[0], self.indices[z], *node.args[2:], sp.Integer(height), sp.Integer(width))
        return expr.replace(lambda e: isinstance(e, MaxUnpool) and e.args[1] in self.indices, at)

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
        factors = self.factors()
        forward, nudged = None, None
        if m.feedforward:
            nudged = self.nudged_phase(factors)
            # the free pass also finds the argmax positions the nudged phase reuses
            forward = self.forward(extra={s for s in nudged.carried if s in self.indices.values()})
            nudged.handed = [s for s in self.defs if s in set(nudged.carried) | set(nudged.moved_from)]
        return Plan(model=m, forward=forward, energies=self.energies(), state_grads=self.state_grads(),
                    relaxation=self.relaxation(), rest_values=self.rest_values(),
                    relax_step=config.relax_step, relax_momentum=config.relax_momentum, factors=factors,
                    nudged=nudged, definitions=self.defs,
                    predictions=self.predictions() if m.ir.generative else None)

    def forward(self, extra: frozenset = frozenset()) -> Phase:
        """The feedforward pass; `extra`: argmax positions of its pools it computes as well."""
        body, done = [], set()
        for state in self.m.feedforward:
            term = self.m.term_of(state)
            needed = [s for s in self.closure([term.prediction]) if s not in done]
            needed += [self.defs.companions[s] for s in needed if self.defs.companions.get(s) in extra]
            done |= set(needed)
            body += self.assigns(sorted(needed, key=list(self.defs).index))
            body.append(Assign(self.m.symbols[state], term.prediction, term.line))
        return Phase(body, [(s, self.m.symbols[s]) for s in self.m.states])

    def forward_values(self) -> set[sp.Symbol]:
        """The intermediates a free pass can hand on: what it computes, and the argmax positions
        of its pools."""
        computed = set(self.closure([self.m.term_of(s).prediction for s in self.m.feedforward]))
        return computed | {self.defs.companions[s] for s in computed if s in self.defs.companions}

    def predictions(self) -> Phase:
        """Every `~` term's prediction of its target (the input's among them): what a generative
        model reconstructs and samples from."""
        pairs = [(t.target, t.prediction) for t in self.m.terms if t.target is not None]
        return Phase(self.assigns(self.closure([p for _, p in pairs])), pairs)

    def energies(self) -> Phase:
        exprs = [t.energy for t in self.m.terms]
        return Phase(self.assigns(self.closure(exprs)), [(t.name, t.energy) for t in self.m.terms])

    def state_grads(self) -> Phase:
        results, nudges = [], []
        for state in self.m.states:
            gradient, nudge = self.nudged(self.indexed(self.m.rules[state].gradient), state)
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
    def update(self, state: str, zeros: Optional[dict] = None) -> tuple[StateUpdate, list[Assign]]:
        """The update of one state and the plan-local values it needs (nudge, delta, grad).
        `zeros` maps prediction errors known to be zero at this point (the wavefront) to 0."""
        rule = self.m.rules[state]
        h = self.m.symbols[state]
        domain = self.m.ir.variable(state).domain
        zeros = zeros or {}
        if rule.kind == "gradient":
            direction, nudge = self.nudged(self.indexed(rule.gradient.xreplace(zeros)), state)
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
        value, nudge = self.nudged(self.indexed(rule.update.xreplace(zeros)), state)
        locals_ = [nudge] if nudge else []
        mod_node = self.m.own_activation[state][0] if rule.mod_update is not None else None
        value, delta = self.split_delta(state, rule, value)
        if delta is not None:
            locals_.append(delta)
        return StateUpdate(state, h, "closed", value, mod_node=mod_node), locals_

    def group_updates(self, states: list[str], zeros: Optional[dict] = None
                      ) -> tuple[list[StateUpdate], list[Assign], set[sp.Symbol]]:
        """The updates of the states of one half-sweep, the plan-local values they need, and the
        intermediates all of them read (what the half-sweep must have valid)."""
        updates, locals_ = [], []
        for state in states:
            update, extra = self.update(state, zeros)
            updates.append(update)
            locals_ += extra
        exprs = [u.value for u in updates] + [a.value for a in locals_] + \
            [u.velocity.value for u in updates if u.velocity is not None]
        return updates, locals_, {s for e in exprs for s in e.free_symbols if s in self.defs}

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
        state_deps = self.state_deps

        per_group = [(group, *self.group_updates(group)) for group in m.groups]

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

    # ------------------------------------------------------------------ parameter gradients
    def factors(self) -> Factors:
        """The local factors of dE/dθ: each parameter's cotangent (named `g_<term>` when it is
        an expression, shared by a weight and its bias), its input, the energy."""
        m = self.m
        named: dict[sp.Expr, sp.Symbol] = {}
        cotangents, products = [], []
        owners_used: dict[str, int] = {}
        for name, gradient in m.param_gradients.items():
            param = m.params[name]
            v = self.indexed(gradient.cotangent)
            if not v.is_Symbol:
                if v not in named:
                    count = owners_used.get(param.owner, 0)
                    owners_used[param.owner] = count + 1
                    named[v] = local("cot", param.owner if count == 0 else f"{param.owner}:{count + 1}")
                    cotangents.append(Assign(named[v], v, next(t.line for t in m.terms if t.name == param.owner)))
                v = named[v]
            node = gradient.node
            if isinstance(node, WeightGrad):
                node = node.func(node.args[0], v, *node.args[2:])
                invariant = not (self.defs.bases(node.input) & self.state_symbols)
            else:
                node = BiasGrad(v, *node.args[1:])
                invariant = False
            products.append(ParamProduct(name, param.symbol, gradient.coefficient, node, invariant))
        energy = sp.Add(*(t.energy for t in m.terms))
        read = set()
        for product in products:
            read |= {product.node.args[1] if isinstance(product.node, WeightGrad) else product.node.args[0]}
            if isinstance(product.node, WeightGrad) and not product.invariant_input:
                read |= product.node.input.free_symbols
        passed = self.state_symbols | set(self.defs) | set(named.values())
        returned = self._ordered(read & passed)
        exprs = [a.value for a in cotangents] + [energy] + returned
        roots = [s for s in self.defs if any(s in e.free_symbols for e in exprs)]
        shared_inputs = [p.node.input for p in products if p.invariant_input]
        return Factors(roots=roots, body=self.assigns(self.closure(roots)), cotangents=cotangents, energy=energy,
                       returned=returned, products=products,
                       product_invariants=self.assigns(self.closure(shared_inputs)))

    def _ordered(self, symbols) -> list[sp.Symbol]:
        """States first (declaration order), then intermediates (definition order), then the rest
        (named cotangents, in name order)."""
        states = [self.m.symbols[s] for s in self.m.states if self.m.symbols[s] in symbols]
        inters = [s for s in self.defs if s in symbols]
        rest = sorted((s for s in symbols if s not in states and s not in inters), key=lambda s: s.name)
        return states + inters + rest

    # ------------------------------------------------------------------ the nudged phase of a PCN
    def nudged_phase(self, factors: Factors) -> NudgedPhase:
        m = self.m
        entry = self.forward_values()
        valid = set(entry)
        carried: set[sp.Symbol] = set()
        term_states = [t.states for t in m.terms]
        moved: set[str] = set()

        def block(roots, writes: set[str]):
            nonlocal valid
            computed, reused = resolve(roots, self.defs, valid)
            carried.update(s for s in reused if s in entry and s not in fresh)
            fresh.update(computed)
            valid = invalidated(valid | set(computed), {m.symbols[s] for s in writes}, self.state_deps)
            return computed, reused

        fresh: set[sp.Symbol] = set()
        moved_from: set[sp.Symbol] = set()
        exits = [set(valid)]
        peeled = []
        for number, live_sets in enumerate(wavefront(m.groups, term_states, m.ir.cost.output), start=1):
            sweeps = []
            for index, live in enumerate(live_sets):
                if live:
                    zeros = {intermediate("eps", t.target): sp.Integer(0) for t in m.terms
                             if t.target is not None and not (t.states & moved)}
                    updates, locals_, roots = self.group_updates(live, zeros)
                    computed, reused = block(roots, set(live))
                    sweeps.append(HalfSweep(index, live, self.moved_assigns(computed, moved_from) + locals_,
                                            sorted(reused, key=list(self.defs).index), updates))
                moved |= set(live)
            peeled.append(Iteration(number, sweeps))
            exits.append(set(valid))

        # the steady loop: every state moves; the carry between its half-sweeps as in relax()
        per_group = [(group, *self.group_updates(group)) for group in m.groups]
        needs = [SweepNeeds(roots, {m.symbols[s] for s in group}) for group, _, _, roots in per_group]
        schedule, from_head = schedule_cycle(needs, self.defs, self.state_deps, set())
        before, _ = block(from_head - valid, set())
        loop_valid = set(valid)
        loop = []
        carried.update(s for s in from_head if s in entry and s not in fresh)
        for index, ((group, updates, locals_, _), (computed, reused)) in enumerate(zip(per_group, schedule)):
            loop.append(HalfSweep(index, group, self.moved_assigns(computed, moved_from) + locals_,
                                  sorted(reused, key=list(self.defs).index), updates))
            loop_valid = invalidated(loop_valid | set(computed), {m.symbols[s] for s in group}, self.state_deps)
        exits.append(loop_valid)

        at_exit = set.intersection(*exits)
        computed, reused = resolve(factors.roots, self.defs, at_exit)
        carried.update(s for s in reused if s in entry)
        velocities = [local("velocity", s) for s in m.states if m.rules[s].kind == "gradient" and self.momentum]
        before_loop, epilogue = self.moved_assigns(before, moved_from), self.moved_assigns(computed, moved_from)
        return NudgedPhase(carried=[s for s in self.defs if s in carried], peeled=peeled,
                           before_loop=before_loop, loop=loop, epilogue=epilogue, velocities=velocities,
                           moved_from=[s for s in self.defs if s in moved_from])

    def moved_assigns(self, symbols, moved_from: set) -> list[Assign]:
        """The assignments of a nudged phase: an intermediate affine in the states is its free
        value plus the linear part of the states' moves (z_h2 = free z_h2 + W·(h1 - free h1)),
        which keeps the small difference exact when the products run in bfloat16. The free
        values it reads are added to `moved_from`."""
        assigns = []
        for assign in self.assigns(symbols):
            moved = self.moved_form(assign.target) if not isinstance(assign.target, tuple) else None
            if moved is not None:
                moved_from.add(assign.target)
                assign = Assign(assign.target, moved, assign.line)
            assigns.append(assign)
        return assigns

    def moved_form(self, symbol: sp.Symbol) -> Optional[sp.Expr]:
        """free(symbol) + Σ W·L(Δ) when `symbol` is a sum of state-free terms and weighted
        operators of linear functions L of the states (L(h) - L(h_free) = L(h - h_free)); None
        otherwise."""
        moves = []
        for term in sp.Add.make_args(self.defs[symbol]):
            if not (self.defs.bases(term) & self.state_symbols):
                continue                          # bias, invariants: in the free value already
            coefficient, node = term.as_coeff_Mul()
            if not (isinstance(node, WeightedOp) and self._linear(node.args[1])):
                return None
            delta = {s: s - local("free", user_name(s)) for s in node.args[1].free_symbols if s in self.state_symbols}
            moves.append(coefficient * node.func(node.args[0], node.args[1].xreplace(delta), *node.args[2:]))
        return local("carried", symbol.name) + sp.Add(*moves) if moves else None

    def _linear(self, expr: sp.Expr) -> bool:
        """Linear in the states: states through flatten, pools that average, upsampling, sums."""
        if expr in self.state_symbols:
            return True
        if isinstance(expr, sp.Add):
            return all(self._linear(a) for a in expr.args)
        if isinstance(expr, sp.Mul):
            coefficient, rest = expr.as_coeff_Mul()
            return coefficient.is_number and self._linear(rest)
        if isinstance(expr, LINEAR_STRUCTURE):
            return self._linear(expr.args[0])
        return False



