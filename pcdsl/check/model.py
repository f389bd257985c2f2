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

from ..diagnostics import did_you_mean, PcdslError, messages
from ..ir.model import ModelIR, Term
from ..ops import AvgPool, CostGrad, Interval, MaxPool, Shape, TensorOp, Total, WeightedOp
from ..parse.spans import diag_span
from .algebra import Definitions
from .build import ExpressionBuilder, ParamInfo
from .derive import UpdateRule, derive_rule
from .param_grads import ParamGradient, derive_param_gradient
from .ranges import value_range
from .schedule import colour_groups, feedforward_order, interaction_graph
from .terms import TermInfo
from .symbols import intermediate


@dataclass
class CheckedModel:
    ir: ModelIR
    symbols: dict[str, sp.Symbol]             # user name -> symbol (inputs, states, labels)
    shapes: dict[str, Shape]
    params: dict[str, ParamInfo]              # in creation (= source) order
    terms: list[TermInfo]
    definitions: Definitions                  # named intermediates, in dependency order
    definition_lines: dict[sp.Symbol, int]
    rules: dict[str, UpdateRule]
    groups: list[list[str]]
    feedforward: Optional[list[str]]          # topological order when the free phase is a forward pass
    free_phase: str                           # why the free phase is what it is, for people
    expr_shapes: dict[sp.Expr, Shape]
    cost_grad: Optional[sp.Expr]              # None for a generative model
    own_activation: dict[str, tuple[sp.Expr, sp.Expr]] = field(default_factory=dict)
    param_gradients: dict[str, ParamGradient] = field(default_factory=dict)   # in params order

    @property
    def states(self) -> list[str]:
        return [v.name for v in self.ir.free_states]

    @property
    def parameter_count(self) -> int:
        return sum(p.numel for p in self.params.values())

    @property
    def layer_depths(self) -> dict[str, int]:
        """Feedforward models: each state's layer (see layer_depths)."""
        return layer_depths(self.feedforward, self.terms)

    def term_of(self, state: str) -> Optional[TermInfo]:
        """The `~` term that predicts `state`, if any."""
        return next((t for t in self.terms if t.target == state), None)


def check_model(ir: ModelIR) -> CheckedModel:
    builder = ExpressionBuilder(ir)
    free = [v.name for v in ir.free_states]
    if ir.cost is not None:
        _check_cost(ir, builder)

    definitions = Definitions()
    definition_lines: dict[sp.Symbol, int] = {}
    own_activation: dict[str, tuple[sp.Expr, sp.Expr]] = {}
    terms: list[TermInfo] = []
    input_symbol = builder.symbols[ir.input.name]
    for term in ir.terms:
        if term.target is not None:
            info = _pcn_term(term, builder, definitions, definition_lines, own_activation)
        else:
            energy, shape = builder.build(term.energy, term)
            if shape.rank != 0 or not energy.has(Total):
                raise PcdslError(messages.NOT_SCALAR, diag_span(term.energy.span), name=term.name)
            energy = _name_input_drives(energy, term, builder, definitions, definition_lines)
            info = TermInfo(term.name, None, energy, term.span.line, term.span)
        bases = definitions.bases(info.energy)
        info.states = {name for name in free if builder.symbols[name] in bases}
        info.reads_input = input_symbol in bases
        if not info.states:
            raise PcdslError(messages.NO_FREE_STATE, diag_span(term.span), name=term.name)
        terms.append(info)

    touched = set().union(*(t.states for t in terms)) if terms else set()
    for var in ir.free_states:
        if var.name not in touched:
            raise PcdslError(messages.UNCONSTRAINED_STATE, diag_span(var.span), name=var.name,
                             hint=f"predict it (`{var.name} ~ ...`) or add an energy term with it")

    def shape_of(expr):
        if expr in builder.expr_shapes:
            return builder.expr_shapes[expr]
        return shape_of(definitions[expr])

    output = ir.cost.output if ir.cost is not None else None
    cost_grad = CostGrad(builder.symbols[output], builder.symbols[ir.cost.label]) if output else None
    # a generative model's states are read through the data's prediction, whose curvature the
    # closed forms (alpha = 1 steps with the own term's curvature) leave out: they run away
    force_gradient = ("the train block asks for gradient relaxation: relax(rule=gradient)"
                      if ir.train.relax_rule == "gradient" else
                      "a generative model relaxes by gradient steps (the data's prediction reads the states)"
                      if ir.generative else None)
    rules: dict[str, UpdateRule] = {}
    for var in ir.free_states:
        holding = [t for t in terms if var.name in t.states]
        rules[var.name] = derive_rule(builder.symbols[var.name], var.domain, holding, definitions, shape_of,
                                      cost_grad if var.name == output else None,
                                      own_activation.get(var.name), force_gradient)

    graph = interaction_graph(free, [t.states for t in terms])
    groups = colour_groups(free, graph, {s for t in terms if t.reads_input for s in t.states})
    order, reason = _free_phase(ir, builder, terms, definitions, free)
    _check_precision(ir, order, reason)
    _check_algorithm(ir, order, reason, terms, _layer_count(order, terms))
    ordered_params = dict(sorted(builder.params.items(), key=lambda kv: _param_rank(kv[1], ir)))
    param_gradients = {name: derive_param_gradient(param, terms, definitions, shape_of)
                       for name, param in ordered_params.items()}
    return CheckedModel(ir=ir, symbols=builder.symbols, shapes=builder.shapes, params=ordered_params,
                        terms=terms, definitions=definitions, definition_lines=definition_lines, rules=rules,
                        groups=groups, feedforward=order, free_phase=reason, expr_shapes=builder.expr_shapes,
                        cost_grad=cost_grad, own_activation=own_activation, param_gradients=param_gradients)


def _check_precision(ir: ModelIR, order: Optional[list[str]], reason: str) -> None:
    """bf16 keeps EP's gradient only where the free state has zero prediction error; the other
    algorithms beside backprop have no mixed-precision path."""
    span = ir.train_spans.get("precision")
    if ir.train.precision == "bf16" and ir.train.algorithm in ("rbp", "pcil", "ipc"):
        raise PcdslError(messages.BF16_ALGORITHM, diag_span(span) if span else None, algorithm=ir.train.algorithm,
                         hint=None if span else "the value came from the command line (--set precision=bf16)")
    if ir.train.precision != "bf16" or ir.train.algorithm != "ep" or order is not None:
        return
    raise PcdslError(messages.BF16_NEEDS_FEEDFORWARD, diag_span(span) if span else None, name=ir.name,
                     reason=reason,
                     hint=None if span else "the value came from the command line (--set precision=bf16 or --dtype bf16)")


def _check_algorithm(ir: ModelIR, order: Optional[list[str]], reason: str, terms: list[TermInfo],
                     layers: int) -> None:
    """Predictive-coding inference learning starts from the feedforward pass and clamps its last
    layer; its inference settings are its own; recurrent backprop differentiates a relaxation;
    clamping is squared error's perturbation."""
    config = ir.train
    algorithm = config.algorithm
    span = ir.train_spans.get("algorithm")
    where = diag_span(span) if span else None
    hint = None if span else f"the value came from the command line (--algorithm {algorithm} or --set algorithm={algorithm})"
    _check_label_state(ir, terms)
    if ir.generative:
        _check_generative_algorithm(ir)
        return
    if algorithm == "rbp" and order is not None:
        raise PcdslError(messages.RBP_NEEDS_RELAXATION, where, name=ir.name, hint=hint)
    if algorithm == "ep" and config.perturbation == "clamp" and ir.cost.kind != "squared_error":
        raise PcdslError(messages.CLAMP_NEEDS_SQUARED_ERROR, _setting_span(ir, "perturbation"), name=ir.name,
                         cost=ir.cost.kind)
    inference = [(key, text) for key, text, on in (
        ("inference_precision", f"{config.inference_precision} precision", config.inference_precision != "uniform"),
        ("weight_update", "forward_update", config.weight_update == "forward"),
        ("output_nudge", f"nudge={config.output_nudge:g}" if config.output_nudge else "", config.output_nudge is not None)
    ) if on]
    if algorithm not in ("pcil", "ipc"):
        if inference:
            key, text = inference[0]
            raise PcdslError(messages.INFERENCE_SETTING_ALGORITHM, _setting_span(ir, key), setting=text,
                             algorithm=algorithm)
        return
    if order is None:
        raise PcdslError(messages.PCIL_NEEDS_FEEDFORWARD, where, name=ir.name, reason=reason, algorithm=algorithm,
                         hint=hint)
    output = ir.cost.output
    reader = next((t for t in terms if t.target != output and output in t.states), None)
    if reader is not None:
        raise PcdslError(messages.PCIL_OUTPUT_READ, where, output=output, reader=reader.target, algorithm=algorithm,
                         hint=hint)
    if config.inference_precision != "uniform" and config.update == "modpgd":
        raise PcdslError(messages.SCHEDULE_NEEDS_PGD, _setting_span(ir, "update") or _setting_span(ir, "inference_precision"),
                         hint=f"write `{algorithm}(steps={config.steps}, update=pgd)`")
    if config.precision_table is not None and len(config.precision_table) != layers:
        raise PcdslError(messages.PRECISION_TABLE_ROWS, _setting_span(ir, "precision_table"),
                         rows=len(config.precision_table), name=ir.name, layers=layers)


def _check_label_state(ir: ModelIR, terms: list[TermInfo]) -> None:
    """Generative classification: the clamped label's state is a top state of a generative model."""
    state = ir.train.label_state
    if state is None:
        return
    where = _setting_span(ir, "label_state")
    states = [v.name for v in ir.free_states]
    problem, hint = None, None
    if not ir.generative:
        problem = (f"a label state is for generative models; `{ir.name}` is supervised (its output "
                   f"`{ir.cost.output}` is trained towards the label)")
    elif state not in states:
        problem, hint = f"`{state}` is not a state of `{ir.name}`", did_you_mean(state, states)
    elif any(t.target == state for t in terms):
        problem = f"`{state}` is predicted (`{state} ~ ...`); the clamped label must be a top state, predicted by nothing"
    elif not any(t.target not in (None, state) and state in t.states for t in terms):
        problem = (f"no prediction reads `{state}`: every class's clamp would leave the same energy "
                   f"(read it in the prediction of the state below, `h ~ f(dense({state}, n))`)")
    elif len(ir.variable(state).shape) != 1:
        problem = f"`{state}` must be a vector, one entry per class"
    if problem:
        raise PcdslError(messages.GENERATIVE_LABEL, where, state=state, problem=problem,
                         hint=hint or (None if where else "the value came from the command line (--set label_state=...)"))


def _check_generative_algorithm(ir: ModelIR) -> None:
    """A generative model has no cost: it trains by inference learning alone, without the
    supervised settings (schedules over layers above the input, the forward update)."""
    config = ir.train
    if config.algorithm != "pcil":
        span = ir.train_spans.get("algorithm")
        raise PcdslError(messages.GENERATIVE_ALGORITHM, diag_span(span) if span else None,
                         what=config.algorithm, name=ir.name,
                         hint="write `pcil()` in the train block, or pass --algorithm pcil" if span is None else None)
    for key, what, on in (("inference_precision", f"{config.inference_precision} precision",
                           config.inference_precision != "uniform"),
                          ("weight_update", "forward_update", config.weight_update == "forward"),
                          ("output_nudge", "nudge", config.output_nudge is not None),
                          # a generative model's inference is its free phase: free_steps gradient steps
                          ("steps", "pcil(steps=)", "steps" in ir.train_spans),
                          ("update", "pcil(update=)", "update" in ir.train_spans)):
        if on:
            raise PcdslError(messages.GENERATIVE_ALGORITHM, _setting_span(ir, key), what=what, name=ir.name)


def _setting_span(ir: ModelIR, key: str):
    """Where the train block set `key` (None when it came from the command line)."""
    span = ir.train_spans.get(key)
    return diag_span(span) if span else None


def _check_cost(ir: ModelIR, builder: ExpressionBuilder) -> None:
    output, label = ir.variable(ir.cost.output), ir.variable(ir.cost.label)
    if builder.shapes[label.name].value != builder.shapes[output.name].value:
        raise PcdslError(messages.LABEL_SHAPE, diag_span(label.span), label=label.name,
                         label_shape=builder.shapes[label.name], output=output.name,
                         output_shape=builder.shapes[output.name])
    if builder.shapes[output.name].rank != 1:
        raise PcdslError(messages.RANK_MISMATCH, diag_span(output.span), op="cost",
                         expected="a vector of class scores [classes]", got=builder.shapes[output.name])


def layer_depths(order: Optional[list[str]], terms: list[TermInfo]) -> dict[str, int]:
    """Feedforward models: each state's layer, 1 + the deepest state its prediction reads (the
    input's layer is 0), in the feedforward order; {} for a relaxation."""
    predicts = {t.target: t for t in terms}
    depths: dict[str, int] = {}
    for state in order or []:
        depths[state] = 1 + max((depths[s] for s in predicts[state].states - {state}), default=0)
    return depths


def _layer_count(order: Optional[list[str]], terms: list[TermInfo]) -> int:
    return max(layer_depths(order, terms).values(), default=0)


def _free_phase(ir: ModelIR, builder: ExpressionBuilder, terms: list[TermInfo], definitions: Definitions,
                free: list[str]) -> tuple[Optional[list[str]], str]:
    """(topological order, reason) when the free equilibrium is the feedforward pass, else
    (None, why not). It is when every term predicts one state, every state is predicted, the
    predictions form no cycle, and every prediction can equal its state: its values lie in the
    state's domain (the feedforward state then has E = 0, the global minimum)."""
    if ir.generative:
        return None, (f"relaxation from rest: the input `{ir.input.name}` is predicted (a generative model: "
                      "the states relax to explain the data)")
    energy_term = next((t for t in terms if t.target is None), None)
    if energy_term is not None:
        return None, f"relaxation from rest: energy term `{energy_term.name}` is not a prediction"
    predicted = {t.target: t for t in terms}
    missing = next((s for s in free if s not in predicted), None)
    if missing is not None:
        return None, f"relaxation from rest: state `{missing}` has no prediction"
    sources = {s: {n for n in free if builder.symbols[n] in definitions.bases(predicted[s].prediction)}
               for s in free}
    order = feedforward_order(free, sources)
    if order is None:
        return None, "relaxation from rest: the predictions form a cycle"
    ranges: dict[sp.Symbol, Interval] = {}

    def of_symbol(sym):
        if sym in ranges:
            return ranges[sym]
        if sym in definitions:
            return value_range(definitions[sym], of_symbol)
        return None

    for state in order:
        found = value_range(predicted[state].prediction, of_symbol)
        domain = ir.variable(state).domain
        if not found.within(Interval(domain.low, domain.high)):
            return None, (f"relaxation from rest: the prediction of `{state}` takes values in "
                          f"{_interval_text(found)}, outside its domain {_interval_text(Interval(domain.low, domain.high))}")
        ranges[builder.symbols[state]] = found
    return order, "the feedforward pass (every prediction is its state's zero-energy value)"


def _interval_text(interval: Interval) -> str:
    low = "-inf" if interval.low is None else f"{interval.low:g}"
    high = "inf" if interval.high is None else f"{interval.high:g}"
    return f"[{low}, {high}]"


def _param_rank(param: ParamInfo, ir: ModelIR):
    term_index = next(i for i, t in enumerate(ir.terms) if t.name == param.owner)
    return (term_index, param.kind == "bias", param.line)


def _name_input_drives(energy: sp.Expr, term: Term, builder: ExpressionBuilder, definitions: Definitions,
                       definition_lines) -> sp.Expr:
    """Name each largest product of an `energy` term that reads only the input and parameters
    (`sum(h1 * dense(x, 128))`: in_layer1 = dense(x)): it is then an intermediate like a PCN's
    pre-activation, which the plan computes once per relaxation instead of once per iteration."""
    input_symbol = builder.symbols[builder.ir.input.name]
    free_states = {builder.symbols[v.name] for v in builder.ir.free_states}
    found: list[sp.Expr] = []

    def visit(expr):
        if isinstance(expr, (TensorOp, sp.Add)) and expr.has(WeightedOp) and not expr.has(Total) and \
                not (definitions.bases(expr) & free_states) and input_symbol in definitions.bases(expr):
            if isinstance(expr, TensorOp) and expr.elementwise:
                visit(expr.args[0])       # name the activation's argument: its derivative reads it too
            elif expr not in found:
                found.append(expr)
            return
        for arg in expr.args:
            visit(arg)

    visit(energy)
    names = {}
    for index, expr in enumerate(found, start=1):
        name = definitions.define(intermediate("in", term.name if index == 1 else f"{term.name}_{index}"), expr)
        definition_lines[name] = term.span.line
        builder.expr_shapes[name] = builder.expr_shapes[expr]
        names[expr] = name
    return energy.xreplace(names) if names else energy


def _pcn_term(term: Term, builder: ExpressionBuilder, definitions: Definitions, definition_lines,
              own_activation) -> TermInfo:
    target_shape = builder.shapes[term.target]
    prediction, shape = builder.build(term.prediction, term)
    if shape.value != target_shape.value:
        raise PcdslError(messages.SHAPE_MISMATCH, diag_span(term.prediction.span), name=term.target,
                         declared=target_shape, inferred=shape.describe())
    name, line = term.target, term.span.line
    activation = prediction if isinstance(prediction, TensorOp) and prediction.elementwise else None
    pre = activation.args[0] if activation is not None else prediction
    pools = [p for p in sp.preorder_traversal(pre) if isinstance(p, (MaxPool, AvgPool))]
    if len(pools) == 1 and not pools[0].args[0].is_Symbol:
        # name the pre-pool activity: the pool and its adjoint (unpool) both read it
        pool = pools[0]
        z = definitions.define(intermediate("z", name), pool.args[0])
        definition_lines[z] = line
        builder.expr_shapes[z] = builder.expr_shapes[pool.args[0]]
        pre = pre.xreplace({pool: pool.func(z, *pool.args[1:])})
    a = definitions.define(intermediate("a", name), pre)
    definition_lines[a] = line
    builder.expr_shapes[a] = builder.expr_shapes.get(pre, shape)
    named_prediction = activation.func(a, *activation.args[1:]) if activation is not None else a
    if activation is not None:
        own_activation[name] = (named_prediction, a)
    state = builder.symbols[name]
    eps = definitions.define(intermediate("eps", name), state - named_prediction)
    definition_lines[eps] = line
    builder.expr_shapes[eps] = target_shape
    energy = sp.Rational(1, 2) * Total(eps ** 2)
    return TermInfo(term.name, term.target, energy, line, term.span, prediction=named_prediction)


__all__ = ["CheckedModel", "TermInfo", "check_model"]
