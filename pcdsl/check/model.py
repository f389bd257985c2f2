# ---------------------------------------------------------------------------------------------
# The checker: ModelIR -> CheckedModel.
#
# Builds each term's energy in the SymPy tensor algebra (naming, for every `~` term, the
# pre-activation a_h, the pre-pool z_h and the prediction error eps_h), checks shapes, derives
# every state's update rule, colours the interaction graph and decides whether the free
# equilibrium is the feedforward pass. Stops at the first error, in source order.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import sympy as sp

from ..diagnostics import PcdslError, messages
from ..ir.model import ModelIR, Term
from ..parse.spans import diag_span
from .algebra import AvgPool, CostGrad, HardSigmoid, MaxPool, Relu, Total, expand_definitions
from .build import ExpressionBuilder, ParamInfo, Shape
from .derive import UpdateRule, check_direct_use, derive_rule, is_quadratic
from .schedule import colour_groups, feedforward_order, interaction_graph


@dataclass
class TermInfo:
    name: str
    target: Optional[str]
    energy: sp.Expr                          # scalar, in terms of the named intermediates
    line: int
    prediction: Optional[sp.Expr] = None     # `~` terms: the prediction f(...) in named form
    states: set[str] = field(default_factory=set)   # free states it touches


@dataclass
class CheckedModel:
    ir: ModelIR
    symbols: dict[str, sp.Symbol]
    shapes: dict[str, Shape]
    params: dict[str, ParamInfo]              # in creation (= source) order
    terms: list[TermInfo]
    definitions: dict[sp.Symbol, sp.Expr]     # named intermediates, in dependency order
    definition_lines: dict[sp.Symbol, int]
    rules: dict[str, UpdateRule]
    groups: list[list[str]]
    feedforward: Optional[list[str]]          # topological order when the free phase is a forward pass
    expr_shapes: dict[sp.Expr, Shape]
    cost_grad: sp.Expr
    errors: dict = field(default_factory=dict)   # eps symbol -> (target state, named prediction)

    @property
    def states(self) -> list[str]:
        return [v.name for v in self.ir.free_states]

    @property
    def parameter_count(self) -> int:
        return sum(p.numel for p in self.params.values())

    def shape_of(self, expr: sp.Expr) -> Shape:
        if expr in self.expr_shapes:
            return self.expr_shapes[expr]
        if expr in self.definitions:
            return self.shape_of(self.definitions[expr])
        raise KeyError(expr)


def _fail_at(term: Term, message, **fields):
    raise PcdslError(message, diag_span(term.span), **fields)


def check_model(ir: ModelIR) -> CheckedModel:
    builder = ExpressionBuilder(ir)
    free = [v.name for v in ir.free_states]

    cost = ir.cost
    output, label = ir.variable(cost.output), ir.variable(cost.label)
    if builder.shapes[label.name].value != builder.shapes[output.name].value:
        raise PcdslError(messages.LABEL_SHAPE, diag_span(label.span), label=label.name,
                         label_shape=builder.shapes[label.name], output=output.name,
                         output_shape=builder.shapes[output.name])
    if builder.shapes[output.name].rank != 1:
        raise PcdslError(messages.RANK_MISMATCH, diag_span(output.span), op="cost",
                         expected="a vector of class scores [classes]", got=builder.shapes[output.name])

    definitions: dict[sp.Symbol, sp.Expr] = {}
    definition_lines: dict[sp.Symbol, int] = {}
    terms: list[TermInfo] = []
    own_activation: dict[str, tuple[sp.Expr, sp.Expr]] = {}
    errors: dict = {}
    sources: dict[str, set[str]] = {}
    for term in ir.terms:
        if term.target is not None:
            info = _pcn_term(term, builder, definitions, definition_lines, own_activation)
            errors[sp.Symbol(f"eps_{term.target}")] = (term.target, info.prediction)
            sources[term.target] = {s.name for s in expand_definitions(info.prediction, definitions).free_symbols
                                    if s.name in builder.shapes and s.name != term.target}
        else:
            energy, shape = builder.build(term.energy, term)
            if shape.rank != 0 or not energy.has(Total):
                raise PcdslError(messages.NOT_SCALAR, diag_span(term.energy.span), name=term.name)
            info = TermInfo(term.name, None, energy, term.span.line)
        info.states = {s.name for s in expand_definitions(info.energy, definitions).free_symbols} & set(free)
        if not info.states:
            _fail_at(term, messages.NO_FREE_STATE, name=term.name)
        terms.append(info)

    touched = set().union(*(t.states for t in terms)) if terms else set()
    for var in ir.free_states:
        if var.name not in touched:
            raise PcdslError(messages.UNCONSTRAINED_STATE, diag_span(var.span), name=var.name,
                             hint=f"predict it (`{var.name} ~ ...`) or add an energy term with it")

    total_energy = sp.Add(*(t.energy for t in terms))
    out_symbol, label_symbol = builder.symbols[output.name], builder.symbols[label.name]
    cost_grad = CostGrad(out_symbol, label_symbol)
    rules: dict[str, UpdateRule] = {}
    for var in ir.free_states:
        state = builder.symbols[var.name]
        for term, info in zip(ir.terms, terms):
            if var.name in info.states:
                check_direct_use(info.energy, state, definitions, info.name, term.span)
        touching = [(t, i) for t, i in zip(ir.terms, terms) if var.name in i.states]
        try:
            rules[var.name] = derive_rule(state, var.domain, total_energy, definitions,
                                          cost_grad if var.name == output.name else None,
                                          own_activation.get(var.name), touching[0][0].span)
        except PcdslError as err:
            if err.code == messages.NOT_QUADRATIC.code:  # point at the term that is not quadratic
                culprit = next((t for t, i in touching if not is_quadratic(i.energy, state, definitions)), None)
                if culprit is not None:
                    err.span = diag_span(culprit.span)
            raise

    graph = interaction_graph(free, [t.states for t in terms])
    input_name = ir.input.name
    input_neighbours = {s for t in terms
                        if input_name in {x.name for x in expand_definitions(t.energy, definitions).free_symbols}
                        for s in t.states}
    groups = colour_groups(free, graph, input_neighbours)
    is_pcn = all(t.target is not None for t in ir.terms) and set(sources) == set(free)
    order = feedforward_order(free, sources) if is_pcn else None

    ordered_params = dict(sorted(builder.params.items(), key=lambda kv: _param_rank(kv[1], ir)))
    return CheckedModel(ir=ir, symbols=builder.symbols, shapes=builder.shapes, params=ordered_params,
                        terms=terms, definitions=definitions, definition_lines=definition_lines, rules=rules,
                        groups=groups, feedforward=order, expr_shapes=builder.expr_shapes, cost_grad=cost_grad,
                        errors=errors)


def _param_rank(param: ParamInfo, ir: ModelIR):
    term_index = next(i for i, t in enumerate(ir.terms) if t.name == param.owner)
    return (term_index, param.kind == "bias", param.line)


def _pcn_term(term: Term, builder: ExpressionBuilder, definitions, definition_lines, own_activation) -> TermInfo:
    target_shape = builder.shapes[term.target]
    prediction, shape = builder.build(term.prediction, term)
    if shape.value != target_shape.value:
        raise PcdslError(messages.SHAPE_MISMATCH, diag_span(term.prediction.span), name=term.target,
                         declared=target_shape, inferred=shape.describe())
    name = term.target
    line = term.span.line
    a = sp.Symbol(f"a_{name}")
    activation = None
    if isinstance(prediction, (Relu, HardSigmoid)):
        activation, pre = type(prediction), prediction.args[0]
    else:
        pre = prediction
    pools = [p for p in sp.preorder_traversal(pre) if isinstance(p, (MaxPool, AvgPool))]
    if len(pools) == 1 and not pools[0].args[0].is_Symbol:
        # name the pre-pool activity: the pool and its adjoint (unpool) both read it
        pool = pools[0]
        z = sp.Symbol(f"z_{name}")
        definitions[z] = pool.args[0]
        definition_lines[z] = line
        builder.expr_shapes[z] = builder.expr_shapes[pool.args[0]]
        pre = pre.xreplace({pool: pool.func(z, *pool.args[1:])})
    definitions[a] = pre
    definition_lines[a] = line
    builder.expr_shapes[a] = builder.expr_shapes.get(pre, shape)
    named_prediction = activation(a) if activation else a
    if activation:
        own_activation[name] = (named_prediction, a)
    eps = sp.Symbol(f"eps_{name}")
    definitions[eps] = builder.symbols[name] - named_prediction
    definition_lines[eps] = line
    builder.expr_shapes[eps] = target_shape
    energy = sp.Rational(1, 2) * Total(eps ** 2)
    return TermInfo(term.name, term.target, energy, line, prediction=named_prediction)
