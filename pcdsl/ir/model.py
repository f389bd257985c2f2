# ---------------------------------------------------------------------------------------------
# The intermediate representation: typed, validated (pydantic) records of a model file after
# parsing and macro expansion, before any symbolic analysis.
#
# Expressions are small trees (`Expr`); every node keeps the span of the text it came from so
# that the checker can point at it. Parameters are already named here (lowering assigns names),
# so later stages never invent names.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

from typing import Annotated, Callable, Iterator, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

from .config import TrainConfig


class SourceSpan(BaseModel):
    model_config = ConfigDict(frozen=True)
    line: int
    column: int
    end_line: int
    end_column: int


class _Node(BaseModel):
    model_config = ConfigDict(frozen=True)
    span: SourceSpan


class Number(_Node):
    kind: Literal["number"] = "number"
    value: float


class Ref(_Node):
    """A reference to an input, state, output, label or size."""
    kind: Literal["ref"] = "ref"
    name: str


class Bias(_Node):
    """A learned bias; its shape is inferred from its sibling in `+` or `*`."""
    kind: Literal["bias"] = "bias"
    param: str


class Binary(_Node):
    kind: Literal["binary"] = "binary"
    op: Literal["+", "-", "*", "/", "**"]
    left: "Expr"
    right: "Expr"


class Neg(_Node):
    kind: Literal["neg"] = "neg"
    operand: "Expr"


class Call(_Node):
    """A built-in operator. `param` names the weight of dense/conv; `options` holds k, stride,
    pad, the output size, ... as numbers or size expressions."""
    kind: Literal["call"] = "call"
    op: str
    args: list["Expr"]
    options: dict[str, "Expr"] = Field(default_factory=dict)
    param: Optional[str] = None


Expr = Annotated[Union[Number, Ref, Bias, Binary, Neg, Call], Field(discriminator="kind")]
for _cls in (Binary, Neg, Call):
    _cls.model_rebuild()


# -- the one walker over expressions: every pass that looks into an expression uses these -----
def children(expr) -> tuple:
    """The subexpressions of an expression node, in source order (operator options excluded)."""
    if isinstance(expr, Binary):
        return (expr.left, expr.right)
    if isinstance(expr, Neg):
        return (expr.operand,)
    if isinstance(expr, Call):
        return tuple(expr.args)
    return ()


def walk(expr) -> Iterator:
    """Every node of an expression, parents before children, in source order."""
    yield expr
    for child in children(expr):
        yield from walk(child)


def find_first(expr, predicate: Callable) -> Optional["Expr"]:
    return next((node for node in walk(expr) if predicate(node)), None)


class Size(_Node):
    name: str
    value: int


Role = Literal["input", "state", "output", "label"]


class Domain(BaseModel):
    model_config = ConfigDict(frozen=True)
    low: Optional[float] = None    # None: unbounded
    high: Optional[float] = None


class Variable(_Node):
    name: str
    role: Role
    shape: list[Expr]
    domain: Domain = Domain()


class Term(_Node):
    """One energy term. `target` is set for the PCN shorthand `target ~ prediction`, whose energy
    is 0.5 * sum((target - prediction)**2); `energy` terms carry the whole expression."""
    name: str                      # the owner of its parameters: the target state or the label
    target: Optional[str] = None
    prediction: Optional[Expr] = None
    energy: Optional[Expr] = None


class Cost(_Node):
    kind: Literal["squared_error", "cross_entropy"]
    output: str
    label: str


class ModelIR(BaseModel):
    name: str
    file: str
    text: str                      # the model file's text (comments in generated code quote it)
    source_sha256: str
    sizes: list[Size]
    variables: list[Variable]
    terms: list[Term]
    cost: Optional[Cost]           # None for a generative model (its input is predicted)
    train: TrainConfig
    train_spans: dict[str, SourceSpan] = Field(default_factory=dict)  # key -> where it was set
    span: SourceSpan

    def variable(self, name: str) -> Optional[Variable]:
        return next((v for v in self.variables if v.name == name), None)

    def by_role(self, *roles: str) -> list[Variable]:
        return [v for v in self.variables if v.role in roles]

    @property
    def input(self) -> Variable:
        return self.by_role("input")[0]

    @property
    def free_states(self) -> list[Variable]:
        return self.by_role("state", "output")

    @property
    def generative(self) -> bool:
        """The input is predicted from the states (Rao-Ballard): they explain the data, and the
        model has no output or cost."""
        return any(t.target == self.input.name for t in self.terms)
