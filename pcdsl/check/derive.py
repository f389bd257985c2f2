# ---------------------------------------------------------------------------------------------
# Per-state update rules, derived from the declared energy (METHOD.md section 3).
#
# For each free state h the checker forms dF/dh with `vjp`. Then it decides, from the energy
# alone, which of two rules relaxes h:
#
#   closed form (alpha = 1)   F is quadratic in the bare state with a constant curvature c > 0
#       (terms reaching h through a weight, or through the prediction of another state, are the
#       top-down drive, evaluated at the current states). Split dF/dh = c*h + r: the projected
#       step is free of h,   h <- Proj(h - (c*h + r)/c) = Proj(-r / c).
#       For h ~ relu(a) with domain >= 0 this is PGD's relu(relu(a) + delta); the mod-PGD form
#       projects a + delta instead. For a Hopfield energy it is the clamp of the neighbours' input.
#   gradient steps            no closed form exists: the state sits inside a nonlinearity of
#       its own term (`h ~ relu(h + x)`, `sum(tanh(h) * x)`), or F is of higher degree in h
#       (`0.1 * sum(h**4)`), or the train block asks for it: h <- Proj(h - step * dF/dh), with
#       optional momentum (the plan prints it).
#
# Either way F must be bounded below in h: its highest power of the bare state even, with a
# positive constant coefficient (E303). No model-specific template is involved: change the
# energy and the rule changes with it.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import sympy as sp

from ..diagnostics import PcdslError, messages
from ..ir.model import Domain
from ..ops import REGISTRY, Clamp
from ..parse.spans import diag_span
from .algebra import Definitions, ShapeOf, energy_gradient, mask_ops_containing, op_label, operator_holding
from .symbols import BETA, user_name
from .terms import TermInfo


@dataclass
class UpdateRule:
    state: str
    kind: str                      # "closed" (alpha = 1 projected step) or "gradient"
    reason: str                    # why this rule, for `pcdsl check`
    gradient: sp.Expr              # dF/dh of F = E + beta*C, in terms of the named intermediates
    projection: str                # "relu", "hardsigmoid", "clamp(lo, hi)" or "none"
    curvature: Optional[sp.Expr] = None   # closed form: c > 0
    update: Optional[sp.Expr] = None      # closed form: Proj(-r / c), PGD
    mod_update: Optional[sp.Expr] = None  # closed form: the mod-PGD form, when it differs


def projection(domain: Domain, expr: sp.Expr) -> tuple[sp.Expr, str]:
    """Proj onto the domain: an activation that is exactly that projection, else a clamp."""
    low, high = domain.low, domain.high
    if low is None and high is None:
        return expr, "none"
    for op in REGISTRY.values():
        if op.projects_onto == (low, high):
            return op(expr), op.op_name
    lo = sp.nsimplify(low, rational=True) if low is not None else -sp.oo
    hi = sp.nsimplify(high, rational=True) if high is not None else sp.oo
    return Clamp(expr, lo, hi), f"clamp({low:g}, {high:g})" if high is not None else f"clamp({low:g}, inf)"


def masked_energy(terms: list[TermInfo], state: sp.Symbol, defs: Definitions) -> sp.Expr:
    """The energy terms holding the state, with every operator that holds it replaced by a
    dummy: a polynomial in the bare state (the builder admits whole powers only)."""
    return mask_ops_containing(defs.expand(sp.Add(*(t.energy for t in terms))), state)


MAX_DEGREE = 64


def degree_and_leading(polynomial: sp.Expr, state: sp.Symbol) -> tuple[int, sp.Expr]:
    """The degree of a polynomial in `state` and its leading coefficient, by differentiating
    until the state is gone (much cheaper than expanding the squares of long sums). Terms that
    cancel only after expansion can make the leading coefficient 0; then expand and count."""
    current = polynomial
    for degree in range(MAX_DEGREE + 1):
        derivative = sp.diff(current, state) if current.has(state) else sp.Integer(0)
        if derivative == 0:
            leading = sp.expand(current) / sp.factorial(degree)
            if leading != 0 or degree == 0:
                return degree, leading
            poly = sp.Poly(sp.expand(polynomial), state)
            return poly.degree(), poly.LC()
        current = derivative
    return MAX_DEGREE + 1, sp.Integer(0)


def _curvature_text(polynomial: sp.Expr, state: sp.Symbol) -> str:
    from ..codegen.notation import plain
    return plain(sp.expand(sp.diff(polynomial, state, 2)))


def _own_nonlinearity(terms: list[TermInfo], state: sp.Symbol, defs: Definitions) -> Optional[str]:
    """Why the state has no closed-form update although F is quadratic in it, or None."""
    name = user_name(state)
    for term in terms:
        if term.target == name:
            node = operator_holding(defs.expand(term.prediction), state, past_weights=True)
            if node is not None:
                return f"{name} appears inside `{op_label(node)}` in its own prediction"
        elif term.target is None:
            node = operator_holding(defs.expand(term.energy), state)
            if node is not None:
                return f"{name} appears inside `{op_label(node)}` in energy term `{term.name}`"
    return None


def derive_rule(state: sp.Symbol, domain: Domain, terms: list[TermInfo], defs: Definitions,
                shape_of: ShapeOf, cost_grad: Optional[sp.Expr], own_activation, force_gradient: Optional[str]
                ) -> UpdateRule:
    """The update rule of one free state. `terms` are the energy terms that hold it; `cost_grad`
    is dC/dh for the output; `own_activation` = (act(a), a) of its own prediction, for mod-PGD."""
    name = user_name(state)
    for term in terms:
        node = operator_holding(defs.expand(term.energy), state) if term.target is None else None
        if node is not None and not node.smooth():
            kink = op_label(node)
            raise PcdslError(messages.STATE_IN_KINK, diag_span(term.span), name=name, op=kink, term=term.name,
                             hint=f"use a smooth function of {name} (softplus, tanh, gelu, ...) or predict it: "
                                  f"`{name} ~ {kink}(...)`")
    gradient = sp.Add(*(energy_gradient(t.energy, state, defs, shape_of) for t in terms))
    if cost_grad is not None:
        gradient += BETA * cost_grad
    _, projection_name = projection(domain, state)

    polynomial = masked_energy(terms, state, defs)
    degree, leading = degree_and_leading(polynomial, state)
    if degree < 2 or degree % 2 or not (leading.is_number and leading > 0):
        culprit = next((t for t in terms if _degree(t, state, defs) == degree), terms[0])
        raise PcdslError(messages.BAD_CURVATURE, diag_span(culprit.span), name=name,
                         curvature=_curvature_text(polynomial, state),
                         hint=f"add a self term such as `0.5*sum({name}**2)` or predict it with `{name} ~ ...`")

    def gradient_rule(reason: str) -> UpdateRule:
        return UpdateRule(name, "gradient", reason, gradient, projection_name)

    if force_gradient:       # why every state takes gradient steps
        return gradient_rule(force_gradient)
    own = _own_nonlinearity(terms, state, defs)
    if own:
        return gradient_rule(f"{own}: no closed-form update")
    if degree > 2:
        return gradient_rule(f"the energy has degree {degree} in {name}, so its curvature depends on {name}")

    curvature = sp.nsimplify(2 * leading)
    # expand only the intermediates that hold the bare state (its own prediction error), so the
    # state cancels and the rest keeps its names
    direct = Definitions()
    for symbol, expr in defs.items():
        if state in mask_ops_containing(expr, state).free_symbols:
            direct.define(symbol, expr)
    expanded = direct.expand(gradient)
    rest = sp.expand(expanded - curvature * state, deep=False, mul=True, multinomial=False,
                     power_exp=False, power_base=False, log=False)
    if state in mask_ops_containing(rest, state).free_symbols:   # not linear after all
        return gradient_rule(f"dF/d{name} is not of the form c*{name} + r")
    drive = -rest / curvature
    update, _ = projection(domain, drive)
    mod_update = None
    if own_activation is not None:
        activated, pre_activation = own_activation
        if type(activated).projects_onto == (domain.low, domain.high):
            candidate, _ = projection(domain, drive.xreplace({activated: pre_activation}))
            if candidate != update:
                mod_update = candidate
    reason = f"F is quadratic in {name} with curvature {_number(curvature)}"
    return UpdateRule(name, "closed", reason, gradient, projection_name, curvature, update, mod_update)


def _degree(term: TermInfo, state: sp.Symbol, defs: Definitions) -> int:
    return degree_and_leading(masked_energy([term], state, defs), state)[0]


def _number(value: sp.Expr) -> str:
    return str(int(value)) if value.is_Integer else f"{float(value):g}"

