# ---------------------------------------------------------------------------------------------
# IR expressions -> SymPy expressions of the tensor algebra, with shape inference.
#
# Each node gets a shape: a tuple of SymPy expressions in the declared size symbols (so a
# conv's output reads `floor((S - 1)/2) + 1`), plus its value at the sizes' current values,
# which is what every comparison uses. Parameters are recorded with their shapes and fans as
# they are met. Errors E2xx (shapes) and E306/E307 (misplaced sums) come from here.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import sympy as sp

from ..diagnostics import PcdslError, messages
from ..ir.model import Bias, Binary, Call, ModelIR, Neg, Number, Ref, SourceSpan, Term
from ..parse.spans import diag_span
from .algebra import AvgPool, Flatten, HardSigmoid, Linear, MaxPool, Relu, Total


@dataclass(frozen=True)
class Shape:
    """A tensor's per-example shape: symbolic and at the current size values. () is a scalar."""
    symbolic: tuple
    value: tuple

    @property
    def rank(self) -> int:
        return len(self.value)

    def __str__(self) -> str:
        return "[" + ", ".join(str(v) for v in self.value) + "]"

    def describe(self) -> str:
        sym = "[" + ", ".join(str(s) for s in self.symbolic) + "]"
        return str(self) if sym == str(self) else f"{self} (= {sym})"


SCALAR = Shape((), ())


@dataclass
class ParamInfo:
    name: str
    kind: str                      # "dense" | "conv" | "bias"
    owner: str                     # the term that created it (its target state for `~` terms)
    shape: tuple[int, ...]
    line: int
    fan_in: int = 0
    fan_out: int = 0
    in_shape: tuple[int, ...] = ()     # linear operators: per-example input and output shapes
    out_shape: tuple[int, ...] = ()
    kernel: int = 0
    stride: int = 1
    padding: int = 0
    broadcast: tuple[int, ...] = ()    # biases: the shape they are viewed as when added

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


def fail(message, span: SourceSpan, hint=None, **fields):
    raise PcdslError(message, diag_span(span), hint=hint, **fields)


class ExpressionBuilder:
    def __init__(self, ir: ModelIR):
        self.ir = ir
        self.size_symbols = {s.name: sp.Symbol(s.name, integer=True, positive=True) for s in ir.sizes}
        self.size_values = {self.size_symbols[s.name]: s.value for s in ir.sizes}
        self.symbols: dict[str, sp.Symbol] = {}
        self.shapes: dict[str, Shape] = {}
        self.params: dict[str, ParamInfo] = {}
        self.expr_shapes: dict[sp.Expr, Shape] = {}   # every tensor subexpression met
        self._call_depth = 0                            # > 0 while building an operator's argument
        for var in ir.variables:
            self.symbols[var.name] = sp.Symbol(var.name)
            self.shapes[var.name] = self._declared_shape(var)
            self.expr_shapes[self.symbols[var.name]] = self.shapes[var.name]

    # ------------------------------------------------------------------ shapes of declarations
    def dim(self, expr) -> sp.Expr:
        if isinstance(expr, Number):
            return sp.nsimplify(expr.value, rational=True)
        if isinstance(expr, Ref):
            return self.size_symbols[expr.name]
        if isinstance(expr, Neg):
            return -self.dim(expr.operand)
        left, right = self.dim(expr.left), self.dim(expr.right)
        return {"+": left + right, "-": left - right, "*": left * right, "/": left / right,
                "**": left ** right}[expr.op]

    def value_of(self, symbolic: sp.Expr):
        return sp.nsimplify(symbolic).subs(self.size_values)

    def _declared_shape(self, var) -> Shape:
        symbolic, values = [], []
        where = ", ".join(f"{k}={v}" for k, v in self.size_values.items()) or "these values"
        for dim_expr in var.shape:
            sym = self.dim(dim_expr)
            value = self.value_of(sym)
            if not (value.is_integer and value > 0):
                fail(messages.FRACTIONAL_DIM, dim_expr.span, expr=str(sym), name=var.name, value=value,
                     where=where if self.size_values else "any size")
            symbolic.append(sym)
            values.append(int(value))
        return Shape(tuple(symbolic), tuple(values))

    def option(self, expr, op: str, key: str, minimum: int = 1) -> int:
        """An operator's size or option at the sizes' values; E106 (at the value) when it is not an
        integer >= minimum."""
        value = self.value_of(self.dim(expr))
        if not (value.is_integer and value >= minimum):
            fail(messages.BAD_OPTION_VALUE, expr.span, key=key, name=op,
                 expected="a positive integer" if minimum == 1 else "a non-negative integer", got=str(value))
        return int(value)

    # ------------------------------------------------------------------ expressions
    def build(self, expr, term: Term, context: Optional[Shape] = None) -> tuple[sp.Expr, Shape]:
        """SymPy expression and shape of an IR expression. `context` is the shape a `bias`
        should take when this node is a bias (its sibling's shape)."""
        if isinstance(expr, Number):
            return sp.nsimplify(expr.value, rational=True), SCALAR
        if isinstance(expr, Ref):
            if expr.name in self.size_symbols:
                return sp.Integer(self.value_of(self.size_symbols[expr.name])), SCALAR
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
            self.expr_shapes.setdefault(result, shape)
        return result, shape

    def _bias(self, expr: Bias, term: Term, context: Optional[Shape]):
        if context is None or context.rank == 0:
            fail(messages.BIAS_SHAPE, expr.span,
                 hint="write it next to a tensor: `dense(h, 10) + bias` or `sum(h * bias)`")
        channels = context.value[0]
        broadcast = (channels,) + (1,) * (context.rank - 1)
        self.params[expr.param] = ParamInfo(expr.param, "bias", term.name, (channels,), expr.span.line,
                                            broadcast=broadcast)
        symbol = sp.Symbol(expr.param)
        self.expr_shapes[symbol] = Shape((context.symbolic[0],) + (1,) * (context.rank - 1), broadcast)
        return symbol, Shape(context.symbolic, context.value)

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
        reduced_l, reduced_r = _is_reduction(left), _is_reduction(right)
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
        # division by a sum or a power of one has no closed-form update
        if op == "*" and (reduced_l or reduced_r) and (shape_l.rank or shape_r.rank or (reduced_l and reduced_r)):
            fail(messages.SUM_OUTSIDE, _sum_span(expr.right if reduced_r else expr.left))
        if (op == "/" and reduced_r) or (op == "**" and (reduced_l or reduced_r)):
            fail(messages.SUM_OUTSIDE, _sum_span(expr.left if reduced_l else expr.right))
        shape = shape_l if shape_l.rank else shape_r
        result = {"+": lambda: left + right, "-": lambda: left - right, "*": lambda: left * right,
                  "/": lambda: left / right, "**": lambda: left ** right}[op]()
        return self._note(result, shape)

    def _call(self, expr: Call, term: Term):
        op = expr.op
        if op == "sum":
            self._call_depth += 1
            try:
                inner, shape = self.build(expr.args[0], term)
            finally:
                self._call_depth -= 1
            if shape.rank == 0:
                fail(messages.NON_SUM_TENSOR, expr.span, op="sum")
            return Total(inner), SCALAR
        self._call_depth += 1
        try:
            arg, shape = self.build(expr.args[0], term)
        finally:
            self._call_depth -= 1
        if op == "identity":
            return arg, shape
        if shape.rank == 0:
            if arg.has(Total):
                fail(messages.SUM_OUTSIDE, _sum_span(expr.args[0]))
            fail(messages.NON_SUM_TENSOR, expr.span, op=op)
        if op in ("relu", "hardsigmoid"):
            return self._note((Relu if op == "relu" else HardSigmoid)(arg), shape)
        if op == "flatten":
            size = 1
            sym = sp.Integer(1)
            for d_sym, d in zip(shape.symbolic, shape.value):
                size *= d
                sym *= d_sym
            return self._note(Flatten(arg), Shape((sym,), (size,)))
        if op == "dense":
            if shape.rank != 1:
                fail(messages.RANK_MISMATCH, expr.span, op="dense", expected="a vector [n]", got=shape,
                     hint="flatten it first: dense(flatten(...), n)")
            n_sym = self.dim(expr.options["size"])
            n = self.option(expr.options["size"], "dense", "size")
            self.params[expr.param] = ParamInfo(expr.param, "dense", term.name, (n, shape.value[0]),
                                                expr.span.line, fan_in=shape.value[0], fan_out=n,
                                                in_shape=shape.value, out_shape=(n,))
            return self._note(Linear(sp.Symbol(expr.param), arg), Shape((n_sym,), (n,)))
        if op == "conv":
            if shape.rank != 3:
                fail(messages.RANK_MISMATCH, expr.span, op="conv", expected="an image [c, h, w]", got=shape)
            out_sym = self.dim(expr.options["size"])
            out = self.option(expr.options["size"], "conv", "size")
            k, stride = (self.option(expr.options[key], "conv", key) for key in ("k", "stride"))
            pad = self.option(expr.options["pad"], "conv", "pad", minimum=0)
            spatial_sym = tuple(sp.floor((d + 2 * pad - k) / stride) + 1 for d in shape.symbolic[1:])
            spatial = tuple((d + 2 * pad - k) // stride + 1 for d in shape.value[1:])
            if min(spatial) < 1:
                fail(messages.NON_POSITIVE_DIM, expr.span, op="conv", shape=list((out,) + spatial))
            out_shape = (out,) + spatial
            channels = shape.value[0]
            self.params[expr.param] = ParamInfo(
                expr.param, "conv", term.name, (out, channels, k, k), expr.span.line,
                fan_in=channels * k * k, fan_out=out * k * k, in_shape=shape.value, out_shape=out_shape,
                kernel=k, stride=stride, padding=pad)
            return self._note(Linear(sp.Symbol(expr.param), arg), Shape((out_sym,) + spatial_sym, out_shape))
        if op in ("maxpool", "avgpool"):
            if shape.rank != 3:
                fail(messages.RANK_MISMATCH, expr.span, op=op, expected="an image [c, h, w]", got=shape)
            k = self.option(expr.options["k"], op, "k")
            stride = self.option(expr.options["stride"], op, "stride") if "stride" in expr.options else k
            for size in shape.value[1:]:
                if size < k:
                    fail(messages.NON_POSITIVE_DIM, expr.span, op=op, shape=list(shape.value))
                if (size - k) % stride:
                    fail(messages.UNEVEN_POOL, expr.span, op=op, k=k, stride=stride, size=size)
            spatial_sym = tuple(sp.floor((d - k) / stride) + 1 for d in shape.symbolic[1:])
            spatial = tuple((d - k) // stride + 1 for d in shape.value[1:])
            pool = MaxPool if op == "maxpool" else AvgPool
            return self._note(pool(arg, sp.Integer(k), sp.Integer(stride)),
                              Shape((shape.symbolic[0],) + spatial_sym, (shape.value[0],) + spatial))
        raise TypeError(op)


def _is_reduction(expr) -> bool:
    return expr.has(Total)


def _sum_span(expr) -> SourceSpan:
    """Where the first sum(...) in an IR expression is (for E307), else the expression's span."""
    found = _find_sum(expr)
    return (found or expr).span


def _find_sum(expr) -> Optional[Call]:
    if isinstance(expr, Call) and expr.op == "sum":
        return expr
    children = (expr.left, expr.right) if isinstance(expr, Binary) else \
        (expr.operand,) if isinstance(expr, Neg) else tuple(expr.args) if isinstance(expr, Call) else ()
    for child in children:
        found = _find_sum(child)
        if found is not None:
            return found
    return None
