# The memory estimate of a step (fake-tensor trace): affine in the batch past the small batches,
# lower with --lean-memory, and the largest batch it reports fits the budget while a batch a
# tenth larger does not.
from __future__ import annotations

import pytest
import torch

from helpers import MODELS
from pcdsl.pipeline import compile_file
from pcdsl.runtime.loading import load_model_class
from pcdsl.runtime.memory import largest_batch, traced_peak_bytes


def _model(name):
    compiled = compile_file(MODELS / f"{name}.pc")
    return load_model_class(compiled.source), compiled.ir.train


def test_the_traced_peak_grows_by_the_same_amount_per_example():
    model_class, config = _model("vgg5_cifar10")
    peaks = [traced_peak_bytes(model_class, config, batch) for batch in (32, 64, 128)]
    assert peaks[2] - peaks[1] == pytest.approx(2 * (peaks[1] - peaks[0]), rel=0.02)
    # the free states alone are 238 KB per example in float32 (128x16x16 + 256x8x8 + 512x4x4 +
    # 512x2x2 + 10 numbers); a step keeps several such sets (free, nudged, carried values)
    states = 4 * (128 * 16 * 16 + 256 * 8 * 8 + 512 * 4 * 4 + 512 * 2 * 2 + 10)
    assert (peaks[1] - peaks[0]) / 32 > 4 * states


def test_lean_memory_lowers_the_peak_and_the_fit_is_tight():
    model_class, config = _model("vgg5_cifar10")
    assert traced_peak_bytes(model_class, config, 64, lean_memory=True) < traced_peak_bytes(model_class, config, 64)
    budget = 2e9
    fit = largest_batch(model_class, config, budget)
    reserve = 0.025 * budget
    assert fit.traced_peak_bytes <= budget - reserve
    assert traced_peak_bytes(model_class, config, int(fit.largest_batch * 1.1) + 1) > budget - reserve
    assert torch.get_default_dtype() == torch.float32
