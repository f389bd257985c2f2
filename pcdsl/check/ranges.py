# ---------------------------------------------------------------------------------------------
# Value ranges: the interval an expression's elements can take, by interval arithmetic.
#
# A PCN's free equilibrium is the feedforward pass only if every prediction can equal its state:
# `state h >= 0 ~ tanh(...)` cannot (tanh goes below 0, the projection onto h's domain moves
# the state away, and the energy is no longer 0 there). Each operator states the range of its
# output (ops: value_range); this module combines them. Unknown means the reals, so every answer
# errs on the side of relaxing the free phase.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

from typing import Callable, Optional

import sympy as sp

from ..ops import REALS, Interval, TensorOp


def _add(a: Interval, b: Interval) -> Interval:
    low = None if a.low is None or b.low is None else a.low + b.low
    high = None if a.high is None or b.high is None else a.high + b.high
    return Interval(low, high)


def _scale(a: Interval, c: float) -> Interval:
    ends = [None if e is None else e * c for e in (a.low, a.high)]
    if c < 0:
        ends = ends[::-1]
    return Interval(*ends)


def value_range(expr: sp.Expr, of_symbol: Callable[[sp.Symbol], Optional[Interval]]) -> Interval:
    """The range of `expr`; `of_symbol` gives a symbol's range (None: unknown)."""
    if expr.is_number:
        value = float(expr)
        return Interval(value, value)
    if isinstance(expr, sp.Symbol):
        return of_symbol(expr) or REALS
    if isinstance(expr, sp.Add):
        result = Interval(0.0, 0.0)
        for arg in expr.args:
            result = _add(result, value_range(arg, of_symbol))
        return result
    if isinstance(expr, sp.Mul):
        coeff, rest = expr.as_coeff_Mul()
        if coeff != 1 and rest.args and not isinstance(rest, sp.Mul):
            return _scale(value_range(rest, of_symbol), float(coeff))
        if coeff != 1:
            return _scale(value_range(rest, of_symbol), float(coeff))
        return REALS
    if isinstance(expr, TensorOp):
        ranges = [value_range(expr.args[i], of_symbol) for i in expr.tensor_arguments()]
        return expr.value_range(ranges)
    return REALS
