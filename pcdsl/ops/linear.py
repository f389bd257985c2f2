# ---------------------------------------------------------------------------------------------
# Operators with a learned weight: dense, conv, conv_transpose, and their adjoints.
#
# Each creates its weight (named by lowering: `h2_w_h1` is the weight in h2's term reading h1)
# and never a bias: a bias is always written, `dense(h, 10) + bias`, and the torch printer fuses
# it into F.linear / F.conv2d the way one writes it by hand. The adjoint (transposed matmul,
# transposed convolution) is what carries the error of the layer above down to a state in the
# derived update rules; it is an explicit operator, so the relaxation never calls autograd.
# The weight gradient is explicit too: dE/dW is the local product of the error signal arriving
# at the operator's output with its input (presynaptic activity x postsynaptic error), summed
# over the batch: a transposed matmul for dense, the convolution's weight-gradient kernel for
# conv. Each weight's multiply-adds per example are recorded once (WeightShape.macs); the
# operator, its adjoint and its weight gradient all cost that much, which is how a plan counts
# its FLOPs.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import sympy as sp

from ..diagnostics import messages
from .base import (Option, Shape, ShapeError, TensorOp, WeightShape, helper, pair_text,
                   register, require_rank, static, strided)

CHANNELS = Option("size", "count", doc="output features / channels")
KERNEL = Option("k", "count", 3, "kernel size")
STRIDE = Option("stride", "count", 1, "stride")
PAD = Option("pad", "natural", 0, "zero padding on each side")


def _conv_geometry(node) -> tuple[int, int, int]:
    return tuple(int(a) for a in node.args[2:5])


def _image_out(op: str, shape: Shape, opts, value, symbolic) -> Shape:
    """The output image: the spatial sides mapped (`value` for numbers, `symbolic` for their
    expressions in the sizes), the requested channels first; E204 when a side would vanish."""
    out = shape.with_dims(value, symbolic)
    out = Shape((opts.symbolic["size"],) + out.symbolic[1:], (opts["size"],) + out.value[1:])
    if min(out.value[1:]) < 1:
        raise ShapeError(messages.NON_POSITIVE_DIM, op=op, shape=list(out.value))
    return out


def _conv_options(p, stride: int, pad: int, extra: str = "") -> str:
    text = f", stride={stride}" if stride != 1 else ""
    text += f", padding={pad}" if pad else ""
    return text + extra


class WeightedOp(TensorOp):
    has_weight = True
    category = "linear"

    @property
    def weight(self) -> sp.Symbol:
        return self.args[0]

    def weight_vjp(self, v: sp.Expr) -> sp.Expr:
        """d<v, self>/dW summed over the batch: the weight-gradient node for cotangent v."""
        raise NotImplementedError

    def torch_text(self, p, bias=None) -> str:
        raise NotImplementedError


PHASE_SUM = helper("phase_sum", '''
def phase_sum(terms):
    """The sum of a list of tensors, one per phase (without a leading 0 + ...)."""
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total
''')


class WeightGrad(TensorOp):
    """dE/dW for one weighted operator: the product of the cotangent `v` at its output with its
    input `u`, summed over the batch. The only nodes of the algebra that are not per-example
    (they have the weight's shape); they appear only at the top of a parameter gradient.
    Node args: (weight, v, u, static geometry...)."""
    linear_arg = 1

    @property
    def weight(self) -> sp.Symbol:
        return self.args[0]

    @property
    def cotangent(self) -> sp.Expr:
        return self.args[1]

    @property
    def input(self) -> sp.Expr:
        return self.args[2]

    def with_cotangent(self, v: sp.Expr) -> sp.Expr:
        return self.func(self.args[0], v, *self.args[2:])

    def plain_text(self, p):
        return f"Σ {p.operand(self.args[1])} ⊗ {p.operand(self.args[2])}"


@register
class Dense(WeightedOp):
    op_name = "dense"
    summary = "matrix product with a learned weight: `[m]` -> `[n]`, weight `[n, m]`"
    sizes = (CHANNELS,)
    nargs = 2

    @classmethod
    def infer_shape(cls, shapes, opts):
        require_rank(shapes[0], 1, "dense", "a vector [n]", hint="flatten it first: dense(flatten(...), n)")
        return Shape((opts.symbolic["size"],), (opts["size"],))

    @classmethod
    def weight_shape(cls, shape, out, opts):
        return WeightShape((opts["size"], shape.value[0]), fan_in=shape.value[0], fan_out=opts["size"],
                           macs=opts["size"] * shape.value[0])

    def vjp(self, index, v, shape_of):
        return DenseAdjoint(self.weight, v)

    def weight_vjp(self, v):
        return DenseWeightGrad(self.weight, v, self.args[1])

    def torch_text(self, p, bias=None):
        bias_text = f", {p.param(bias)}" if bias is not None else ""
        return f"F.linear({p.text(self.args[1])}, {p.param(self.weight)}{bias_text})"

    def plain_text(self, p):
        return f"{p.text(self.weight)}·{p.operand(self.args[1])}"


class DenseAdjoint(TensorOp):
    """Wᵀ·v: the adjoint of dense, a transposed matrix product."""
    nargs = 2
    linear_arg = 1

    def torch_text(self, p):
        return f"{p.operand(self.args[1])} @ {p.param(self.args[0])}"

    def plain_text(self, p):
        return f"{p.text(self.args[0])}ᵀ·{p.operand(self.args[1])}"


class DenseWeightGrad(WeightGrad):
    """Σ_batch v uᵀ: the weight gradient of dense(u) for cotangent v, [B, n] x [B, m] -> [n, m]."""
    nargs = 3          # weight, v, u

    def torch_text(self, p):
        return f"{p.postfix(self.args[1])}.t() @ {p.operand(self.args[2])}"


@register
class Conv(WeightedOp):
    op_name = "conv"
    summary = "2-d convolution with a learned kernel: `[C, H, W]` -> `[c, ⌊(H+2p−k)/s⌋+1, …]`, weight `[c, C, k, k]`"
    sizes = (CHANNELS,)
    options = (KERNEL, STRIDE, PAD)
    nargs = 5          # weight, input, k, stride, pad

    @classmethod
    def infer_shape(cls, shapes, opts):
        shape = shapes[0]
        require_rank(shape, 3, "conv", "an image [c, h, w]")
        k, s, p = opts["k"], opts["stride"], opts["pad"]
        return _image_out("conv", shape, opts, lambda d: (d + 2 * p - k) // s + 1,
                          lambda d: strided(d + 2 * p - k, s) + 1)

    @classmethod
    def weight_shape(cls, shape, out, opts):
        k, channels = opts["k"], shape.value[0]
        return WeightShape((opts["size"], channels, k, k), fan_in=channels * k * k,
                           fan_out=opts["size"] * k * k, macs=out.numel * channels * k * k)

    @classmethod
    def build(cls, weight, args, shapes, opts):
        return cls(weight, args[0], *(static(opts[key]) for key in ("k", "stride", "pad")))

    def weight_vjp(self, v):
        return ConvWeightGrad(self.weight, v, self.args[1], *self.args[2:5])

    def vjp(self, index, v, shape_of):
        k, s, p = _conv_geometry(self)
        size_in, size_out = shape_of(self.args[1]).value[1:], shape_of(self).value[1:]
        # output_padding recovers the input sizes that the strided convolution rounded away
        extra = tuple(i - ((o - 1) * s - 2 * p + k) for i, o in zip(size_in, size_out))
        return ConvAdjoint(self.weight, v, *self.args[2:5], *(static(e) for e in extra))

    def torch_text(self, p, bias=None):
        _, s, pad = _conv_geometry(self)
        bias_text = f", {p.param(bias)}" if bias is not None else (", None" if s != 1 or pad else "")
        return f"F.conv2d({p.text(self.args[1])}, {p.param(self.weight)}{bias_text}{_conv_options(p, s, pad)})"

    def plain_text(self, p):
        return f"{p.text(self.weight)}·{p.operand(self.args[1])}"


class ConvAdjoint(TensorOp):
    """The adjoint of conv: a transposed convolution with the same kernel."""
    nargs = 7          # weight, v, k, stride, pad, output padding (height, width)
    linear_arg = 1

    def torch_text(self, p):
        _, s, pad = (int(a) for a in self.args[2:5])
        extra = (int(self.args[5]), int(self.args[6]))
        tail = f", output_padding={pair_text(extra)}" if any(extra) else ""
        return f"F.conv_transpose2d({p.text(self.args[1])}, {p.param(self.args[0])}{_conv_options(p, s, pad, tail)})"

    def plain_text(self, p):
        return f"{p.text(self.args[0])}ᵀ·{p.operand(self.args[1])}"


CONV_WEIGHT_GRAD = helper("conv_weight_grad", '''
def conv_weight_grad(u, shape, v, stride, padding):
    """dE/dW of conv2d(u, W) for the cotangent v, summed over the batch: PyTorch's weight-gradient
    kernel (the one autograd calls), except on a CPU for outputs of at most 8 x 8 positions, where
    the same sum written as a convolution over the batch (u and v with batch and channels
    exchanged) runs 1.4-2.7 times faster."""
    if u.device.type == "cpu" and stride == 1 and v.shape[-2] * v.shape[-1] <= 64:
        return F.conv2d(u.transpose(0, 1), v.transpose(0, 1), padding=padding).transpose(0, 1)
    if u.dtype != v.dtype:
        # under autocast one side may be bfloat16, and this kernel is not an autocast operation
        common = torch.promote_types(u.dtype, v.dtype)
        u, v = u.to(common), v.to(common)
    return torch.nn.grad.conv2d_weight(u, shape, v, stride=stride, padding=padding)
''')


def _weight_grad_text(p, weight, grad_output, conv_input, stride: int, pad: int) -> str:
    """The weight gradient of conv2d(conv_input, W) for the cotangent grad_output."""
    return (f"conv_weight_grad({p.text(conv_input)}, {p.param(weight)}.shape, {p.text(grad_output)}, "
            f"{stride}, {pad})")


class ConvWeightGrad(WeightGrad):
    """The weight gradient of conv(u) for cotangent v."""
    nargs = 6          # weight, v, u, k, stride, pad
    helpers = (CONV_WEIGHT_GRAD,)

    def torch_text(self, p):
        _, s, pad = (int(a) for a in self.args[3:6])
        return _weight_grad_text(p, self.args[0], self.args[1], self.args[2], s, pad)


OUTPUT_PADDING = Option("output_padding", "natural", 0, "extra rows/columns on one side of the output")


@register
class ConvTranspose(WeightedOp):
    op_name = "conv_transpose"
    summary = ("transposed 2-d convolution (a decoder's upsampling layer): `[C, H, W]` -> "
               "`[c, (H−1)s−2p+k+op, …]`, weight `[C, c, k, k]`")
    sizes = (CHANNELS,)
    options = (KERNEL, STRIDE, PAD, OUTPUT_PADDING)
    nargs = 6          # weight, input, k, stride, pad, output_padding

    @classmethod
    def infer_shape(cls, shapes, opts):
        shape = shapes[0]
        require_rank(shape, 3, "conv_transpose", "an image [c, h, w]")
        k, s, p, extra = opts["k"], opts["stride"], opts["pad"], opts["output_padding"]
        if extra >= s:
            raise ShapeError(messages.BAD_OPTION_VALUE, key="output_padding", name="conv_transpose",
                             expected=f"an integer below the stride ({s})", got=str(extra))
        size = lambda d: (d - 1) * s - 2 * p + k + extra  # noqa: E731  (the same for numbers and symbols)
        return _image_out("conv_transpose", shape, opts, size, size)

    @classmethod
    def weight_shape(cls, shape, out, opts):
        k, channels = opts["k"], shape.value[0]
        return WeightShape((channels, opts["size"], k, k), fan_in=channels * k * k,
                           fan_out=opts["size"] * k * k, macs=shape.numel * opts["size"] * k * k)

    @classmethod
    def build(cls, weight, args, shapes, opts):
        return cls(weight, args[0], *(static(opts[key]) for key in ("k", "stride", "pad", "output_padding")))

    def weight_vjp(self, v):
        return ConvTransposeWeightGrad(self.weight, v, self.args[1], *self.args[2:5])

    def vjp(self, index, v, shape_of):
        # conv_transpose2d(., W) is the adjoint of conv2d(., W): its own adjoint is that conv,
        # which maps the output size back to the input size exactly (output_padding < stride)
        return ConvTransposeAdjoint(self.weight, v, *self.args[2:5])

    def torch_text(self, p, bias=None):
        _, s, pad = (int(a) for a in self.args[2:5])
        extra = int(self.args[5])
        tail = f", output_padding={extra}" if extra else ""
        bias_text = f", {p.param(bias)}" if bias is not None else (", None" if s != 1 or pad or extra else "")
        return (f"F.conv_transpose2d({p.text(self.args[1])}, {p.param(self.weight)}{bias_text}"
                f"{_conv_options(p, s, pad, tail)})")

    def plain_text(self, p):
        return f"{p.text(self.weight)}ᵀ·{p.operand(self.args[1])}"


class ConvTransposeAdjoint(TensorOp):
    """The adjoint of conv_transpose: the convolution with the same kernel."""
    nargs = 5          # weight, v, k, stride, pad
    linear_arg = 1

    def torch_text(self, p):
        _, s, pad = (int(a) for a in self.args[2:5])
        bias_text = ", None" if s != 1 or pad else ""
        return f"F.conv2d({p.text(self.args[1])}, {p.param(self.args[0])}{bias_text}{_conv_options(p, s, pad)})"

    def plain_text(self, p):
        return f"{p.text(self.args[0])}·{p.operand(self.args[1])}"


class ConvTransposeWeightGrad(WeightGrad):
    """The weight gradient of conv_transpose(u) for cotangent v. conv_transpose2d(., W) is the
    adjoint of conv2d(., W), so <v, conv_transpose(u)> = <conv2d(v), u>: the kernel of conv2d
    with the roles of input and cotangent exchanged."""
    nargs = 6          # weight, v, u, k, stride, pad
    helpers = (CONV_WEIGHT_GRAD,)

    def torch_text(self, p):
        _, s, pad = (int(a) for a in self.args[3:6])
        return _weight_grad_text(p, self.args[0], self.args[2], self.args[1], s, pad)


LINEAR_NODES = (Dense, Conv, ConvTranspose)
