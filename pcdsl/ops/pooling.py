# ---------------------------------------------------------------------------------------------
# Pooling and resampling: maxpool, avgpool, global_avgpool, upsample, and their adjoints.
#
# Pools must tile their input exactly (E205), so every adjoint maps back to the input size
# without output padding. Max-pooling's adjoint routes the error to each window's maximum; it
# reads the pooled input to find it (METHOD.md's unpool), so the checker names that input z_h.
# All of them keep the range of values of their input, which the feedforward test relies on.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

from ..diagnostics import messages
from .base import Option, Shape, ShapeError, TensorOp, helper, register, require_rank, static

WINDOW = Option("k", "count", doc="window size")
POOL_STRIDE = Option("stride", "count", lambda opts: opts["k"], "stride (default: the window)")


class _Window(TensorOp):
    """A pool over k x k windows with a stride; node args (input, k, stride)."""
    category = "pooling"
    sizes = (WINDOW,)
    options = (POOL_STRIDE,)
    nargs = 3

    @classmethod
    def infer_shape(cls, shapes, opts):
        shape = shapes[0]
        require_rank(shape, 3, cls.op_name, "an image [c, h, w]")
        k, s = opts["k"], opts["stride"]
        for size in shape.value[1:]:
            if size < k:
                raise ShapeError(messages.NON_POSITIVE_DIM, op=cls.op_name, shape=list(shape.value))
            if (size - k) % s:
                raise ShapeError(messages.UNEVEN_POOL, op=cls.op_name, k=k, stride=s, size=size)
        # the windows tile the input exactly, so the division needs no floor
        return shape.with_dims(lambda d: (d - k) // s + 1, lambda d: (d - k) / s + 1)

    @classmethod
    def build(cls, weight, args, shapes, opts):
        return cls(args[0], static(opts["k"]), static(opts["stride"]))

    def value_range(self, arg_ranges):
        return arg_ranges[0]

    @property
    def window(self) -> tuple[int, int]:
        return int(self.args[1]), int(self.args[2])

    def _call(self, p, function: str, first) -> str:
        k, s = self.window
        return f"{function}({p.text(first)}, {k}{'' if s == k else f', {s}'})"


@register
class MaxPool(_Window):
    op_name = "maxpool"
    summary = "max-pooling over k x k windows: `[C, H, W]` -> `[C, ⌊(H−k)/s⌋+1, …]`"

    def smooth(self):
        return False

    def vjp(self, index, v, shape_of):
        return MaxUnpool(v, *self.args)

    def torch_text(self, p):
        return self._call(p, "F.max_pool2d", self.args[0])

    def plain_text(self, p):
        return f"maxpool({p.text(self.args[0])})"


MAX_UNPOOL = helper("max_unpool", '''
def max_unpool(v, z, kernel, stride):
    """Adjoint of max_pool2d at z: send v to the position of each window's maximum."""
    _, indices = F.max_pool2d(z, kernel, stride, return_indices=True)
    return F.max_unpool2d(v, indices, kernel, stride, output_size=z.shape[-2:])
''')


class MaxUnpool(TensorOp):
    """unpool(v @ z): routes v to the argmax positions of maxpool(z, k, stride). The plan
    replaces it by MaxUnpoolAt where the argmax positions of z are named (idx_h), so that they
    are found once, by the pool that makes them, not once more per unpool."""
    nargs = 4          # v, z, k, stride
    linear_arg = 0
    helpers = (MAX_UNPOOL,)

    def torch_text(self, p):
        v, z, k, s = self.args
        return f"max_unpool({p.text(v)}, {p.text(z)}, {int(k)}, {int(s)})"

    def plain_text(self, p):
        return f"unpool({p.text(self.args[0])} @ {p.text(self.args[1])})"


def _pool_with_indices(p, node) -> str:
    z, k, s = node.args
    return f"F.max_pool2d({p.text(z)}, {int(k)}{'' if s == k else f', {int(s)}'}, return_indices=True)"


class PoolIndices(TensorOp):
    """The argmax positions of maxpool(z, k, stride) (what max_unpool2d reads)."""
    nargs = 3          # z, k, stride

    def torch_text(self, p):
        return _pool_with_indices(p, self) + "[1]"

    def plain_text(self, p):
        return f"argmax_positions({p.text(self.args[0])})"


class MaxPoolWithIndices(TensorOp):
    """maxpool(z) and its argmax positions in one call: `a_h, idx_h = ...` (the plan fuses the
    two assignments when one block computes both)."""
    nargs = 3          # z, k, stride

    def torch_text(self, p):
        return _pool_with_indices(p, self)

    def plain_text(self, p):
        return f"maxpool({p.text(self.args[0])}), argmax_positions({p.text(self.args[0])})"


class MaxUnpoolAt(TensorOp):
    """unpool(v @ idx): v sent to the argmax positions `idx` of a max-pool whose input had
    spatial size height x width."""
    nargs = 6          # v, idx, k, stride, height, width
    linear_arg = 0

    def torch_text(self, p):
        v, idx, k, s, height, width = self.args
        return (f"F.max_unpool2d({p.text(v)}, {p.text(idx)}, {int(k)}, {int(s)}, "
                f"output_size=({int(height)}, {int(width)}))")

    def plain_text(self, p):
        return f"unpool({p.text(self.args[0])} @ {p.text(self.args[1])})"


@register
class AvgPool(_Window):
    op_name = "avgpool"
    summary = "average-pooling over k x k windows: as maxpool"

    def vjp(self, index, v, shape_of):
        return AvgPoolAdjoint(v, *self.args[1:])

    def torch_text(self, p):
        return self._call(p, "F.avg_pool2d", self.args[0])

    def plain_text(self, p):
        return f"avgpool({p.text(self.args[0])})"


AVG_POOL_ADJOINT = helper("avg_pool_adjoint", '''
def avg_pool_adjoint(v, kernel, stride):
    """Adjoint of avg_pool2d (windows that tile the input): spread each value evenly over its window."""
    if stride == kernel:      # disjoint windows: a repeat, no convolution
        return (v / (kernel * kernel)).repeat_interleave(kernel, 2).repeat_interleave(kernel, 3)
    batch, channels = v.shape[:2]
    spread = v.new_full((1, 1, kernel, kernel), 1.0 / (kernel * kernel))
    out = F.conv_transpose2d(v.reshape(batch * channels, 1, *v.shape[2:]), spread, stride=stride)
    return out.reshape(batch, channels, *out.shape[2:])
''')


class AvgPoolAdjoint(TensorOp):
    """avgpoolᵀ(v): each value spread evenly over its window."""
    nargs = 3          # v, k, stride
    linear_arg = 0
    helpers = (AVG_POOL_ADJOINT,)

    def torch_text(self, p):
        v, k, s = self.args
        return f"avg_pool_adjoint({p.text(v)}, {int(k)}, {int(s)})"

    def plain_text(self, p):
        return f"avgpoolᵀ({p.text(self.args[0])})"


@register
class GlobalAvgPool(TensorOp):
    op_name = "global_avgpool"
    summary = "the mean over all positions of each channel: `[C, H, W]` -> `[C]`"
    category = "pooling"
    nargs = 1

    @classmethod
    def infer_shape(cls, shapes, opts):
        shape = shapes[0]
        require_rank(shape, 3, "global_avgpool", "an image [c, h, w]")
        return Shape(shape.symbolic[:1], shape.value[:1])

    def vjp(self, index, v, shape_of):
        _, height, width = shape_of(self.args[0]).value
        return GlobalAvgPoolAdjoint(v, static(height), static(width))

    def value_range(self, arg_ranges):
        return arg_ranges[0]

    def torch_text(self, p):
        return f"{p.postfix(self.args[0])}.mean((2, 3))"

    def plain_text(self, p):
        return f"global_avgpool({p.text(self.args[0])})"


class GlobalAvgPoolAdjoint(TensorOp):
    """The adjoint of global_avgpool: each channel's value spread evenly over height x width."""
    nargs = 3          # v, height, width
    linear_arg = 0

    def torch_text(self, p):
        v, height, width = self.args
        return f"({p.operand(v)}[:, :, None, None] / {int(height) * int(width)}).expand(-1, -1, {int(height)}, {int(width)})"

    def plain_text(self, p):
        return f"global_avgpoolᵀ({p.text(self.args[0])})"


FACTOR = Option("k", "count", doc="integer scale factor")


@register
class Upsample(TensorOp):
    op_name = "upsample"
    summary = "nearest-neighbour upsampling by an integer factor: `[C, H, W]` -> `[C, kH, kW]`"
    category = "pooling"
    sizes = (FACTOR,)
    nargs = 2          # input, k

    @classmethod
    def infer_shape(cls, shapes, opts):
        shape = shapes[0]
        require_rank(shape, 3, "upsample", "an image [c, h, w]")
        k = opts["k"]
        return shape.with_dims(lambda d: d * k, lambda d: d * k)

    @classmethod
    def build(cls, weight, args, shapes, opts):
        return cls(args[0], static(opts["k"]))

    def vjp(self, index, v, shape_of):
        return UpsampleAdjoint(v, self.args[1])

    def value_range(self, arg_ranges):
        return arg_ranges[0]

    def torch_text(self, p):
        k = int(self.args[1])
        # repeat_interleave is exact; F.interpolate's nearest mode computes indices in floating point
        return f"{p.postfix(self.args[0])}.repeat_interleave({k}, 2).repeat_interleave({k}, 3)"

    def plain_text(self, p):
        return f"upsample({p.text(self.args[0])})"


class UpsampleAdjoint(TensorOp):
    """The adjoint of nearest upsampling: the sum over each k x k block."""
    nargs = 2          # v, k
    linear_arg = 0

    def torch_text(self, p):
        # the block mean times its size, not avg_pool2d(divisor_override=1): ONNX's AveragePool
        # has no divisor, and torch.onnx's exporter drops it (the exported sum came out a mean)
        k = int(self.args[1])
        return f"(F.avg_pool2d({p.text(self.args[0])}, {k}) * {k * k})"

    def plain_text(self, p):
        return f"upsampleᵀ({p.text(self.args[0])})"
