# ---------------------------------------------------------------------------------------------
# CheckedModel -> one standalone PyTorch module (source text).
#
# The output is deterministic (same model file and sizes -> same bytes), imports only torch, and
# is laid out the way a careful person would write it by hand: parameters with the .pc line
# they come from, the free phase, the energies, one method per update group with the derived
# closed-form updates (explicit adjoints, no autograd), and the EP gradient assembly.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import os
from typing import Iterable, Optional

import sympy as sp

from .. import __version__
from ..check.algebra import AvgPoolT, CostGrad, LinearT, MaxUnpool, Unflatten, expand_definitions
from ..check.derive import BETA
from ..check.model import CheckedModel
from .notation import plain
from .printer import TorchPrinter

INDENT = "    "

RUNTIME_HELPERS = '''

def total(t):
    """Per-example sum over every element: [B, ...] -> [B]."""
    return t.flatten(1).sum(1)


def max_unpool(v, z, kernel, stride):
    """Adjoint of max_pool2d at z: send v to the position of each window's maximum."""
    _, indices = F.max_pool2d(z, kernel, stride, return_indices=True)
    return F.max_unpool2d(v, indices, kernel, stride, output_size=z.shape[-2:])


def avg_pool_adjoint(v, z, kernel, stride):
    """Adjoint of avg_pool2d: spread each value evenly over its window (shape of z)."""
    batch, channels = v.shape[:2]
    ones = v.new_full((1, 1, kernel, kernel), 1.0 / (kernel * kernel))
    out = F.conv_transpose2d(v.reshape(batch * channels, 1, *v.shape[2:]), ones, stride=stride,
                             output_padding=tuple(z.shape[-2 + i] - ((v.shape[2 + i] - 1) * stride + kernel)
                                                  for i in range(2)))
    return out.reshape(batch, channels, *z.shape[-2:])
'''


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
    """The PyTorch target. `generate(checked)` returns the module source."""

    target = "torch"

    def generate(self, checked: CheckedModel) -> str:
        return _ModuleWriter(checked).write()


class _ModuleWriter:
    def __init__(self, model: CheckedModel):
        self.m = model
        self.ir = model.ir
        self.w = Writer()
        self.printer = TorchPrinter(model)
        self.source_lines = _read_source_lines(model.ir.file)

    # ------------------------------------------------------------------ helpers
    def p(self, expr: sp.Expr, mod_node=None) -> str:
        if mod_node is None:
            return self.printer.doprint(expr)
        return TorchPrinter(self.m, mod_node).doprint(expr)

    def src(self, line: int) -> str:
        text = self.source_lines[line - 1].strip() if 0 < line <= len(self.source_lines) else ""
        return f"{self.file_name}:{line}" + (f"  {text}" if text else "")

    @property
    def file_name(self) -> str:
        return os.path.basename(self.ir.file)

    def needed_definitions(self, exprs: Iterable[sp.Expr]) -> list[sp.Symbol]:
        """The named intermediates these expressions use, in dependency order."""
        needed: set[sp.Symbol] = set()
        stack = [s for e in exprs for s in e.free_symbols if s in self.m.definitions]
        while stack:
            s = stack.pop()
            if s not in needed:
                needed.add(s)
                stack.extend(t for t in self.m.definitions[s].free_symbols if t in self.m.definitions)
        return [s for s in self.m.definitions if s in needed]

    def states_used(self, exprs: Iterable[sp.Expr]) -> list[str]:
        used: set[str] = set()
        for e in list(exprs) + [self.m.definitions[d] for d in self.needed_definitions(exprs)]:
            used |= {s.name for s in e.free_symbols}
        return [s for s in self.m.states if s in used]

    def unpack_states(self, names: list[str], source: str = "s") -> None:
        if not names:
            return
        if len(names) == 1:
            self.w.line(f'{names[0]} = {source}["{names[0]}"]')
        else:
            self.w.line(", ".join(names) + " = " + ", ".join(f'{source}["{n}"]' for n in names))

    def emit_definitions(self, exprs: list[sp.Expr], carried: frozenset = frozenset()) -> None:
        last_line = None
        for symbol in self.needed_definitions(exprs):
            line = self.m.definition_lines[symbol]
            if line != last_line:
                self.w.line(f"# {self.src(line)}")
                last_line = line
            eps = self.m.errors.get(symbol)
            if eps is not None:
                target, prediction = eps
                value = f"{target} - {self.p(prediction)}"
            else:
                value = self.p(self.m.definitions[symbol])
            if symbol in carried:
                value = f'carry["{symbol.name}"] if "{symbol.name}" in carry else {value}'
            self.w.line(f"{symbol.name} = {value}")

    # ------------------------------------------------------------------ the module
    def write(self) -> str:
        self.header()
        self.w.line("import math")
        self.w.line()
        self.w.line("import torch")
        self.w.line("import torch.nn.functional as F")
        self.w.block(RUNTIME_HELPERS.split("\n"))
        self.w.line()
        self.w.line()
        self.w.line("class Model(torch.nn.Module):")
        with self.w.indent():
            self.class_doc()
            self.constants()
            self.init()
            self.reset_parameters()
            self.forward()
            self.cost()
            self.energies()
            self.relax()
            for index, group in enumerate(self.m.groups):
                self.group_update(index, group)
            self.param_grads()
            self.ep_gradients()
        return self.w.text()

    def header(self) -> None:
        self.w.line(f"# Generated by pcdsl {__version__} from {self.file_name} "
                    f"(sha256 {self.ir.source_sha256[:16]}). Do not edit: change the .pc file and recompile.")
        sizes = ", ".join(f"{s.name}={s.value}" for s in self.ir.sizes)
        if sizes:
            self.w.line(f"# Sizes: {sizes}")
        self.w.line(f'"""{self.ir.name}: compiled from {self.file_name} by pcdsl.')
        self.w.line()
        for index, term in enumerate(self.m.terms):
            self.w.line(("Energy  E = " if index == 0 else "          + ") + self.term_formula(term))
        self.w.line(f"Cost    C = {self.ir.cost.kind}({self.ir.cost.output}, {self.ir.cost.label})")
        if self.m.definitions:
            self.w.line("where")
            for symbol, expr in self.m.definitions.items():
                if symbol not in self.m.errors:
                    self.w.line(f"    {symbol.name} = {_plain(expr)}")
        self.w.line("Updates (alpha = 1 projected steps derived from E + beta*C; mod-PGD form where it differs):")
        for group_index, group in enumerate(self.m.groups):
            for state in group:
                rule = self.m.rules[state]
                shown = rule.mod_update if rule.mod_update is not None else rule.update
                self.w.line(f"    [group {group_index}] {state} <- {_plain(shown)}")
        self.w.line('"""')

    def term_formula(self, term) -> str:
        if term.target is not None:
            return f"1/2 |{term.target} - {_plain(term.prediction)}|^2"
        return _plain(term.energy)

    def class_doc(self) -> None:
        kind = ("a predictive coding network: the free phase is the feedforward pass"
                if self.m.feedforward else "a layered energy model: the free phase is a relaxation")
        self.w.line(f'"""{self.ir.name}, {kind}."""')
        self.w.line()

    def constants(self) -> None:
        ir = self.ir
        shape = self.m.shapes[ir.input.name].value
        output = ir.cost.output
        self.w.line(f'NAME = "{ir.name}"')
        self.w.line(f'SOURCE = "{self.file_name}"')
        self.w.line(f'SOURCE_SHA256 = "{ir.source_sha256}"')
        self.w.line(f"INPUT_SHAPE = {tuple(shape)}")
        self.w.line(f"STATES = {_names(self.m.states)}")
        self.w.line("STATE_SHAPES = {")
        with self.w.indent():
            for state in self.m.states:
                self.w.line(f'"{state}": {tuple(self.m.shapes[state].value)},')
        self.w.line("}")
        self.w.line(f'OUTPUT = "{output}"')
        self.w.line(f"NUM_CLASSES = {self.m.shapes[output].value[0]}")
        self.w.line(f'COST = "{ir.cost.kind}"')
        self.w.line(f"FEEDFORWARD = {bool(self.m.feedforward)}")
        self.w.line(f"UPDATE_GROUPS = ({', '.join(_names(g) for g in self.m.groups)}{',' if len(self.m.groups) == 1 else ''})")
        self.w.line(f"FREE_STEPS = {ir.train.free_steps}")
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
                self.w.line(f"self.{param.name} = torch.nn.Parameter(torch.empty({dims}))")
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
                self.w.line(f'("{param.name}", {fan}, {gain!r}),')
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
        self.w.line("def forward(self, x, steps=None):")
        with self.w.indent():
            if self.m.feedforward:
                self.w.line('"""Free phase: the feedforward pass, the zero-energy equilibrium (`steps` is unused)."""')
                self.bind_input()
                for state in self.m.feedforward:
                    term = next(t for t in self.m.terms if t.target == state)
                    self.emit_definitions([term.prediction])
                    self.w.line(f"{state} = {self.p(term.prediction)}")
                self.w.line("return {" + ", ".join(f'"{s}": {s}' for s in self.m.states) + "}")
            else:
                self.w.line('"""Free phase: relax from the zero state with beta = 0."""')
                self.w.line("batch = x.shape[0]")
                self.w.line("states = {name: x.new_zeros((batch, *shape)) for name, shape in self.STATE_SHAPES.items()}")
                self.w.line("return self.relax(x, states, None, 0.0, self.FREE_STEPS if steps is None else steps)")
        self.w.line()

    def cost(self) -> None:
        out, classes = self.ir.cost.output, self.m.shapes[self.ir.cost.output].value[0]
        self.w.line("def cost(self, states, label):")
        with self.w.indent():
            self.w.line(f'"""Per-example cost {self.ir.cost.kind}({out}, label), shape [B]."""')
            if self.ir.cost.kind == "cross_entropy":
                self.w.line(f'return F.cross_entropy(states["{out}"], label, reduction="none")')
            else:
                self.w.line(f'{out} = states["{out}"]')
                self.w.line(f"return 0.5 * total(({out} - F.one_hot(label, {classes}).to({out}.dtype)) ** 2)")
        self.w.line()
        self.w.line(f"def cost_grad(self, {out}, label):")
        with self.w.indent():
            self.w.line(f'"""dC/d{out} at the current output state."""')
            target = f"F.one_hot(label, {classes}).to({out}.dtype)"
            if self.ir.cost.kind == "cross_entropy":
                self.w.line(f"return torch.softmax({out}, dim=1) - {target}")
            else:
                self.w.line(f"return {out} - {target}")
        self.w.line()

    def energies(self) -> None:
        self.w.line("def energies(self, x, states):")
        with self.w.indent():
            self.w.line('"""Per-term energy, each of shape [B]."""')
            exprs = [t.energy for t in self.m.terms]
            self.bind_input()
            self.unpack_states(self.states_used(exprs), "states")
            self.emit_definitions(exprs)
            self.w.line("return {")
            with self.w.indent():
                for term in self.m.terms:
                    self.w.line(f'"{term.name}": {self.p(term.energy)},')
            self.w.line("}")
        self.w.line()
        self.w.line("def energy(self, x, states):")
        with self.w.indent():
            self.w.line('"""Total energy E, shape [B]."""')
            self.w.line("return sum(self.energies(x, states).values())")
        self.w.line()

    def bind_input(self) -> None:
        if self.ir.input.name != "x":
            self.w.line(f"{self.ir.input.name} = x")

    def relax(self) -> None:
        self.w.line("def relax(self, x, states, label, beta, steps, mod=True, synchronous=False):")
        with self.w.indent():
            self.w.line('"""`steps` closed-form (alpha = 1) projected updates of F = E + beta * C."""')
            groups = ", ".join(f"self._update_group{i}" for i in range(len(self.m.groups)))
            self.w.line("s = dict(states)")
            self.w.line(f"groups = ({groups}{',' if len(self.m.groups) == 1 else ''})")
            self.w.line("carry = {}")
            self.w.line("for _ in range(steps):")
            with self.w.indent():
                self.w.line("if synchronous:  # every group reads the same old states")
                with self.w.indent():
                    self.w.line("new = {}")
                    self.w.line("for update in groups:")
                    with self.w.indent():
                        self.w.line("new.update(update(x, s, label, beta, mod, {})[0])")
                    self.w.line("s.update(new)")
                self.w.line("else:  # asynchronous: each group reads what the previous group wrote")
                with self.w.indent():
                    self.w.line("for update in groups:")
                    with self.w.indent():
                        self.w.line("new, carry = update(x, s, label, beta, mod, carry)")
                        self.w.line("s.update(new)")
            self.w.line("return s")
        self.w.line()

    def group_exprs(self, group: list[str]) -> tuple[list[sp.Expr], dict]:
        """The update expressions of a group, with the cost's pull named `nudge_<state>`."""
        nudge = {r.state: sp.Symbol(f"nudge_{r.state}") for r in (self.m.rules[s] for s in group)
                 if r.update.has(CostGrad)}
        return [self._with_nudge(self.m.rules[s].update, nudge.get(s)) for s in group], nudge

    def carried_into(self, index: int) -> list[sp.Symbol]:
        """Intermediates group `index` can take from the half-sweep before it: those that group
        also needs and whose inputs that group's update left unchanged (METHOD.md section 6:
        with cached pre-activations an iteration costs one forward and one transposed pass)."""
        groups = self.m.groups
        previous = (index - 1) % len(groups)
        before = set(self.needed_definitions(self.group_exprs(groups[previous])[0]))
        changed = set(groups[previous])
        return [d for d in self.needed_definitions(self.group_exprs(groups[index])[0])
                if d in before and not (self.dependencies(d) & changed)]

    def dependencies(self, symbol: sp.Symbol) -> set[str]:
        expr = expand_definitions(self.m.definitions[symbol], self.m.definitions)
        return {s.name for s in expr.free_symbols} & set(self.m.states)

    def group_update(self, index: int, group: list[str]) -> None:
        rules = [self.m.rules[s] for s in group]
        exprs_named, nudge = self.group_exprs(group)
        carried_in = self.carried_into(index)
        carried_out = self.carried_into((index + 1) % len(self.m.groups))
        self.w.line(f"def _update_group{index}(self, x, s, label, beta, mod, carry):")
        with self.w.indent():
            self.w.line(f'"""Update group {index}: {", ".join(group)} (no two interact, so this half-sweep is exact).')
            self.w.line()
            self.w.line("`carry` holds intermediates the previous half-sweep computed from states this one")
            self.w.line('has not changed; returns the new states and the carry for the next half-sweep."""')
            self.bind_input()
            self.unpack_states(self.states_used(exprs_named + [self.m.cost_grad] * bool(nudge)))
            self.emit_definitions(exprs_named, carried=set(carried_in))
            for state, symbol in nudge.items():
                self.w.line("# the cost's pull on the output, at its current value")
                self.w.line(f"{symbol.name} = beta * self.cost_grad({state}, label) if beta else 0.0")
            for rule, expr in zip(rules, exprs_named):
                mod_node = _own_activation(self.m, rule.state) if rule.mod_update is not None else None
                expr = self._split_delta(rule, expr)
                if mod_node is not None:
                    pre = _plain(mod_node.args[0])
                    self.w.line(f"# mod-PGD projects {pre} + delta; PGD projects {_plain(mod_node)} + delta")
                self.w.line(f"{rule.state}_next = {self.p(expr, mod_node)}")
            new_states = "{" + ", ".join(f'"{s}": {s}_next' for s in group) + "}"
            carry = "{" + ", ".join(f'"{d.name}": {d.name}' for d in carried_out) + "}"
            self.w.line(f"return {new_states}, {carry}")
        self.w.line()

    def _split_delta(self, rule, expr: sp.Expr) -> sp.Expr:
        """Name the top-down drive: h <- Proj(own prediction + delta_h), as in METHOD.md."""
        own = _own_activation(self.m, rule.state)
        if own is None or rule.curvature != 1:
            return expr
        inner = expr.args[0] if rule.projection != "none" else expr
        parts = sp.Add.make_args(inner)
        if own not in parts:
            return expr
        delta = sp.Add(*(p for p in parts if p != own))
        if not delta.atoms(LinearT, MaxUnpool, AvgPoolT, Unflatten):
            return expr
        symbol = sp.Symbol(f"delta_{rule.state}")
        self.w.line(f"{symbol.name} = {self.p(delta)}")
        projected = own + symbol
        return expr.func(projected, *expr.args[1:]) if rule.projection != "none" else projected

    @staticmethod
    def _with_nudge(expr: sp.Expr, symbol: Optional[sp.Symbol]) -> sp.Expr:
        if symbol is None:
            return expr
        return expr.replace(lambda e: isinstance(e, sp.Mul) and e.has(CostGrad) and BETA in e.args,
                            lambda e: symbol * (e / (BETA * next(a for a in e.args if isinstance(a, CostGrad)))))

    def param_grads(self) -> None:
        self.w.line("def param_grads(self, x, states):")
        with self.w.indent():
            self.w.line('"""dE/dtheta of the batch-mean energy at fixed states (autograd: no relaxation here)."""')
            self.w.line("return self._energy_and_param_grads(x, states)[1]")
        self.w.line()
        self.w.line("def _energy_and_param_grads(self, x, states):")
        with self.w.indent():
            self.w.line("states = {name: h.detach() for name, h in states.items()}")
            self.w.line("params = list(self.parameters())")
            self.w.line("with torch.enable_grad():")
            with self.w.indent():
                self.w.line("energy = self.energy(x.detach(), states).mean()")
                self.w.line("grads = torch.autograd.grad(energy, params, allow_unused=True)")
            self.w.line("grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]")
            self.w.line("return energy.detach(), grads")
        self.w.line()

    def ep_gradients(self) -> None:
        self.w.block(EP_GRADIENTS.split("\n"))


EP_GRADIENTS = '''def ep_gradients(self, x, label, beta, steps, scheme="centered", mod=True, synchronous=False,
                 free_steps=None, generator=None):
    """Equilibrium propagation's estimate of d mean(C) / d theta at the free equilibrium.

    centered: (dF/dtheta at +beta - dF/dtheta at -beta) / (2 beta), error O(beta^2);
    forward / backward: one nudged phase at +beta / -beta against the free state;
    random: forward or backward, the sign drawn once per call from `generator`.
    """
    with torch.no_grad():
        free = self.forward(x, free_steps)
        loss = self.cost(free, label).mean()
    if scheme == "random":
        scheme = ("forward", "backward")[torch.randint(0, 2, (1,), generator=generator).item()]
    if scheme not in ("centered", "forward", "backward"):
        raise ValueError(f"unknown EP scheme {scheme!r}: centered, forward, backward or random")
    upper = beta if scheme in ("centered", "forward") else 0.0
    lower = -beta if scheme in ("centered", "backward") else 0.0
    grads_upper = self._nudged_param_grads(x, free, label, upper, steps, mod, synchronous, loss)
    grads_lower = self._nudged_param_grads(x, free, label, lower, steps, mod, synchronous, loss)
    scale = 1.0 / (upper - lower)
    grads = [(gu - gl) * scale for gu, gl in zip(grads_upper, grads_lower)]
    return {"grads": grads, "loss": loss, "free": free}

def _nudged_param_grads(self, x, free, label, beta, steps, mod, synchronous, free_loss):
    """dE/dtheta at the equilibrium reached from the free state at `beta`; refuses a relaxation
    that diverged instead of turning it into a gradient."""
    if beta == 0.0 and self.FEEDFORWARD:
        # the feedforward state has zero prediction error, so dE/dtheta = 0 there
        return [torch.zeros_like(p) for p in self.parameters()]
    with torch.no_grad():
        states = free if beta == 0.0 else self.relax(x, free, label, beta, steps, mod, synchronous)
    for name, h in states.items():
        if not torch.isfinite(h).all():
            raise FloatingPointError(
                f"the relaxation at beta={beta:g} diverged: state {name} is not finite after {steps} steps")
    energy, grads = self._energy_and_param_grads(x, states)
    if self.FEEDFORWARD:
        # E grows from 0 at the free state to about beta^2 |dC|^2 / 2; orders of magnitude past
        # |beta| * C means the fixed-point iteration is running away (METHOD.md section 3).
        bound = 1e3 * abs(beta) * (float(free_loss) + 1.0)
        if not float(energy) <= bound:
            raise FloatingPointError(
                f"the relaxation at beta={beta:g} diverged: energy {float(energy):.3g} after {steps} steps "
                f"(bound {bound:.3g})")
    return grads'''


def _names(names) -> str:
    """A tuple of names as Python source, in double quotes like the rest of the module."""
    quoted = ", ".join(f'"{n}"' for n in names)
    return f"({quoted},)" if len(names) == 1 else f"({quoted})"


def _own_activation(model: CheckedModel, state: str):
    term = next((t for t in model.terms if t.target == state), None)
    return term.prediction if term is not None else None


def _init_of(model: CheckedModel, param) -> tuple[int, float]:
    cfg = model.ir.train
    if param.kind == "bias":
        weights = [p for p in model.params.values() if p.owner == param.owner and p.kind != "bias"]
        source = weights[0] if weights else None
        fan = (source.fan_in if cfg.init_fan == "in" else source.fan_out) if source else param.numel
    else:
        fan = param.fan_in if cfg.init_fan == "in" else param.fan_out
    gain = cfg.init_gains.get(param.owner, cfg.init_gain)
    return fan, float(gain)


def _plain(expr: sp.Expr) -> str:
    """Short math-like rendering for comments and `pcdsl check`."""
    return plain(expr)


def _read_source_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().splitlines()
    except OSError:
        return []
