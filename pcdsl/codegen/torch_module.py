# ---------------------------------------------------------------------------------------------
# Plan -> one standalone PyTorch module (source text).
#
# The printer of the torch target: it decides nothing about what is computed (the plan did),
# only how it reads. The output is deterministic (same model file and sizes -> same bytes),
# imports only torch, and is laid out the way a careful person writes it by hand: the helper
# functions it calls, parameters with the .pc line they come from, the free phase, the
# energies, the state gradients, the relaxation with its half-sweeps unrolled and the
# parameter gradients. The learning algorithms (EP, backprop) live in the runtime and drive
# the module through these members (pcdsl/runtime/protocol.py).
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import os
from typing import Iterable, Optional

import sympy as sp

from .. import __version__
from ..check.symbols import role_of, user_name
from ..ops import COSTS, HELPERS, WeightGrad
from ..ops.linear import PHASE_SUM
from ..plan.program import Assign, HalfSweep, Plan, StateUpdate, local
from .names import attribute_namespace, local_namespace
from .notation import plain
from .printer import TorchPrinter
from .text import comment, docstring_line, literal

INDENT = "    "
# the readable name of each kind of plan-local value: nudge:o -> nudge_o, next:h1 -> h1_next
_LOCAL_NAMES = {"nudge": "nudge_{}", "delta": "delta_{}", "grad": "grad_{}", "velocity": "v_{}",
                "next": "{}_next", "cot": "g_{}"}
_FIXED = {"aux:beta": "beta", "aux:relax_step": "self.RELAX_STEP", "aux:relax_momentum": "self.RELAX_MOMENTUM"}


class Writer:
    def __init__(self):
        self.lines: list[str] = []
        self.depth = 0

    def line(self, text: str = "") -> None:
        self.lines.append((INDENT * self.depth + text) if text else "")

    def block(self, texts: Iterable[str]) -> None:
        for text in texts:
            self.line(text)

    def indent(self):
        writer = self

        class _Indent:
            def __enter__(self):
                writer.depth += 1

            def __exit__(self, *exc):
                writer.depth -= 1
        return _Indent()

    def text(self) -> str:
        return "\n".join(self.lines).rstrip() + "\n"


class TorchModuleGenerator:
    """The PyTorch target. `generate(plan)` returns the module source."""

    target = "torch"

    def generate(self, plan: Plan) -> str:
        return _ModuleWriter(plan).write()


class _ModuleWriter:
    def __init__(self, plan: Plan):
        self.plan = plan
        self.m = plan.model
        self.ir = plan.model.ir
        self.w = Writer()
        self.source_lines = self.ir.text.split("\n")
        self.locals = local_namespace()
        self.attrs = attribute_namespace()
        self.bias_views = {p.symbol: p.broadcast for p in self.m.params.values() if p.kind == "bias"}
        # names in a fixed order, so that who yields to whom never depends on printing order
        input_symbol = self.m.symbols[self.ir.input.name]
        if self.ir.input.name == "x":
            self.locals._given[input_symbol] = "x"      # the methods' own parameter
        else:
            self.locals.name(input_symbol, self.ir.input.name)
        for state in self.m.states:
            self.locals.name(self.m.symbols[state], state)
        for param in self.m.params.values():
            self.attrs.name(param.symbol, param.name)
        for symbol in plan.definitions:
            self.locals.name(symbol, user_name(symbol))
        self.printer = TorchPrinter(self.name_of, self.bias_views.get, self.locals[input_symbol])

    # ------------------------------------------------------------------ names and printing
    def name_of(self, symbol: sp.Symbol) -> str:
        if symbol.name in _FIXED:
            return _FIXED[symbol.name]
        role = role_of(symbol)
        if role == "param":
            return "self." + self.attrs.name(symbol, user_name(symbol))
        if role == "label":
            return "label"
        if role == "aux":
            kind, owner = symbol.name.split(":", 2)[1:]
            if kind == "free":           # a free state, in nudged_phase
                return f"free[{literal(owner)}]"
            if kind == "carried":        # a value of the free pass, in nudged_phase
                return f"carry[{literal(self.name_of(sp.Symbol(owner)))}]"
            # a state's local name; a term's own name (energy terms, named cotangents) otherwise
            owner_text = self.locals[self.m.symbols[owner]] if owner in self.m.symbols else owner
            return self.locals.name(symbol, _LOCAL_NAMES[kind].format(owner_text))
        return self.locals.name(symbol, user_name(symbol))

    def p(self, expr: sp.Expr, mod_node: Optional[sp.Expr] = None) -> str:
        printer = self.printer if mod_node is None else self.printer.with_mod_node(mod_node)
        return printer.doprint(expr)

    def plain(self, expr: sp.Expr) -> str:
        """Math-like text with the module's identifiers, for docstrings and comments."""
        return plain(expr, lambda s: self.name_of(s).removeprefix("self."))

    def src(self, line: int) -> str:
        text = self.source_lines[line - 1].strip() if 0 < line <= len(self.source_lines) else ""
        return comment(f"{self.file_name}:{line}" + (f"  {text}" if text else ""))

    @property
    def file_name(self) -> str:
        return os.path.basename(self.ir.file)

    def states_read(self, exprs: Iterable[sp.Expr]) -> list[str]:
        used: set = set()
        for expr in exprs:
            used |= self.plan.definitions.bases(expr)
        return [s for s in self.m.states if self.m.symbols[s] in used]

    def unpack_states(self, names: list[str], source: str = "states") -> None:
        if not names:
            return
        targets = ", ".join(self.locals[self.m.symbols[n]] for n in names)
        values = ", ".join(f"{source}[{literal(n)}]" for n in names)
        self.w.line(f"{targets} = {values}")

    def bind_input(self) -> None:
        name = self.locals[self.m.symbols[self.ir.input.name]]
        if name != "x":
            self.w.line(f"{name} = x")

    def assigns(self, assigns: list[Assign]) -> None:
        last_line = None
        for assign in assigns:
            if assign.line is not None and assign.line != last_line:
                self.w.line(f"# {self.src(assign.line)}")
                last_line = assign.line
            targets = assign.target if isinstance(assign.target, tuple) else (assign.target,)
            target = ", ".join(self.name_of(t) for t in targets)
            if assign.guard == "beta":
                output = self.locals[self.m.symbols[self.ir.cost.output]]
                self.w.line("# the cost's pull on the output, at its current value")
                self.w.line(f"{target} = {self.p(assign.value)} if beta else torch.zeros_like({output})")
            else:
                self.w.line(f"{target} = {self.p(assign.value)}")

    def results_dict(self, pairs: list[tuple[str, sp.Expr]]) -> None:
        self.w.line("return {")
        with self.w.indent():
            for key, expr in pairs:
                self.w.line(f"{literal(key)}: {self.p(expr)},")
        self.w.line("}")

    def states_dict(self) -> str:
        return "{" + ", ".join(f"{literal(s)}: {self.locals[self.m.symbols[s]]}" for s in self.m.states) + "}"

    def dict_text(self, symbols) -> str:
        """{"name": name, ...} of values keyed by their identifiers in the module."""
        return "{" + ", ".join(f"{literal(self.name_of(s))}: {self.name_of(s)}" for s in symbols) + "}"

    def unpack(self, symbols, source: str) -> None:
        """name_a, name_b = source["name_a"], source["name_b"] (one per line when that is long)."""
        names = [self.name_of(s) for s in symbols]
        line = f"{', '.join(names)} = {', '.join(f'{source}[{literal(n)}]' for n in names)}"
        if len(line) + len(INDENT) * self.w.depth <= 100:
            self.w.line(line)
            return
        for name in names:
            self.w.line(f"{name} = {source}[{literal(name)}]")

    def dict_lines(self, target: str, symbols) -> None:
        """target = {"name": name, ...}, one entry per line when long."""
        line = f"{target} = {self.dict_text(symbols)}"
        if len(line) + len(INDENT) * self.w.depth <= 100:
            self.w.line(line)
            return
        self.w.line(f"{target} = {{")
        with self.w.indent():
            for symbol in symbols:
                self.w.line(f"{literal(self.name_of(symbol))}: {self.name_of(symbol)},")
        self.w.line("}")

    # ------------------------------------------------------------------ the module
    def write(self) -> str:
        self.w.line("class Model(torch.nn.Module):")
        with self.w.indent():
            self.class_doc()
            self.constants()
            self.init()
            self.reset_parameters()
            self.forward()
            self.cost()
            self.energies()
            self.state_grads()
            self.relax()
            self.nudged_phase()
            self.factors()
            self.param_grads_from()
            self.param_grads()
        body = self.w.text()
        head = Writer()
        self.header(head)
        head.line("import math")
        head.line()
        head.line("import torch")
        head.line("import torch.nn.functional as F")
        for name in HELPERS:               # in their definition order: stable output
            if name in self.printer.helpers_used:
                head.line()
                head.line()
                head.block(HELPERS[name].rstrip("\n").split("\n"))
        head.line()
        head.line()
        return head.text() + "\n\n" + body

    def header(self, w: Writer) -> None:
        w.line(comment(f"# Generated by pcdsl {__version__} from {self.file_name} "
                       f"(sha256 {self.ir.source_sha256[:16]}). Do not edit: change the .pc file and recompile."))
        sizes = ", ".join(f"{s.name}={s.value}" for s in self.ir.sizes)
        if sizes:
            w.line(f"# Sizes: {sizes}")
        w.line(f'"""{self.ir.name}: compiled from {docstring_line(self.file_name)} by pcdsl.')
        w.line()
        for index, term in enumerate(self.m.terms):
            formula = (f"1/2 |{self.plain(self.m.symbols[term.target])} - {self.plain(term.prediction)}|^2"
                       if term.target is not None else self.plain(term.energy))
            w.line(docstring_line(("Energy  E = " if index == 0 else "          + ") + formula))
        if self.ir.cost is not None:
            w.line(f"Cost    C = {self.ir.cost.kind}({self.ir.cost.output}, {self.ir.cost.label})")
        else:
            w.line(f"No cost: a generative model, the states relax to explain the input {self.ir.input.name}")
        shown = [s for s in self.m.definitions if not s.name.startswith("inter:eps:")]
        if shown:
            w.line("where")
            for symbol in shown:
                w.line(docstring_line(f"    {self.plain(symbol)} = {self.plain(self.m.definitions[symbol])}"))
        w.line(f"Updates (derived from {'E + beta*C' if self.ir.cost is not None else 'E'}; closed forms are alpha = 1 projected steps, mod-PGD form "
               "where it differs):")
        for group_index, group in enumerate(self.m.groups):
            for state in group:
                rule = self.m.rules[state]
                if rule.kind == "closed":
                    shown_update = self.plain(rule.mod_update if rule.mod_update is not None else rule.update)
                else:
                    shown_update = f"{self._proj_text(state)}({state} - step * ∂F/∂{state})   [gradient step]"
                w.line(docstring_line(f"    [group {group_index}] {self.plain(self.m.symbols[state])} <- {shown_update}"))
        w.line('"""')

    def _proj_text(self, state: str) -> str:
        projection = self.m.rules[state].projection
        return "" if projection == "none" else projection

    def class_doc(self) -> None:
        kind = ("a predictive coding network: the free phase is the feedforward pass"
                if self.m.feedforward else "a layered energy model: the free phase is a relaxation from rest")
        self.w.line(f'"""{self.ir.name}, {kind}."""')
        self.w.line()

    def constants(self) -> None:
        ir, m = self.ir, self.m
        output = ir.cost.output if ir.cost is not None else None
        groups = ", ".join(_tuple(g) for g in m.groups)
        self.w.line(f"NAME = {literal(ir.name)}")
        self.w.line(f"SOURCE = {literal(self.file_name)}")
        self.w.line(f"SOURCE_SHA256 = {literal(ir.source_sha256)}")
        self.w.line(f"INPUT = {literal(ir.input.name)}")
        self.w.line(f"INPUT_SHAPE = {tuple(m.shapes[ir.input.name].value)}")
        self.w.line(f"STATES = {_tuple(m.states)}")
        self.w.line("STATE_SHAPES = {")
        with self.w.indent():
            for state in m.states:
                self.w.line(f"{literal(state)}: {tuple(m.shapes[state].value)},")
        self.w.line("}")
        if output is None:
            self.w.line("# a generative model: the input is predicted, there is no output or cost")
            self.w.line("OUTPUT = None")
            self.w.line("NUM_CLASSES = None")
            self.w.line("COST = None")
        else:
            self.w.line(f"OUTPUT = {literal(output)}")
            self.w.line(f"NUM_CLASSES = {m.shapes[output].value[0]}")
            self.w.line(f"COST = {literal(ir.cost.kind)}")
        self.w.line(f"FEEDFORWARD = {bool(m.feedforward)}")
        self.w.line(f"UPDATE_GROUPS = ({groups}{',' if len(m.groups) == 1 else ''})")
        rules = ", ".join(f"{literal(s)}: {literal(m.rules[s].kind)}" for s in m.states)
        self.w.line(f"UPDATE_RULES = {{{rules}}}")
        self.w.line("# (low, high) bounds of each state's domain, None where it is unbounded")
        self.w.line("STATE_BOUNDS = {")
        with self.w.indent():
            for var in ir.free_states:
                self.w.line(f"{literal(var.name)}: ({var.domain.low!r}, {var.domain.high!r}),")
        self.w.line("}")
        self.w.line("# the parameters of each energy term")
        self.w.line("TERM_PARAMETERS = {")
        with self.w.indent():
            for term in m.terms:
                owned = [self.attrs[param.symbol] for param in m.params.values() if param.owner == term.name]
                self.w.line(f"{literal(term.name)}: {_tuple(owned)},")
        self.w.line("}")
        if m.feedforward:
            self.w.line("# each state's layer: the longest chain of predictions from the input to it")
            depths = ", ".join(f"{literal(s)}: {d}" for s, d in m.layer_depths.items())
            self.w.line(f"LAYERS = {{{depths}}}")
        self.w.line(f"FREE_STEPS = {ir.train.free_steps}")
        self.w.line("# states relaxed by gradient steps: h <- Proj(h - RELAX_STEP * v), v <- RELAX_MOMENTUM * v + dF/dh")
        self.w.line(f"RELAX_STEP = {self.plan.relax_step!r}")
        self.w.line(f"RELAX_MOMENTUM = {self.plan.relax_momentum!r}")
        self.w.line()

    def init(self) -> None:
        self.w.line("def __init__(self):")
        with self.w.indent():
            self.w.line("super().__init__()")
            term_lines = {t.name: t.line for t in self.m.terms}
            last_owner = None
            for param in self.m.params.values():
                if param.owner != last_owner:
                    self.w.line(f"# {self.src(term_lines[param.owner])}")
                    last_owner = param.owner
                dims = ", ".join(str(d) for d in param.shape)
                self.w.line(f"{self.name_of(param.symbol)} = torch.nn.Parameter(torch.empty({dims}))")
            self.w.line("self.reset_parameters()")
        self.w.line()

    def reset_parameters(self) -> None:
        cfg = self.ir.train
        self.w.line("# (parameter, fan, gain): U(-c, c) with c = gain * sqrt(1 / fan), "
                    f"fan = fan_{cfg.init_fan} of the term's weight")
        self.w.line("INIT = (")
        with self.w.indent():
            for param in self.m.params.values():
                fan, gain = _init_of(self.m, param)
                self.w.line(f"({literal(self.attrs[param.symbol])}, {fan}, {gain!r}),")
        self.w.line(")")
        self.w.line()
        self.w.line("def reset_parameters(self, generator=None):")
        with self.w.indent():
            self.w.line("with torch.no_grad():")
            with self.w.indent():
                self.w.line("for name, fan, gain in self.INIT:")
                with self.w.indent():
                    self.w.line("bound = gain * math.sqrt(1.0 / fan)")
                    self.w.line("getattr(self, name).uniform_(-bound, bound, generator=generator)")
        self.w.line()

    def forward(self) -> None:
        phase = self.plan.forward
        self.w.line("def forward(self, x, steps=None):")
        with self.w.indent():
            if phase is not None:
                self.w.line('"""Free phase: the feedforward pass, the zero-energy equilibrium (`steps` is unused)."""')
                self.w.line("return self.free_phase(x)[0]")
            else:
                self.w.line('"""Free phase: relax from rest at beta = 0 (FREE_STEPS iterations unless `steps`)."""')
                self.w.line("return self.relax(x, self.initial_states(x), None, 0.0, "
                            "self.FREE_STEPS if steps is None else steps)")
        self.w.line()
        self.w.line("def free_phase(self, x, steps=None):")
        with self.w.indent():
            if phase is not None:
                self.w.line('"""The feedforward pass, and what the nudged phases reuse from it: (states, carry)."""')
                self.bind_input()
                self.assigns(phase.body)
                self.dict_lines("carry", self.plan.nudged.handed)
                self.w.line(f"return {self.states_dict()}, carry")
            else:
                self.w.line('"""The free phase and what the nudged phases reuse from it (nothing: they start with a')
                self.w.line('relaxation of their own): (states, carry)."""')
                self.w.line("return self.forward(x, steps), {}")
        self.w.line()
        if phase is None:
            self.w.line("def initial_states(self, x):")
            with self.w.indent():
                self.w.line('"""Where a relaxation from rest starts: every state at the point of its domain nearest 0."""')
                self.w.line("batch = x.shape[0]")
                self.w.line("return {")
                with self.w.indent():
                    for state in self.m.states:
                        shape = ", ".join(str(d) for d in self.m.shapes[state].value)
                        rest = self.plan.rest_values[state]
                        value = "x.new_zeros" if rest == 0 else "x.new_full"
                        fill = "" if rest == 0 else f", {rest!r}"
                        self.w.line(f"{literal(state)}: {value}((batch, {shape}){fill}),")
                self.w.line("}")
            self.w.line()

    def cost(self) -> None:
        if self.ir.cost is None:
            self.predictions()
            return
        out, classes = self.ir.cost.output, self.m.shapes[self.ir.cost.output].value[0]
        cost = COSTS[self.ir.cost.kind]
        self.printer.helpers_used.update(cost.helpers)
        self.w.line("def cost(self, states, label):")
        with self.w.indent():
            self.w.line(f'"""Per-example cost {self.ir.cost.kind}({docstring_line(out)}, label), shape [B]."""')
            self.w.line(f"return {cost.torch_cost(f'states[{literal(out)}]', classes)}")
        self.w.line()
        self.w.line("def cost_grad(self, output, label):")
        with self.w.indent():
            self.w.line(f'"""dC/d{docstring_line(out)} at the current output state: {cost.gradient}."""')
            self.w.line(f"return {cost.torch_grad('output', classes)}")
        self.w.line()

    def per_term_method(self, name: str, doc: str, phase) -> None:
        """def name(self, x, states): one entry per term of `phase`, from the states it reads."""
        self.w.line(f"def {name}(self, x, states):")
        with self.w.indent():
            self.w.line(f'"""{doc}"""')
            self.bind_input()
            self.unpack_states(self.states_read(e for _, e in phase.results))
            self.assigns(phase.body)
            self.results_dict(phase.results)
        self.w.line()

    def predictions(self) -> None:
        self.per_term_method("predictions", "The prediction of every `~` term at `states`, the input's among them "
                             "(its reconstruction).", self.plan.predictions)

    def energies(self) -> None:
        self.per_term_method("energies", "Per-term energy, each of shape [B].", self.plan.energies)
        self.w.line("def energy(self, x, states):")
        with self.w.indent():
            self.w.line('"""Total energy E, shape [B]."""')
            self.w.line("return sum(self.energies(x, states).values())")
        self.w.line()

    def state_grads(self) -> None:
        phase = self.plan.state_grads
        self.w.line("def state_grads(self, x, states, label=None, beta=0.0):")
        with self.w.indent():
            self.w.line('"""dF/dh of F = E + beta * C at `states`, for every state (derived, explicit adjoints)."""')
            self.bind_input()
            self.unpack_states(self.states_read([e for _, e in phase.results] + [a.value for a in phase.body]))
            self.assigns(phase.body)
            self.results_dict(phase.results)
        self.w.line()

    # ------------------------------------------------------------------ the relaxation
    def update_text(self, update: StateUpdate) -> str:
        if update.value.is_number:       # an energy that pins the state to a constant
            return f"torch.full_like({self.name_of(update.symbol)}, {self.p(update.value)})"
        return self.p(update.value, update.mod_node)

    def sweep_updates(self, sweep: HalfSweep, into_next: bool) -> None:
        for update in sweep.updates:
            if update.velocity is not None:
                self.assigns([update.velocity])
            if update.note:
                self.w.line(f"# {comment(update.note)}")
            if update.mod_node is not None:
                pre = self.plain(update.mod_node.args[0])
                self.w.line(f"# mod-PGD projects {pre} + delta; PGD projects {self.plain(update.mod_node)} + delta")
            target = self.name_of(update.symbol)
            if into_next:
                target = self.name_of(_next(update.symbol))
            self.w.line(f"{target} = {self.update_text(update)}")

    def relax(self) -> None:
        relaxation = self.plan.relaxation
        self.w.line("def relax(self, x, states, label, beta, steps, mod=True, synchronous=False):")
        with self.w.indent():
            self.w.line('"""`steps` iterations of the update rules of F = E + beta * C, from `states`.')
            self.w.line()
            self.w.line("Asynchronous (the default): the update groups in turn, each reading what the one before")
            self.w.line("wrote; synchronous: every group from the same old states, each state moving half way.")
            self.w.line('`mod` selects mod-PGD for the closed-form updates that have one."""')
            self.bind_input()
            self.unpack_states(self.m.states)
            if relaxation.invariants:
                self.w.line("# loop invariants: they depend only on the input and the parameters")
                self.assigns(relaxation.invariants)
            for velocity in relaxation.velocities:
                state = velocity.name.split(":", 2)[2]
                self.w.line(f"{self.name_of(velocity)} = torch.zeros_like({self.locals[self.m.symbols[state]]})")
            if len(relaxation.sweeps) == 1:
                self.w.line("# one update group: the synchronous and asynchronous traversals coincide")
                self.loop(relaxation.sweeps, relaxation.prologue)
            else:
                self.w.line("if synchronous:")
                with self.w.indent():
                    self.synchronous_loop(relaxation.synchronous)
                self.w.line("else:")
                with self.w.indent():
                    self.loop(relaxation.sweeps, relaxation.prologue)
            self.w.line(f"return {self.states_dict()}")
        self.w.line()

    def synchronous_loop(self, sweep: HalfSweep) -> None:
        self.w.line("for _ in range(steps):")
        with self.w.indent():
            self.assigns(sweep.body)
            self.sweep_updates(sweep, into_next=True)
            self.w.line("# each state half way to its update: undamped simultaneous updates of coupled layers")
            self.w.line("# overshoot and can cycle (a PCN's do); the fixed points are the same")
            for update in sweep.updates:
                name, following = self.name_of(update.symbol), self.name_of(_next(update.symbol))
                self.w.line(f"{name} = 0.5 * ({name} + {following})")

    def loop(self, sweeps: list[HalfSweep], prologue: list[Assign]) -> None:
        if prologue:
            self.w.line("# read by the first half-sweep; later iterations carry them from the last one")
            self.assigns(prologue)
        self.w.line("for _ in range(steps):")
        with self.w.indent():
            self.half_sweeps(sweeps, len(sweeps))

    def half_sweeps(self, sweeps: list[HalfSweep], groups: int) -> None:
        for sweep in sweeps:
            if groups > 1:
                reused = ""
                if sweep.reused:
                    reused = f" (reuses {', '.join(self.name_of(s) for s in sweep.reused)})"
                self.w.line(f"# half-sweep {sweep.index + 1} of {groups}: "
                            f"{', '.join(comment(s) for s in sweep.states)}{reused}")
            self.assigns(sweep.body)
            self.sweep_updates(sweep, into_next=False)

    # ------------------------------------------------------------------ the nudged phase and dE/dθ
    def nudged_phase(self) -> None:
        nudged = self.plan.nudged
        self.w.line("def nudged_phase(self, x, free, carry, label, beta, steps, mod=True):")
        with self.w.indent():
            self.w.line('"""`steps` asynchronous iterations of the update rules of F = E + beta * C from the free')
            self.w.line("state, then the factors of dE/dθ there: (states, factors). `carry` is free_phase's second")
            if nudged is None:
                self.w.line('result (unused here: the free state comes from a relaxation)."""')
                self.w.line("states = self.relax(x, free, label, beta, steps, mod)")
                self.w.line("return states, self.factors(x, states)")
                self.w.line()
                return
            self.w.line("result. The same states as relax(x, free, label, beta, steps, mod), computed with less:")
            self.w.line("at the free state every prediction error is zero, so the first iterations move only the")
            self.w.line('states the output\'s error has reached, and the free pass\'s values are not recomputed."""')
            self.bind_input()
            self.unpack_states(self.m.states, "free")
            if nudged.carried:
                self.w.line("# computed by the free pass at these states")
                self.unpack(nudged.carried, "carry")
            for velocity in nudged.velocities:
                state = velocity.name.split(":", 2)[2]
                self.w.line(f"{self.name_of(velocity)} = torch.zeros_like({self.locals[self.m.symbols[state]]})")
            groups = len(self.m.groups)
            for iteration in nudged.peeled:
                self.w.line(f"if steps >= {iteration.number}:")
                with self.w.indent():
                    moving = [s for sweep in iteration.sweeps for s in sweep.states]
                    still = [s for s in self.m.states if s not in moving]
                    self.w.line(f"# iteration {iteration.number}: the error moves {', '.join(comment(s) for s in moving)}"
                                + (f"; {', '.join(comment(s) for s in still)} still at the free state" if still else ""))
                    self.half_sweeps(iteration.sweeps, groups)
            peeled = len(nudged.peeled)
            if nudged.before_loop:
                self.w.line(f"if steps > {peeled}:")
                with self.w.indent():
                    self.w.line("# read by the loop's first half-sweep")
                    self.assigns(nudged.before_loop)
            if peeled:
                self.w.line(f"# iterations {peeled + 1}.. move every state")
            self.w.line(f"for _ in range(steps{f' - {peeled}' if peeled else ''}):")
            with self.w.indent():
                self.half_sweeps(nudged.loop, groups)
            self.w.line("# the factors of dE/dθ at the relaxed state")
            self.assigns(nudged.epilogue)
            self.factors_result(with_states=True)
        self.w.line()

    def factors_result(self, with_states: bool) -> None:
        """The named cotangents, the energy, then `return factors` (with the states before them
        for nudged_phase)."""
        factors = self.plan.factors
        self.assigns(factors.cotangents)
        self.w.line(f"energy = {self.p(factors.energy)}")
        self.w.line("factors = {")
        with self.w.indent():
            self.w.line(f"{literal('energy')}: energy,")
            for symbol in factors.returned:
                self.w.line(f"{literal(self.name_of(symbol))}: {self.name_of(symbol)},")
        self.w.line("}")
        self.w.line(f"return {self.states_dict()}, factors" if with_states else "return factors")

    def factors(self) -> None:
        factors = self.plan.factors
        self.w.line("def factors(self, x, states):")
        with self.w.indent():
            self.w.line('"""What dE/dθ needs at `states`: the per-example energy, the cotangent at every weighted')
            self.w.line('operator and the states the products read (param_grads_from turns them into gradients)."""')
            self.bind_input()
            self.unpack_states(self.states_read(factors.roots + factors.returned + [factors.energy]))
            self.assigns(factors.body)
            self.factors_result(with_states=False)
        self.w.line()

    def param_grads_from(self) -> None:
        factors = self.plan.factors
        returned = set(factors.returned)
        combined = {p.node.args[1] for p in factors.products if p.invariant_input}
        in_phase = self.printer.with_names(
            lambda s: f"phase[{literal(self.name_of(s))}]" if s in returned else self.name_of(s))
        self.printer.helpers_used.add(PHASE_SUM)
        self.w.line("def param_grads_from(self, x, phases):")
        with self.w.indent():
            self.w.line('"""Σ scale · dE/dθ (the energy summed over the batch) over the phases\' (scale, factors), in')
            self.w.line("parameters() order: each parameter's local product of cotangent and input, formed once per")
            self.w.line('phase, or once in all where the input is the same in every phase."""')
            self.bind_input()
            if combined:
                self.w.line("# weights whose input is the same in every phase: the phases' cotangents combined, one product")
                self.assigns(factors.product_invariants)
                for symbol in sorted(combined, key=lambda s: self.name_of(s)):
                    self.w.line(f"{self.name_of(symbol)} = phase_sum([scale * {in_phase.operand(symbol)} "
                                f"for scale, phase in phases])")
            self.w.line("return [")
            with self.w.indent():
                for product in factors.products:
                    node = product.node
                    cotangent = node.args[1] if isinstance(node, WeightGrad) else node.args[0]
                    sign = _coefficient_text(product.coefficient)
                    # a bias's sum is linear in its cotangent alone: the combined one serves it too
                    if product.invariant_input or (not isinstance(node, WeightGrad) and cotangent in combined):
                        text = f"{sign}{self.printer.operand(node) if sign else self.p(node)}"
                    else:
                        text = f"{sign}phase_sum([scale * {in_phase.operand(node)} for scale, phase in phases])"
                    self.w.line(f"{text},  # {comment(product.param)}")
            self.w.line("]")
        self.w.line()

    def param_grads(self) -> None:
        self.w.line("def param_grads(self, x, states):")
        with self.w.indent():
            self.w.line('"""dE/dtheta of the batch-mean energy at fixed states, with that energy, from the explicit')
            self.w.line('local products (no autograd). Gradients in parameters() order."""')
            self.w.line("factors = self.factors(x, states)")
            self.w.line('return factors["energy"].mean(), self.param_grads_from(x, [(1.0 / x.shape[0], factors)])')


def _next(symbol: sp.Symbol) -> sp.Symbol:
    return local("next", user_name(symbol))


def _coefficient_text(coefficient: sp.Expr) -> str:
    """The prefix a numeric coefficient prints as: "", "-", "2.0 * "."""
    if coefficient == 1:
        return ""
    if coefficient == -1:
        return "-"
    return f"{float(coefficient)!r} * "


def _tuple(names) -> str:
    """A tuple of names as Python source."""
    quoted = ", ".join(literal(n) for n in names)
    return f"({quoted},)" if len(names) == 1 else f"({quoted})"


def _init_of(model, param) -> tuple[int, float]:
    cfg = model.ir.train
    if param.kind == "bias":
        weights = [p for p in model.params.values() if p.owner == param.owner and p.kind != "bias"]
        source = weights[0] if weights else None
        fan = (source.fan_in if cfg.init_fan == "in" else source.fan_out) if source else param.numel
    else:
        fan = param.fan_in if cfg.init_fan == "in" else param.fan_out
    gain = cfg.init_gains.get(param.owner, cfg.init_gain)
    return fan, float(gain)


__all__ = ["TorchModuleGenerator"]
