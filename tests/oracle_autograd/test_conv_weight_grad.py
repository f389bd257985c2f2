# ---------------------------------------------------------------------------------------------
# Oracle: autograd on conv2d, for the generated module's conv weight-gradient helper.
#
# conv_weight_grad picks between two kernels (PyTorch's weight-gradient kernel, and on a CPU
# for small outputs the same batch sum written as a convolution over the batch); both must
# equal d <v, conv2d(u, W)> / dW, for every stride and padding the language accepts.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pcdsl.ops.base import HELPERS


def _helper():
    namespace = {"torch": torch, "F": F}
    exec(HELPERS["conv_weight_grad"], namespace)   # the helper's text, as the generated module has it
    return namespace["conv_weight_grad"]


@pytest.mark.parametrize("size,stride,padding", [
    (4, 1, 1),     # an output of 16 positions: the batch-convolution kernel
    (8, 1, 0),     # 36 positions
    (8, 1, 1),     # exactly 64 positions
    (12, 1, 1),    # 144 positions: PyTorch's kernel
    (8, 2, 1),     # strided: PyTorch's kernel
])
def test_conv_weight_grad_equals_autograd(size, stride, padding):
    g = torch.Generator().manual_seed(size * 10 + stride + padding)
    u = torch.randn(5, 3, size, size, dtype=torch.float64, generator=g)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, generator=g, requires_grad=True)
    out = F.conv2d(u, w, stride=stride, padding=padding)
    v = torch.randn(out.shape, dtype=torch.float64, generator=g)
    (expected,) = torch.autograd.grad((out * v).sum(), w)
    got = _helper()(u, w.shape, v, stride, padding)
    assert got.shape == w.shape
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


def test_conv_weight_grad_in_channels_last():
    g = torch.Generator().manual_seed(3)
    u = torch.randn(6, 8, 6, 6, generator=g).to(memory_format=torch.channels_last)
    w = torch.randn(5, 8, 3, 3, generator=g, requires_grad=True)
    out = F.conv2d(u, w, padding=1)
    v = torch.randn(out.shape, generator=g).to(memory_format=torch.channels_last)
    (expected,) = torch.autograd.grad((out * v).sum(), w)
    torch.testing.assert_close(_helper()(u, w.shape, v, 1, 1), expected, rtol=1e-4, atol=1e-4)
