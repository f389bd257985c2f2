# ---------------------------------------------------------------------------------------------
# The operator registry: every operator of the language, defined once.
#
# An operator is one class. It is the SymPy node the checker reasons with (opaque to SymPy:
# never evaluated or differentiated by it) and it carries everything each stage needs:
#
#   lowering      how it is called: tensor arguments, integer sizes, keyword options
#   checking      its shape rule and the parameter it creates (dense, conv, ...)
#   deriving      its vector-Jacobian product (an expression with explicit adjoint operators),
#                 the range of values it produces, whether it is a domain's projection
#   printing      its text for each target (`torch_text`) and for people (`plain_text`), and the
#                 helper functions of the generated module that text calls
#
# Lowering, the checker, the code generator and docs/language.md all read `REGISTRY`, so adding
# an operator is one class in this package, its row in the docs and its tests.
#
# A node's arguments are: the weight symbol (operators with a parameter), the tensor arguments,
# then static values (kernel, stride, ...) as SymPy numbers. Everything printing needs is in the
# node itself, so no printer looks anything up by name.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Optional

import sympy as sp

from ..diagnostics import messages


# ---------------------------------------------------------------------------------------------
# shapes and value ranges


@dataclass(frozen=True)
class Shape:
    """A tensor's per-example shape: symbolic (in the declared sizes) and at the sizes' current
    values, which is what every comparison uses. () is a scalar."""
    symbolic: tuple
    value: tuple

    @property
    def rank(self) -> int:
        return len(self.value)

    @property
    def numel(self) -> int:
        return math.prod(self.value)

    def __str__(self) -> str:
        return "[" + ", ".join(str(v) for v in self.value) + "]"

    def describe(self) -> str:
        sym = "[" + ", ".join(str(s) for s in self.symbolic) + "]"
        return str(self) if sym == str(self) else f"{self} (= {sym})"

    def with_dims(self, value_fn: Callable[[int], int], symbolic_fn: Callable, first: int = 1) -> "Shape":
        """The same shape with dimensions `first`.. mapped (spatial dimensions by default)."""
        return Shape(self.symbolic[:first] + tuple(symbolic_fn(d) for d in self.symbolic[first:]),
                     self.value[:first] + tuple(value_fn(d) for d in self.value[first:]))


SCALAR = Shape((), ())


@dataclass(frozen=True)
class Interval:
    """A closed interval of values; None is an infinite end. Open ends are treated as closed,
    which keeps every inclusion test on the safe side."""
    low: Optional[float] = None
    high: Optional[float] = None

    def within(self, other: "Interval") -> bool:
        low_ok = other.low is None or (self.low is not None and self.low >= other.low)
        high_ok = other.high is None or (self.high is not None and self.high <= other.high)
        return low_ok and high_ok


REALS = Interval()


@dataclass(frozen=True)
class WeightShape:
    """The parameter an operator creates, with the fans its initialisation uses and the
    multiply-adds one example's product with it costs (its adjoint and its weight gradient cost
    the same: the FLOP count of a plan is built from these)."""
    shape: tuple[int, ...]
    fan_in: int
    fan_out: int
    macs: int = 0


# ---------------------------------------------------------------------------------------------
# call signatures


@dataclass(frozen=True)
class Option:
    """A keyword option (or an integer size written positionally).

    kind: "count" (integer >= 1), "natural" (integer >= 0) or "real" (a number).
    default: a value, a function of the options resolved so far (maxpool's stride = k), or None
    when the option must be given."""
    name: str
    kind: str
    default: Any = None
    doc: str = ""

    @property
    def integer(self) -> bool:
        return self.kind in ("count", "natural")

    @property
    def minimum(self) -> int:
        return 1 if self.kind == "count" else 0


class Resolved(dict):
    """The sizes and options of one call resolved to numbers (name -> value); `symbolic` holds
    each integer's expression in the declared sizes, for shapes shown to the user."""

    def __init__(self, values: dict, symbolic: dict):
        super().__init__(values)
        self.symbolic = symbolic


class ShapeError(Exception):
    """Raised by a shape rule; the checker turns it into the diagnostic `message` at the call."""

    def __init__(self, message, hint: Optional[str] = None, **fields):
        super().__init__(message.code)
        self.message, self.hint, self.fields = message, hint, fields


# ---------------------------------------------------------------------------------------------
# the node base class


class TensorOp(sp.Function):
    """Base of every operator node."""

    is_commutative = True          # elementwise products of tensors commute, so Mul is right
    is_number = False              # a tensor, even when every argument is a number (Filled)

    op_name: ClassVar[str] = ""    # the name in model files; "" for internal operators
    summary: ClassVar[str] = ""    # one line for docs/language.md
    category: ClassVar[str] = ""   # how docs group it: linear, pooling, activation, ...
    tensors: ClassVar[int] = 1     # tensor arguments in model files (-2: two or more)
    sizes: ClassVar[tuple[Option, ...]] = ()     # integer arguments written after the tensors
    options: ClassVar[tuple[Option, ...]] = ()   # keyword options
    has_weight: ClassVar[bool] = False
    elementwise: ClassVar[bool] = False          # an activation: f applied to every element
    projects_onto: ClassVar[Optional[tuple]] = None   # (low, high): it is that domain's projection
    linear_arg: ClassVar[Optional[int]] = None   # linear in this argument: scalars are pulled out
    helpers: ClassVar[tuple[str, ...]] = ()      # helper functions of the generated module it calls

    @classmethod
    def eval(cls, *args):
        if cls.linear_arg is not None:
            coeff, rest = args[cls.linear_arg].as_coeff_Mul()
            if coeff != 1 and rest != 0:
                args = list(args)
                args[cls.linear_arg] = rest
                return coeff * cls(*args)
        return None

    # -- checking ----------------------------------------------------------------------------
    @classmethod
    def infer_shape(cls, shapes: list[Shape], opts: dict) -> Shape:
        """The output shape from the tensor arguments' shapes; raise ShapeError when invalid."""
        return shapes[0]

    @classmethod
    def weight_shape(cls, shape: Shape, out: Shape, opts: dict) -> WeightShape:
        raise NotImplementedError

    @classmethod
    def build(cls, weight: Optional[sp.Symbol], args: list, shapes: list[Shape], opts: dict) -> sp.Expr:
        """The node for a call; `opts` holds every size and option resolved to a number."""
        return cls(*([weight] if weight is not None else []), *args)

    # -- deriving ----------------------------------------------------------------------------
    def tensor_arguments(self) -> range:
        """Indices (into self.args) of the arguments the operator is differentiable in."""
        start = 1 if self.has_weight else 0
        return range(start, start + max(self.tensors, 1))

    def vjp(self, index: int, v: sp.Expr, shape_of: Callable[[sp.Expr], Shape]) -> sp.Expr:
        """The cotangent of argument `index` for the output cotangent v: d<v, self>/d arg."""
        if self.elementwise:
            return v * self.derivative()
        raise TypeError(f"{type(self).__name__} has no vector-Jacobian product")

    def derivative(self) -> sp.Expr:
        """Elementwise operators: f'(a) as an expression of the algebra."""
        raise NotImplementedError

    def value_range(self, arg_ranges: list[Interval]) -> Interval:
        """The values the node can take, given the ranges of its tensor arguments."""
        return REALS

    def smooth(self) -> bool:
        """Whether the node's derivative is continuous. A kink (relu at 0, a max-pool's switch)
        in a state is harmless inside a squared prediction error, whose factor vanishes at the
        equilibrium, but an energy term linear in it can put the minimum on the kink, where
        every relaxation cycles."""
        return True

    # -- printing ----------------------------------------------------------------------------
    def torch_text(self, p) -> str:
        raise NotImplementedError(type(self).__name__)

    def plain_text(self, p) -> str:
        name = self.op_name or type(self).__name__.lower()
        return f"{name}({', '.join(p.text(a) for a in self.args)})"


# ---------------------------------------------------------------------------------------------
# the registry


REGISTRY: dict[str, type[TensorOp]] = {}   # model-file name -> operator, in definition order
HELPERS: dict[str, str] = {}               # helper name -> its source in the generated module


def register(cls: type[TensorOp]) -> type[TensorOp]:
    """Class decorator: make the operator callable from model files under its `op_name`."""
    assert cls.op_name and cls.op_name not in REGISTRY, cls.op_name
    REGISTRY[cls.op_name] = cls
    return cls


def helper(name: str, source: str) -> str:
    """Define a helper function of the generated module (its source text, once)."""
    assert name not in HELPERS, name
    HELPERS[name] = source.strip("\n") + "\n"
    return name


# ---------------------------------------------------------------------------------------------
# small pieces the operator modules share


def static(value) -> sp.Expr:
    """A static argument of a node: an integer or an exact rational (0.01 -> 1/100)."""
    if isinstance(value, int):
        return sp.Integer(value)
    return sp.nsimplify(value, rational=True)


def number_text(value) -> str:
    """A static value as Python source: 3, 0.01."""
    value = sp.sympify(value)
    if value.is_Integer:
        return str(int(value))
    return repr(float(value))


def pair_text(values: tuple[int, int]) -> str:
    """An int when both spatial values agree (stride=2), else a tuple (output_padding=(1, 0))."""
    return str(values[0]) if values[0] == values[1] else f"({values[0]}, {values[1]})"


def strided(numerator: sp.Expr, stride: int) -> sp.Expr:
    """⌊numerator / stride⌋ for a shape shown to people. SymPy's floor consults its assumption
    system on every call (slow); a stride of 1 or a number needs no floor at all."""
    if stride == 1:
        return numerator
    if numerator.is_Number:
        return sp.Integer(int(numerator) // stride)
    return sp.floor(numerator / stride, evaluate=False)


def require_rank(shape: Shape, rank: int, op: str, expected: str, hint: Optional[str] = None) -> None:
    if shape.rank != rank:
        raise ShapeError(messages.RANK_MISMATCH, hint=hint, op=op, expected=expected, got=shape)
