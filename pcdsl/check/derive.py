# ---------------------------------------------------------------------------------------------
# Per-state update rules, derived from the declared energy (METHOD.md section 3).
#
# For each free state h the checker forms dF/dh with `vjp`, splits it into c*h + r where c is
# the curvature of F in h (the coefficient of the bare state; terms reaching h through a
# weighted operator are the top-down drive, evaluated at the current states), and requires c to
# be a positive constant. The alpha = 1 projected step is then free of h:
#
#     h <- Proj(h - (c*h + r)/c) = Proj(-r / c)
#
# For a PCN state h_k ~ relu(a_k) with domain >= 0 this is PGD's relu(relu(a_k) + Delta_k); the
# mod-PGD variant replaces the own prediction relu(a_k) by a_k inside the projection. For a
# Hopfield energy it is the clamp of the summed neighbour input. No model-specific template is
# involved: change the energy and the rule changes with it.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import sympy as sp

from ..diagnostics import PcdslError, messages
from ..parse.spans import diag_span
from .algebra import (AvgPool, Clamp, Flatten, HardSigmoid, Linear, MaxPool, Relu, TensorOp,
                      energy_gradient, expand_definitions)

BETA = sp.Symbol("beta")


@dataclass
class UpdateRule:
    state: str
    gradient: sp.Expr             # dF/dh, in terms of the named intermediates
    curvature: sp.Expr            # c > 0
    drive: sp.Expr                # -r / c: the unprojected alpha = 1 target
    update: sp.Expr               # Proj(drive): PGD
    mod_update: Optional[sp.Expr]  # mod-PGD form, when it differs
    projection: str               # "relu", "hardsigmoid", "clamp(lo, hi)" or "none"


def projection(domain, expr: sp.Expr) -> tuple[sp.Expr, str]:
    low, high = domain.low, domain.high
    if low is None and high is None:
        return expr, "none"
    if low == 0 and high is None:
        return Relu(expr), "relu"
    if low == 0 and high == 1:
        return HardSigmoid(expr), "hardsigmoid"
    lo = sp.nsimplify(low, rational=True) if low is not None else -sp.oo
    hi = sp.nsimplify(high, rational=True) if high is not None else sp.oo
    return Clamp(expr, lo, hi), f"clamp({low}, {high})"


def _mask_ops_containing(expr: sp.Expr, state: sp.Symbol) -> sp.Expr:
    """Replace every outermost operator that contains the state by a fresh dummy, so what is
    left is polynomial in the bare state."""
    if not expr.has(state):
        return expr
    if isinstance(expr, TensorOp):
        return sp.Dummy()
    if expr.args:
        return expr.func(*(_mask_ops_containing(a, state) for a in expr.args))
    return expr


def check_direct_use(energy: sp.Expr, state: sp.Symbol, definitions: dict, term_name: str, span) -> None:
    """E304: a state may reach a nonlinearity only through a weighted operator."""
    def walk(expr, nonlinear: Optional[str]):
        if expr == state and nonlinear:
            raise PcdslError(messages.SELF_NONLINEAR, diag_span(span), name=str(state), op=nonlinear,
                             hint=f"in term `{term_name}`; predict the state instead: `{state} ~ relu(...)`")
        if isinstance(expr, Linear):
            return  # through a weight: a top-down term, evaluated at the current states
        if isinstance(expr, (Relu, HardSigmoid, MaxPool, AvgPool, Flatten)) and nonlinear is None:
            nonlinear = {Relu: "relu", HardSigmoid: "hardsigmoid", MaxPool: "maxpool", AvgPool: "avgpool",
                         Flatten: "flatten"}[type(expr)]
        for arg in expr.args:
            walk(arg, nonlinear)
    walk(expand_definitions(energy, definitions), None)


def _gradient_poly(masked: sp.Expr, state: sp.Symbol) -> Optional[sp.Poly]:
    """The masked gradient as a polynomial in the state; None when it is none (h**0.5, 1/h)."""
    try:
        return sp.Poly(masked, state)
    except sp.PolynomialError:
        return None


def is_quadratic(energy: sp.Expr, state: sp.Symbol, definitions: dict) -> bool:
    """Whether one term's energy is at most quadratic in the state (to point E305 at it)."""
    gradient = energy_gradient(energy, state, definitions)
    poly = _gradient_poly(sp.expand(_mask_ops_containing(expand_definitions(gradient, definitions), state)), state)
    return poly is not None and poly.degree() <= 1


def derive_rule(state: sp.Symbol, domain, energy: sp.Expr, definitions: dict, cost_term: Optional[sp.Expr],
                own_activation: Optional[tuple[sp.Expr, sp.Expr]], span) -> UpdateRule:
    """`own_activation` = (act(a), a) for a PCN state's own prediction, for the mod-PGD form."""
    gradient = energy_gradient(energy, state, definitions)
    if cost_term is not None:
        gradient += BETA * cost_term

    # curvature: the coefficient of the bare state once every intermediate is expanded
    masked = sp.expand(_mask_ops_containing(expand_definitions(gradient, definitions), state))
    poly = _gradient_poly(masked, state)
    if poly is None or poly.degree() > 1:
        raise PcdslError(messages.NOT_QUADRATIC, diag_span(span), name=str(state), term=str(masked))
    curvature = sp.nsimplify(poly.coeff_monomial(state))
    if not (curvature.is_number and curvature.is_positive):
        raise PcdslError(messages.BAD_CURVATURE, diag_span(span), name=str(state), curvature=curvature,
                         hint=f"add a self term such as `0.5*sum({state}**2)` or predict it with `{state} ~ ...`")

    # expand only the intermediates that hold the bare state (its own prediction error), so the
    # state cancels and the rest keeps its names
    direct = {d: e for d, e in definitions.items() if state in _mask_ops_containing(e, state).free_symbols}
    expanded = expand_definitions(gradient, direct)   # recursively: `h ~ 2*h + ...` nests them
    rest = sp.expand(expanded - curvature * state, deep=False, mul=True, multinomial=False, power_exp=False,
                     power_base=False, log=False)
    assert state not in _mask_ops_containing(rest, state).free_symbols, rest
    drive = -rest / curvature
    update, proj_name = projection(domain, drive)
    mod_update = None
    if own_activation is not None:
        activated, pre_activation = own_activation
        if type(activated) is type(update) and proj_name in ("relu", "hardsigmoid"):
            candidate, _ = projection(domain, drive.xreplace({activated: pre_activation}))
            if candidate != update:
                mod_update = candidate
    return UpdateRule(str(state), gradient, curvature, drive, update, mod_update, proj_name)
