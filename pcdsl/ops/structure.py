# ---------------------------------------------------------------------------------------------
# Structure and reduction: flatten, identity, add, sum; and the cost's gradient node.
#
# `sum(t)` is the one reduction (per example, over every element): it is what makes an energy
# term a scalar. `add(a, b, ...)` is written `a + b + ...` by lowering and `identity(t)` is t
# itself; they are here so that every name a model file can call is in one table.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import math

import sympy as sp

from .base import SCALAR, Interval, Shape, TensorOp, helper, register, static


@register
class Flatten(TensorOp):
    op_name = "flatten"
    summary = "all dimensions in one: `[C, H, W]` -> `[C·H·W]`"
    category = "structure"
    nargs = 1

    @classmethod
    def infer_shape(cls, shapes, opts):
        shape = shapes[0]
        return Shape((sp.Mul(*shape.symbolic),), (math.prod(shape.value),))

    def vjp(self, index, v, shape_of):
        dims = shape_of(self.args[0]).value
        return Unflatten(v, *(static(d) for d in dims)) if len(dims) > 1 else v

    def value_range(self, arg_ranges):
        return arg_ranges[0]

    def torch_text(self, p):
        return f"{p.postfix(self.args[0])}.flatten(1)"

    def plain_text(self, p):
        return f"flatten({p.text(self.args[0])})"


class Unflatten(TensorOp):
    """The adjoint of flatten: v reshaped to the flattened tensor's dimensions."""
    linear_arg = 0

    def torch_text(self, p):
        dims = tuple(int(d) for d in self.args[1:])
        return f"{p.postfix(self.args[0])}.unflatten(1, {dims})"

    def plain_text(self, p):
        return f"unflatten({p.text(self.args[0])})"


@register
class Identity(TensorOp):
    op_name = "identity"
    summary = "t itself"
    category = "structure"

    @classmethod
    def build(cls, weight, args, shapes, opts):
        return args[0]


@register
class Add(TensorOp):
    op_name = "add"
    summary = "the elementwise sum of two or more tensors of one shape (the same as `a + b + ...`)"
    category = "structure"
    tensors = -2       # two or more; lowering writes it as `a + b + ...`


TOTAL = helper("total", '''
def total(t):
    """Per-example sum over every element: [B, ...] -> [B] (in any memory layout, without a copy)."""
    return t.sum(tuple(range(1, t.dim())))
''')


@register
class Total(TensorOp):
    op_name = "sum"
    summary = "the per-example sum of every element: a tensor -> a scalar (an energy term)"
    category = "reduction"
    nargs = 1
    helpers = (TOTAL,)

    @classmethod
    def infer_shape(cls, shapes, opts):
        return SCALAR

    def vjp(self, index, v, shape_of):
        return v

    def torch_text(self, p):
        return f"total({p.text(self.args[0])})"

    def plain_text(self, p):
        return f"sum({p.text(self.args[0])})"


class Filled(TensorOp):
    """A tensor of one per-example shape filled with a number: the cotangent a sum hands to an
    operator whose adjoint needs a real tensor (sum(dense(h, n)) -> Wᵀ·ones)."""

    def torch_text(self, p):
        value, dims = self.args[0], ", ".join(str(int(d)) for d in self.args[1:])
        shape = f"({p.batch_like}.shape[0], {dims})"
        if value == 1:
            return f"{p.batch_like}.new_ones({shape})"
        return f"{p.batch_like}.new_full({shape}, {p.text(value)})"

    def value_range(self, arg_ranges):
        value = float(self.args[0])
        return Interval(value, value)

    def plain_text(self, p):
        return f"{p.text(self.args[0])}·ones"


class BiasGrad(TensorOp):
    """dE/db of a bias: its cotangent summed over the batch and over the dimensions the bias is
    broadcast along (a conv bias [C] added to [C, H, W]). Not per-example: like the weight
    gradients, it has the parameter's shape. Node args: (v, rank of v per example)."""
    nargs = 2
    linear_arg = 0

    def torch_text(self, p):
        rank = int(self.args[1])
        dims = "0" if rank == 1 else "(" + ", ".join(["0"] + [str(d) for d in range(2, rank + 1)]) + ")"
        return f"{p.postfix(self.args[0])}.sum({dims})"

    def plain_text(self, p):
        return f"Σ {p.text(self.args[0])}"


class CostGrad(TensorOp):
    """dC/dh_L (h_L, label): the cost's gradient at the current output state."""
    nargs = 2

    def torch_text(self, p):
        return f"self.cost_grad({p.text(self.args[0])}, label)"

    def plain_text(self, p):
        return f"∂C/∂{p.text(self.args[0])}"
