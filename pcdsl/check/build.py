# ---------------------------------------------------------------------------------------------
# IR expressions -> SymPy expressions of the tensor algebra, with shape inference.
#
# Each node gets a shape: a tuple of SymPy expressions in the declared sizes (a conv's output
# reads `floor((S - 1)/2) + 1`) plus its value at the sizes' current values, which is what every
# comparison uses. Operators are built from the registry (pcdsl/ops): its shape rule, the
# parameter it creates, its node. Parameters are recorded with their shapes and fans as they are
# met. Numbers are kept representable: sizes and options are evaluated exactly with bounds
# (a size written `S**S**S` is refused, not computed), constants must fit float32, tensors are
# limited to 2^31 - 1 elements. Errors E2xx (shapes), E301/E305-E307 (energy form), E106, E117,
# E122 and E208 come from here.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Optional

import sympy as sp

from ..diagnostics import PcdslError, messages
from ..ir.numbers import MAX_ELEMENTS, unrepresentable
from ..ir.model import Bias, Binary, Call, Expr, ModelIR, Neg, Number, Ref, SourceSpan, Term, find_first
from ..ops import REGISTRY, SCALAR, Filled, Identity, Resolved, Shape, ShapeError, Total
from ..parse.spans import diag_span
from .symbols import symbol

MAX_PARAMETERS = 2**32            # all parameters of a model together
MAX_EXPONENT = 16                 # t ** n for a tensor t: n an integer from 1 to this
_DIM_LIMIT = 2**62                # bound on every intermediate value of a size expression


@dataclass
class ParamInfo:
    name: str
    symbol: sp.Symbol
    kind: str                      # the operator that created it ("dense", "conv", ...) or "bias"
    owner: str                     # the term that created it (its target state for `~` terms)
    shape: tuple[int, ...]
    line: int
    fan_in: int = 0
    fan_out: int = 0
    broadcast: tuple[int, ...] = ()    # biases: the shape they are viewed as when added
    macs: int = 0                      # weights: multiply-adds of one example's product with it
    context: tuple[int, ...] = ()      # biases: the per-example shape of what they are added to

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def fail(message, span: SourceSpan, hint=None, **fields):
    raise PcdslError(message, diag_span(span), hint=hint, **fields)


def check_number(value: float, span: SourceSpan, text: str) -> None:
    """E122 for a value a float32 model cannot hold."""
    problem = unrepresentable(value)
    if problem:
        fail(messages.BAD_NUMBER, span, text=text, problem=problem)


class ExpressionBuilder:
    def __init__(self, ir: ModelIR):
        self.ir = ir
        self.size_symbols = {s.name: sp.Symbol(s.name, integer=True, positive=True) for s in ir.sizes}
        self.size_values = {s.name: s.value for s in ir.sizes}
        self.symbols: dict[str, sp.Symbol] = {}
        self.shapes: dict[str, Shape] = {}
        self.params: dict[str, ParamInfo] = {}
        self.expr_shapes: dict[sp.Expr, Shape] = {}   # every tensor subexpression met
        self._call_depth = 0                            # > 0 while building an operator's argument
        for var in ir.variables:
            role = "state" if var.role == "output" else var.role
            self.symbols[var.name] = symbol(role, var.name)
            self.shapes[var.name] = self._declared_shape(var)
            self.expr_shapes[self.symbols[var.name]] = self.shapes[var.name]

    # ------------------------------------------------------------------ sizes and options
    def dim(self, expr: Expr) -> tuple[sp.Expr, Fraction]:
        """A size expression: its symbolic form (for people) and its exact value."""
        if isinstance(expr, Number):
            value = Fraction(expr.value)
            return sp.Rational(value.numerator, value.denominator), value
        if isinstance(expr, Ref):
            return self.size_symbols[expr.name], Fraction(self.size_values[expr.name])
        if isinstance(expr, Neg):
            symbolic, value = self.dim(expr.operand)
            return -symbolic, -value
        (ls, lv), (rs, rv) = self.dim(expr.left), self.dim(expr.right)
        if expr.op == "/" and rv == 0:
            fail(messages.BAD_SIZE, expr.span, problem="a size expression divides by zero")
        if expr.op == "**":
            if rv.denominator != 1 or not 0 <= rv <= 64 or (abs(lv) > 1 and rv * math.log2(abs(lv)) > 62):
                fail(messages.BAD_SIZE, expr.span, problem="a size expression's power is too large to be a size")
            symbolic, value = ls ** int(rv), lv ** int(rv)
        else:
            symbolic, value = _apply(expr.op, ls, rs), _apply(expr.op, lv, rv)
        if abs(value) > _DIM_LIMIT:
            fail(messages.BAD_SIZE, expr.span, problem=f"a size expression reaches {float(value):.3g}, "
                 "far beyond any tensor size")
        return symbolic, value

    def _declared_shape(self, var) -> Shape:
        symbolic, values = [], []
        where = ", ".join(f"{k}={v}" for k, v in self.size_values.items()) or "these values"
        for dim_expr in var.shape:
            sym, value = self.dim(dim_expr)
            if not (value.denominator == 1 and value > 0):
                fail(messages.FRACTIONAL_DIM, dim_expr.span, expr=str(sym), name=var.name,
                     value=_fraction_text(value), where=where if self.size_values else "any size")
            symbolic.append(sym)
            values.append(int(value))
        shape = Shape(tuple(symbolic), tuple(values))
        if shape.numel > MAX_ELEMENTS:
            fail(messages.TOO_LARGE, var.span, what=f"each example of `{var.name}`", count=f"{shape.numel:,}")
        return shape

    def resolve_options(self, call: Call, op) -> Resolved:
        """Every size and option of a call as a number (defaults filled in), checked (E106)."""
        values, symbolic = {}, {}
        for option in op.sizes + op.options:
            if option.name in call.options:
                expr = call.options[option.name]
                if option.integer:
                    sym, value = self.dim(expr)
                    if not (value.denominator == 1 and option.minimum <= value <= MAX_ELEMENTS):
                        fail(messages.BAD_OPTION_VALUE, expr.span, key=option.name, name=op.op_name,
                             expected=("a positive integer" if option.minimum else "a non-negative integer")
                             + (f" (at most {MAX_ELEMENTS:,})" if value > MAX_ELEMENTS else ""),
                             got=_fraction_text(value))
                    values[option.name], symbolic[option.name] = int(value), sym
                else:
                    _, value = self.dim(expr)
                    check_number(float(value), expr.span, _fraction_text(value))
                    values[option.name] = float(value)
            else:
                default = option.default(values) if callable(option.default) else option.default
                values[option.name] = default
                symbolic[option.name] = sp.sympify(default)
        return Resolved(values, symbolic)

    # ------------------------------------------------------------------ expressions
    def build(self, expr, term: Term, context: Optional[Shape] = None) -> tuple[sp.Expr, Shape]:
        """SymPy expression and shape of an IR expression. `context` is the shape a `bias`
        should take when this node is a bias (its sibling's shape)."""
        if isinstance(expr, Number):
            return sp.nsimplify(expr.value, rational=True), SCALAR
        if isinstance(expr, Ref):
            if expr.name in self.size_symbols:
                return sp.Integer(self.size_values[expr.name]), SCALAR
            return self.symbols[expr.name], self.shapes[expr.name]
        if isinstance(expr, Bias):
            return self._bias(expr, term, context)
        if isinstance(expr, Neg):
            inner, shape = self.build(expr.operand, term, context)
            return self._note(-inner, shape)
        if isinstance(expr, Binary):
            return self._binary(expr, term, context)
        if isinstance(expr, Call):
            return self._call(expr, term)
        raise TypeError(type(expr))

    def _note(self, result, shape: Shape):
        if shape.rank:
            if result.is_number:   # `h - h`, `0 * h`: SymPy folded a tensor to a number
                result = Filled(result, *(sp.Integer(d) for d in shape.value))
            self.expr_shapes.setdefault(result, shape)
        return result, shape

    def _bias(self, expr: Bias, term: Term, context: Optional[Shape]):
        if context is None or context.rank == 0:
            fail(messages.BIAS_SHAPE, expr.span,
                 hint="write it next to a tensor: `dense(h, 10) + bias` or `sum(h * bias)`")
        channels = context.value[0]
        broadcast = (channels,) + (1,) * (context.rank - 1)
        param = symbol("param", expr.param)
        self.params[expr.param] = ParamInfo(expr.param, param, "bias", term.name, (channels,),
                                            expr.span.line, broadcast=broadcast, context=tuple(context.value))
        self.expr_shapes[param] = Shape((context.symbolic[0],) + (1,) * (context.rank - 1), broadcast)
        return param, Shape(context.symbolic, context.value)

    def _binary(self, expr: Binary, term: Term, context):
        # Build the non-bias side first so a bias can take its shape.
        left_first = not isinstance(expr.left, Bias)
        first, second = (expr.left, expr.right) if left_first else (expr.right, expr.left)
        a, shape_a = self.build(first, term, context)
        b, shape_b = self.build(second, term, shape_a if shape_a.rank else context)
        left, right = (a, b) if left_first else (b, a)
        shape_l, shape_r = (shape_a, shape_b) if left_first else (shape_b, shape_a)
        op = expr.op
        if op in "+-*" and shape_l.rank and shape_r.rank and shape_l.value != shape_r.value:
            fail(messages.BROADCAST_MISMATCH, expr.span, left=shape_l, right=shape_r, op=op)
        reduced_l, reduced_r = left.has(Total), right.has(Total)
        if op in "+-" and bool(shape_l.rank) != bool(shape_r.rank) and (reduced_l or reduced_r):
            # a scalar plus a tensor broadcasts; a scalar energy plus a tensor does not. At the top
            # of an energy term the tensor lacks its sum(...); inside a tensor the sum is misplaced.
            if term.target is None and self._call_depth == 0:
                fail(messages.NOT_SCALAR, (expr.left if shape_l.rank else expr.right).span, name=term.name)
            fail(messages.SUM_OUTSIDE, _sum_span(expr.left if reduced_l else expr.right))
        if op in ("/", "**") and shape_r.rank:
            fail(messages.BROADCAST_MISMATCH, expr.span, left=shape_l, right=shape_r, op=op,
                 hint="divide by a number; powers take a number exponent")
        # an energy is a linear combination of sums: a sum times a tensor or another sum, a
        # division by a sum or a power of one is not
        if op == "*" and (reduced_l or reduced_r) and (shape_l.rank or shape_r.rank or (reduced_l and reduced_r)):
            fail(messages.SUM_OUTSIDE, _sum_span(expr.right if reduced_r else expr.left))
        if (op == "/" and reduced_r) or (op == "**" and (reduced_l or reduced_r)):
            fail(messages.SUM_OUTSIDE, _sum_span(expr.left if reduced_l else expr.right))
        if op in ("/", "**") and not right.is_number:
            fail(messages.BROADCAST_MISMATCH, expr.span, left=shape_l, right=shape_r, op=op,
                 hint="divide by a number; powers take a number exponent")
        if op == "/" and right == 0:
            fail(messages.BAD_NUMBER, expr.span, text="/ 0", problem="division by zero")
        if op == "**" and not left.is_number:
            if not (right.is_integer and 1 <= right <= MAX_EXPONENT):
                fail(messages.BAD_EXPONENT, expr.span, value=_number_text(right), limit=MAX_EXPONENT)
        if left.is_number and right.is_number:
            result = self._fold(op, left, right, expr.span)
        else:
            result = _apply(op, left, right)
        return self._note(result, shape_l if shape_l.rank else shape_r)

    def _fold(self, op: str, left: sp.Expr, right: sp.Expr, span: SourceSpan) -> sp.Expr:
        """A constant, computed in floating point first so that `2 ** 2 ** 100` is refused, not
        evaluated exactly."""
        a, b = float(left), float(right)
        operations = {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b, "/": lambda: a / b,
                      "**": lambda: math.pow(a, b)}
        try:
            value = operations[op]()
        except (OverflowError, ValueError):
            fail(messages.BAD_NUMBER, span, text=f"{_number_text(left)} {op} {_number_text(right)}",
                 problem="it has no finite real value")
        check_number(value, span, f"{_number_text(left)} {op} {_number_text(right)}")
        if op == "**":
            return sp.nsimplify(value, rational=True)
        return _apply(op, left, right)

    def _call(self, expr: Call, term: Term):
        op = REGISTRY[expr.op]
        self._call_depth += 1
        try:
            built = [self.build(a, term) for a in expr.args]
        finally:
            self._call_depth -= 1
        args = [b[0] for b in built]
        shapes = [b[1] for b in built]
        if op is Identity:
            return built[0]
        for arg_expr, arg, shape in zip(expr.args, args, shapes):
            if shape.rank == 0:
                if arg.has(Total) and op is not Total:
                    fail(messages.SUM_OUTSIDE, _sum_span(arg_expr))
                fail(messages.NON_SUM_TENSOR, expr.span, op=expr.op)
        options = self.resolve_options(expr, op)
        try:
            out = op.infer_shape(shapes, options)
        except ShapeError as err:
            fail(err.message, expr.span, hint=err.hint, **err.fields)
        if out.numel > MAX_ELEMENTS:
            fail(messages.TOO_LARGE, expr.span, what=f"each example of the result of `{expr.op}`",
                 count=f"{out.numel:,}")
        weight = None
        if op.has_weight:
            spec = op.weight_shape(shapes[0], out, options)
            count = math.prod(spec.shape)
            if count > MAX_ELEMENTS:
                fail(messages.TOO_LARGE, expr.span, what=f"the weight `{expr.param}`", count=f"{count:,}")
            weight = symbol("param", expr.param)
            self.params[expr.param] = ParamInfo(expr.param, weight, expr.op, term.name, spec.shape,
                                                expr.span.line, fan_in=spec.fan_in, fan_out=spec.fan_out,
                                                macs=spec.macs)
            self.expr_shapes[weight] = Shape(spec.shape, spec.shape)
            if sum(p.numel for p in self.params.values()) > MAX_PARAMETERS:
                fail(messages.TOO_LARGE, expr.span, what="the model's parameters",
                     count=f"{sum(p.numel for p in self.params.values()):,}")
        return self._note(op.build(weight, args, shapes, options), out)


def _apply(op: str, left: sp.Expr, right: sp.Expr) -> sp.Expr:
    if op == "+":
        return left + right
    if op == "-":
        return left - right
    if op == "*":
        return left * right
    if op == "/":
        return left / right
    return left ** right


def _fraction_text(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else str(value)


def _number_text(value: sp.Expr) -> str:
    return str(int(value)) if value.is_Integer and abs(value) < 10**6 else f"{float(value):g}"


def _sum_span(expr) -> SourceSpan:
    """Where the first sum(...) in an IR expression is (for E307), else the expression's span."""
    found = find_first(expr, lambda e: isinstance(e, Call) and e.op == "sum")
    return (found or expr).span
