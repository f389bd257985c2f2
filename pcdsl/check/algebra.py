# ---------------------------------------------------------------------------------------------
# The tensor algebra the checker reasons in, as SymPy expressions.
#
# States, inputs, labels and parameters are SymPy symbols standing for whole tensors; element-
# wise arithmetic is ordinary SymPy arithmetic (elementwise products commute, so Mul is right);
# operators that mix elements (dense, conv, pooling, flatten) and nonlinearities are opaque
# SymPy functions defined here. `Total(e)` is the per-example sum, the one reduction.
#
# Differentiation is a vector-Jacobian product (`vjp`) over this algebra: it returns the
# gradient of <v, e> with respect to a state as another expression of the same algebra, in
# which the adjoints appear as explicit operators (`LinearT` = transposed matmul/conv,
# `MaxUnpool`, `AvgPoolT`, `Unflatten`). Code generation prints those directly, so the compiled
# relaxation never calls autograd.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import sympy as sp


class TensorOp(sp.Function):
    """Base of the opaque operators: never evaluated, never differentiated by SymPy."""

    is_commutative = True

    @classmethod
    def eval(cls, *args):
        return None


class Total(TensorOp):
    """Per-example sum over every element: the reduction that makes an energy term a scalar."""
    nargs = 1


class Linear(TensorOp):
    """W(a): the dense or conv whose weight is the symbol W (its geometry is in the param table)."""
    nargs = 2


class AdjointOp(TensorOp):
    """An adjoint operator, linear in its `linear_arg`: scalar factors are pulled out so that
    signs and scales read naturally, W^T(-2 u) = -2 W^T(u)."""
    linear_arg = 0

    @classmethod
    def eval(cls, *args):
        coeff, rest = args[cls.linear_arg].as_coeff_Mul()
        if coeff != 1 and rest != 0:
            args = list(args)
            args[cls.linear_arg] = rest
            return coeff * cls(*args)
        return None


class LinearT(AdjointOp):
    """W^T(v): the adjoint of Linear(W, .) -- a transposed matmul or a transposed conv."""
    nargs = 2
    linear_arg = 1


class Relu(TensorOp):
    nargs = 1


class Step(TensorOp):
    """relu'(a): 1 where a > 0, else 0."""
    nargs = 1


class HardSigmoid(TensorOp):
    """clamp(a, 0, 1)."""
    nargs = 1


class BoxMask(TensorOp):
    """hardsigmoid'(a): 1 where 0 < a < 1, else 0."""
    nargs = 1


class Clamp(TensorOp):
    """Projection onto a box; the bounds are numbers or +-oo."""
    nargs = 3


class MaxPool(TensorOp):
    """MaxPool(a, k, stride)."""
    nargs = 3


class MaxUnpool(AdjointOp):
    """MaxUnpool(v, a, k, stride): routes v to the argmax positions of MaxPool(a, k, stride)."""
    nargs = 4


class AvgPool(TensorOp):
    nargs = 3


class AvgPoolT(AdjointOp):
    """AvgPoolT(v, a, k, stride): the adjoint of AvgPool (a only supplies the output shape)."""
    nargs = 4


class Flatten(TensorOp):
    nargs = 1


class Unflatten(AdjointOp):
    """Unflatten(v, a): v reshaped like a."""
    nargs = 2


class CostGrad(TensorOp):
    """dC/dh_L (h_L, label): the cost's gradient, evaluated at the current output state."""
    nargs = 2


NONLINEAR = (Relu, HardSigmoid, MaxPool, Step, BoxMask, Clamp)


def vjp(expr: sp.Expr, state: sp.Symbol, v: sp.Expr, definitions: dict) -> sp.Expr:
    """d/d state of <v, expr>: the vector-Jacobian product, as an expression of the algebra.

    `definitions` maps named intermediate symbols (a_k, eps_k) to their expressions: the
    product looks through them, so results keep the names instead of expanding them."""
    if not depends(expr, state, definitions):
        return sp.Integer(0)
    if expr == state:
        return v
    if expr in definitions:
        return vjp(definitions[expr], state, v, definitions)
    if isinstance(expr, sp.Add):
        return sp.Add(*(vjp(arg, state, v, definitions) for arg in expr.args))
    if isinstance(expr, sp.Mul):
        total = sp.Integer(0)
        for index, factor in enumerate(expr.args):
            if depends(factor, state, definitions):
                others = sp.Mul(*(expr.args[:index] + expr.args[index + 1:]))
                total += vjp(factor, state, v * others, definitions)
        return total
    if isinstance(expr, sp.Pow):
        base, exponent = expr.args
        return vjp(base, state, v * exponent * base ** (exponent - 1), definitions)
    if isinstance(expr, Relu):
        (a,) = expr.args
        return vjp(a, state, v * Step(a), definitions)
    if isinstance(expr, HardSigmoid):
        (a,) = expr.args
        return vjp(a, state, v * BoxMask(a), definitions)
    if isinstance(expr, Linear):
        weight, a = expr.args
        return vjp(a, state, LinearT(weight, v), definitions)
    if isinstance(expr, MaxPool):
        a, k, stride = expr.args
        return vjp(a, state, MaxUnpool(v, a, k, stride), definitions)
    if isinstance(expr, AvgPool):
        a, k, stride = expr.args
        return vjp(a, state, AvgPoolT(v, a, k, stride), definitions)
    if isinstance(expr, Flatten):
        (a,) = expr.args
        return vjp(a, state, Unflatten(v, a), definitions)
    raise TypeError(f"no vector-Jacobian product rule for {type(expr).__name__}")


def depends(expr: sp.Expr, state: sp.Symbol, definitions: dict) -> bool:
    if expr.has(state):
        return True
    return any(depends(definitions[s], state, definitions) for s in expr.free_symbols if s in definitions)


def expand_definitions(expr: sp.Expr, definitions: dict) -> sp.Expr:
    """Substitute every named intermediate by its expression, recursively."""
    while any(s in definitions for s in expr.free_symbols):
        expr = expr.xreplace({s: definitions[s] for s in expr.free_symbols if s in definitions})
    return expr


def energy_gradient(energy: sp.Expr, state: sp.Symbol, definitions: dict) -> sp.Expr:
    """d energy / d state, where the energy is a linear combination of Total(...) terms."""
    total = sp.Integer(0)
    for term in sp.Add.make_args(sp.expand(energy, deep=False)):
        coeff, rest = term.as_coeff_Mul()
        if isinstance(rest, Total):
            total += vjp(rest.args[0], state, coeff, definitions)
        elif depends(rest, state, definitions):
            raise ValueError("energy term is not a combination of sum(...) terms")
    return total
