# ---------------------------------------------------------------------------------------------
# The tensor algebra the checker reasons in, as SymPy expressions.
#
# States, inputs, labels and parameters are SymPy symbols standing for whole tensors (see
# symbols.py); elementwise arithmetic is ordinary SymPy arithmetic (elementwise products
# commute, so Mul is right); every operator is an opaque node of the registry (pcdsl/ops).
# `sum(t)` (the node Total) is the per-example reduction that makes an energy term a scalar.
#
# Named intermediates (a_h, z_h, eps_h) keep expressions short: `Definitions` maps each to its
# expression and knows which base symbols it depends on. Differentiation is a vector-Jacobian
# product (`vjp`) that looks through the names, so results keep them; each operator supplies its
# own rule, and the adjoints appear in the result as explicit operators (transposed matmul and
# conv, max-unpool, ...), which the code generator prints directly: no autograd in the loop.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

from typing import Callable

import sympy as sp

from ..ops import Filled, Shape, TensorOp, Total, WeightedOp


class Definitions(dict):
    """Named intermediate -> its expression, in dependency (insertion) order."""

    def __init__(self):
        super().__init__()
        self._bases: dict[sp.Symbol, frozenset] = {}
        # a value that the call computing another returns as well, at no cost (a max-pool's
        # argmax positions with the pool): whoever computes the key computes the companion too
        self.companions: dict[sp.Symbol, sp.Symbol] = {}

    def define(self, name: sp.Symbol, expr: sp.Expr) -> sp.Symbol:
        assert name not in self, name
        self[name] = expr
        self._bases[name] = self.bases(expr)
        return name

    def bases(self, expr: sp.Expr) -> frozenset:
        """The symbols that are not intermediates which `expr` depends on, through its names."""
        found = set()
        for sym in expr.free_symbols:
            found |= self._bases[sym] if sym in self._bases else {sym}
        return frozenset(found)

    def depends(self, expr: sp.Expr, sym: sp.Symbol) -> bool:
        return sym in self.bases(expr)

    def expand(self, expr: sp.Expr) -> sp.Expr:
        """Substitute every named intermediate by its expression, recursively."""
        while True:
            named = {s: self[s] for s in expr.free_symbols if s in self}
            if not named:
                return expr
            expr = expr.xreplace(named)

    def closure(self, exprs) -> list[sp.Symbol]:
        """The intermediates these expressions use, directly or not, in dependency order."""
        needed: set[sp.Symbol] = set()
        stack = [s for e in exprs for s in e.free_symbols if s in self]
        while stack:
            s = stack.pop()
            if s not in needed:
                needed.add(s)
                stack.extend(t for t in self[s].free_symbols if t in self)
        return [s for s in self if s in needed]


ShapeOf = Callable[[sp.Expr], Shape]


def vjp(expr: sp.Expr, state: sp.Symbol, v: sp.Expr, defs: Definitions, shape_of: ShapeOf) -> sp.Expr:
    """d/d state of <v, expr>: the vector-Jacobian product, as an expression of the algebra.
    `state` may also be a parameter: a weight's result is its weight-gradient node (summed over
    the batch), a bias's the per-example cotangent it receives."""
    if not defs.depends(expr, state):
        return sp.Integer(0)
    if expr == state:
        return v
    if expr in defs:
        return vjp(defs[expr], state, v, defs, shape_of)
    if isinstance(expr, sp.Add):
        return sp.Add(*(vjp(arg, state, v, defs, shape_of) for arg in expr.args))
    if isinstance(expr, sp.Mul):
        total = sp.Integer(0)
        for index, factor in enumerate(expr.args):
            if defs.depends(factor, state):
                others = sp.Mul(*(expr.args[:index] + expr.args[index + 1:]))
                total += vjp(factor, state, v * others, defs, shape_of)
        return total
    if isinstance(expr, sp.Pow):
        base, exponent = expr.args
        return vjp(base, state, v * exponent * base ** (exponent - 1), defs, shape_of)
    if isinstance(expr, TensorOp):
        if v.is_number and not (expr.elementwise or isinstance(expr, Total)):
            v = Filled(v, *(sp.Integer(d) for d in shape_of(expr).value))
        total = sp.Integer(0)
        if isinstance(expr, WeightedOp) and expr.weight == state:
            # differentiating with respect to this operator's weight: the batch-summed product
            total += expr.weight_vjp(v)
        for index in expr.tensor_arguments():
            arg = expr.args[index]
            if defs.depends(arg, state):
                total += vjp(arg, state, expr.vjp(index, v, shape_of), defs, shape_of)
        return total
    raise TypeError(f"no vector-Jacobian product rule for {type(expr).__name__}")


def sum_terms(energy: sp.Expr) -> list[tuple[sp.Expr, Total]]:
    """An energy as its (coefficient, sum(...)) pairs, constants dropped; the builder guarantees
    that form."""
    pairs = []
    for term in sp.Add.make_args(sp.expand(energy, deep=False)):
        coeff, rest = term.as_coeff_Mul()
        if isinstance(rest, Total):
            pairs.append((coeff, rest))
        elif not term.is_number:
            raise ValueError("an energy term is not a combination of sum(...) terms")
    return pairs


def energy_gradient(energy: sp.Expr, state: sp.Symbol, defs: Definitions, shape_of: ShapeOf) -> sp.Expr:
    """d energy / d state, for a linear combination of sum(...) terms."""
    total = sp.Integer(0)
    for coeff, reduction in sum_terms(energy):
        total += vjp(reduction.args[0], state, coeff, defs, shape_of)
    return total


def mask_ops_containing(expr: sp.Expr, state: sp.Symbol) -> sp.Expr:
    """Replace every outermost operator node that contains the state by a fresh dummy (sums are
    looked through), so what is left is polynomial in the bare state."""
    if not expr.has(state):
        return expr
    if isinstance(expr, Total):
        return mask_ops_containing(expr.args[0], state)
    if isinstance(expr, TensorOp):
        return sp.Dummy()
    if expr.args:
        return expr.func(*(mask_ops_containing(a, state) for a in expr.args))
    return expr


def operator_holding(expr: sp.Expr, state: sp.Symbol, past_weights: bool = False) -> TensorOp | None:
    """The first operator node that holds the state (sums are looked through), or None: where
    the state stops being a bare, polynomial variable of a term. Unless `past_weights`, an
    operator with a weight (dense, conv) ends the search: through a weight the state is coupled
    to another layer, as in a prediction of the layer above."""
    if not expr.has(state):
        return None
    if isinstance(expr, WeightedOp) and not past_weights:
        return None
    if isinstance(expr, TensorOp) and not isinstance(expr, Total):
        return expr
    return next((found for arg in expr.args if (found := operator_holding(arg, state, past_weights))), None)


def op_label(node: TensorOp) -> str:
    return node.op_name or type(node).__name__.lower()
