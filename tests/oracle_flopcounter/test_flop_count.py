# ---------------------------------------------------------------------------------------------
# Oracle: torch.utils.flop_counter, which counts the matrix products (mm, addmm, convolution and
# its backward) the generated code actually runs. The compiler's own count (pcdsl/plan/cost.py),
# which `pcdsl bench` turns into TFLOP/s and the EP/BP ratio, must equal it for every accepted
# model: EP's phases as planned, and backprop's gradients only for the products on the loss's
# path and only for operands that need one (not the data, not a relaxation's initial states).
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from helpers import build, random_batch
from pcdsl.plan.cost import step_flops
from pcdsl.runtime.estimators import bp_gradients, ep_gradients
from support.catalogue import ALL


def _counted(function) -> int:
    with FlopCounterMode(display=False) as counter:
        function()
    return counter.get_total_flops()


@pytest.mark.parametrize("entry", ALL, ids=lambda e: e.id)
@pytest.mark.parametrize("scheme", ["centered", "forward"])
def test_the_plans_flop_count_is_what_runs(entry, scheme):
    compiled, model = build(entry.path, list(entry.sets), dtype=torch.float32)
    x, label = random_batch(model, batch=2, dtype=torch.float32)
    steps = 3
    free_steps = 5
    counted = step_flops(compiled.plan, steps, scheme, free_steps)
    ep = _counted(lambda: ep_gradients(model, x, label, 0.1, steps, scheme=scheme, free_steps=free_steps,
                                       check=False)) / 2
    bp = _counted(lambda: bp_gradients(model, x, label, free_steps=free_steps)) / 2
    assert (counted.ep, counted.backprop) == (ep, bp)
