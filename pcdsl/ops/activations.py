# ---------------------------------------------------------------------------------------------
# Activations: elementwise nonlinearities, with their derivatives and value ranges.
#
# The vector-Jacobian product of an elementwise f is v * f'(a); `derivative` gives f'(a) in the
# algebra, written with other operators where that reads well (tanh' = 1 - tanh²) and with a
# small derivative operator otherwise (relu' is the step [a > 0]). The range of values decides
# whether a prediction can equal its state (the feedforward test: sigmoid lies in [0, 1], tanh
# does not lie in [0, inf)). relu and hardsigmoid are also the projections onto the domains
# `>= 0` and `in [0, 1]`, which is what makes mod-PGD's update relu(a + delta) possible.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

from typing import ClassVar

from .base import Interval, Option, TensorOp, helper, number_text, register, static


class Activation(TensorOp):
    category = "activation"
    elementwise = True
    nargs = 1
    torch_function: ClassVar[str] = ""
    output_range: ClassVar[Interval] = Interval()

    @classmethod
    def build(cls, weight, args, shapes, opts):
        return cls(args[0], *(static(opts[o.name]) for o in cls.options))

    def value_range(self, arg_ranges):
        return self.output_range

    def torch_text(self, p):
        extra = "".join(f", {number_text(a)}" for a in self.args[1:])
        return f"{self.torch_function}({p.text(self.args[0])}{extra})"

    def plain_text(self, p):
        extra = "".join(f", {number_text(a)}" for a in self.args[1:])
        return f"{self.op_name}({p.text(self.args[0])}{extra})"


@register
class Relu(Activation):
    op_name = "relu"
    summary = "max(t, 0); also the projection onto the domain `>= 0`"
    torch_function = "torch.relu"
    output_range = Interval(0.0, None)
    projects_onto = (0.0, None)

    def smooth(self):
        return False

    def derivative(self):
        return Step(self.args[0])


@register
class HardSigmoid(Activation):
    op_name = "hardsigmoid"
    summary = "clamp(t, 0, 1); also the projection onto the domain `in [0, 1]`"
    output_range = Interval(0.0, 1.0)
    projects_onto = (0.0, 1.0)

    def smooth(self):
        return False

    def derivative(self):
        return BoxMask(self.args[0])

    def torch_text(self, p):
        return f"torch.clamp({p.text(self.args[0])}, 0.0, 1.0)"

    def plain_text(self, p):
        return f"clamp01({p.text(self.args[0])})"


@register
class Tanh(Activation):
    op_name = "tanh"
    summary = "hyperbolic tangent, in (−1, 1)"
    torch_function = "torch.tanh"
    output_range = Interval(-1.0, 1.0)

    def derivative(self):
        return 1 - Tanh(self.args[0]) ** 2


@register
class Sigmoid(Activation):
    op_name = "sigmoid"
    summary = "logistic function 1 / (1 + e^−t), in (0, 1)"
    torch_function = "torch.sigmoid"
    output_range = Interval(0.0, 1.0)

    def derivative(self):
        return Sigmoid(self.args[0]) * (1 - Sigmoid(self.args[0]))


@register
class Softplus(Activation):
    op_name = "softplus"
    summary = "log(1 + e^t), in (0, ∞)"
    torch_function = "F.softplus"
    output_range = Interval(0.0, None)

    def derivative(self):
        return Sigmoid(self.args[0])


GELU_MIN = -0.17   # below gelu's minimum, -0.16997 at t = -0.7518


@register
class Gelu(Activation):
    op_name = "gelu"
    summary = "t·Φ(t) (the exact, erf form), in [−0.17, ∞)"
    torch_function = "F.gelu"
    output_range = Interval(GELU_MIN, None)

    def derivative(self):
        return GeluGrad(self.args[0])


SILU_MIN = -0.279  # below silu's minimum, -0.27846 at t = -1.2785


@register
class Silu(Activation):
    op_name = "silu"
    summary = "t·sigmoid(t) (swish), in [−0.279, ∞)"
    torch_function = "F.silu"
    output_range = Interval(SILU_MIN, None)

    def derivative(self):
        return SiluGrad(self.args[0])


@register
class LeakyRelu(Activation):
    op_name = "leaky_relu"
    summary = "t where t > 0, else slope·t"
    torch_function = "F.leaky_relu"
    options = (Option("slope", "real", 0.01, "slope for t < 0"),)
    nargs = 2

    def derivative(self):
        return LeakyStep(*self.args)

    def value_range(self, arg_ranges):
        return Interval(0.0, None) if self.args[1] <= 0 else Interval()

    def smooth(self):
        return self.args[1] == 1


@register
class Elu(Activation):
    op_name = "elu"
    summary = "t where t > 0, else alpha·(e^t − 1), in (−alpha, ∞)"
    torch_function = "F.elu"
    options = (Option("alpha", "real", 1.0, "scale of the negative part"),)
    nargs = 2

    def derivative(self):
        return EluGrad(*self.args)

    def value_range(self, arg_ranges):
        alpha = float(self.args[1])
        return Interval(min(0.0, -alpha), None)

    def smooth(self):
        return self.args[1] == 1      # elu' jumps from alpha to 1 at 0 unless alpha = 1


@register
class Softsign(Activation):
    op_name = "softsign"
    summary = "t / (1 + abs(t)), in (−1, 1)"
    torch_function = "F.softsign"
    output_range = Interval(-1.0, 1.0)

    def derivative(self):
        return SoftsignGrad(self.args[0])


# ---------------------------------------------------------------------------------------------
# derivative operators (they appear only in derived gradients) and the general projection


class _Derivative(TensorOp):
    category = "derivative"
    nargs = 1

    def vjp(self, index, v, shape_of):
        raise TypeError(f"{type(self).__name__} is a derivative; it is not differentiated again")


class _HelperDerivative(_Derivative):
    """f'(a) computed by a helper function of the generated module: `helpers[0](a, *statics)`;
    `function` names the activation for people (gelu' etc.)."""
    function: str = ""

    def torch_text(self, p):
        extra = "".join(f", {number_text(a)}" for a in self.args[1:])
        return f"{self.helpers[0]}({p.text(self.args[0])}{extra})"

    def plain_text(self, p):
        return f"{self.function}'({p.text(self.args[0])})"


class Step(_Derivative):
    """relu'(a): 1 where a > 0, else 0. A mask: in a product the printer writes
    torch.where(condition, rest, 0.0) (one pass, no float copy of a boolean)."""

    def condition(self, p) -> str:
        return f"{p.text(self.args[0])} > 0"

    def torch_text(self, p):
        a = p.text(self.args[0])
        # a boolean mask multiplies a float tensor exactly; alone it is converted
        return f"({a} > 0)" if p.in_product else f"({a} > 0).to({p.postfix(self.args[0])}.dtype)"

    def plain_text(self, p):
        return f"[{p.text(self.args[0])}>0]"


class BoxMask(_Derivative):
    """hardsigmoid'(a): 1 where 0 < a < 1, else 0 (a mask, like Step)."""

    def condition(self, p) -> str:
        a = p.text(self.args[0])
        return f"({a} > 0) & ({a} < 1)"

    def torch_text(self, p):
        a = p.text(self.args[0])
        mask = f"(({a} > 0) & ({a} < 1))"
        return mask if p.in_product else f"{mask}.to({p.postfix(self.args[0])}.dtype)"

    def plain_text(self, p):
        return f"[0<{p.text(self.args[0])}<1]"


GELU_GRAD = helper("gelu_grad", '''
def gelu_grad(a):
    """d gelu(a) / da = Phi(a) + a * phi(a), for the exact (erf) gelu of F.gelu."""
    return 0.5 * (1.0 + torch.erf(a * 0.7071067811865476)) + a * torch.exp(-0.5 * a * a) * 0.3989422804014327
''')


class GeluGrad(_HelperDerivative):
    function = "gelu"
    helpers = (GELU_GRAD,)


SILU_GRAD = helper("silu_grad", '''
def silu_grad(a):
    """d silu(a) / da = sigmoid(a) * (1 + a * (1 - sigmoid(a)))."""
    s = torch.sigmoid(a)
    return s * (1.0 + a * (1.0 - s))
''')


class SiluGrad(_HelperDerivative):
    function = "silu"
    helpers = (SILU_GRAD,)


LEAKY_RELU_GRAD = helper("leaky_relu_grad", '''
def leaky_relu_grad(a, slope):
    """d leaky_relu(a) / da: 1 where a > 0, else `slope` (in a's dtype, so float64 stays exact)."""
    return torch.where(a > 0, a.new_ones(()), a.new_full((), slope))
''')


class LeakyStep(_HelperDerivative):
    function = "leaky_relu"
    nargs = 2
    helpers = (LEAKY_RELU_GRAD,)


ELU_GRAD = helper("elu_grad", '''
def elu_grad(a, alpha):
    """d elu(a) / da: 1 where a > 0, else alpha * exp(a) (exp of a clamped to <= 0, which the
    selected branch never changes, so that autograd through it sees no overflow)."""
    return torch.where(a > 0, torch.ones_like(a), alpha * torch.exp(a.clamp(max=0.0)))
''')


class EluGrad(_HelperDerivative):
    function = "elu"
    nargs = 2
    helpers = (ELU_GRAD,)


SOFTSIGN_GRAD = helper("softsign_grad", '''
def softsign_grad(a):
    """d softsign(a) / da = 1 / (1 + |a|)^2."""
    return (1.0 + a.abs()) ** -2
''')


class SoftsignGrad(_HelperDerivative):
    function = "softsign"
    helpers = (SOFTSIGN_GRAD,)


class Clamp(TensorOp):
    """The projection onto a box [low, high]; an end is a number or ±oo."""
    category = "projection"
    nargs = 3

    def smooth(self):
        return False

    def torch_text(self, p):
        value, low, high = self.args
        bound = lambda b: "None" if b.is_infinite else number_text(b)  # noqa: E731
        return f"torch.clamp({p.text(value)}, {bound(low)}, {bound(high)})"

    def plain_text(self, p):
        value, low, high = self.args
        return f"clamp({p.text(value)}, {p.text(low)}, {p.text(high)})"
