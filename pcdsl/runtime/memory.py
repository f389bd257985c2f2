# ---------------------------------------------------------------------------------------------
# Peak memory of a training step, found without running it: the eager step is traced with fake
# tensors (torch's FakeTensorMode: shapes and dtypes, no data, no arithmetic) under torch's
# memory tracker, which records every allocation and free. So a CPU can say how much memory a
# VGG10 step at 224 x 224 needs on an 80 GB GPU, and which batch fits, in seconds.
#
# The peak is affine in the batch (weights, gradients and the optimiser's momentum, plus so much
# per example), so two traces give the line and a third, at the batch it predicts, checks it.
# The estimate is for the eager step's allocations: CUDA's context, cuDNN's workspaces and the
# allocator's fragmentation come on top (`reserve`); a compiled step frees at least as early.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

from dataclasses import dataclass

import torch

from pcdsl.ir.config import TrainConfig


@dataclass(frozen=True)
class MemoryFit:
    per_example_bytes: float
    fixed_bytes: float            # weights, gradients, momentum and what does not grow with the batch
    largest_batch: int            # the largest batch whose traced peak fits budget - reserve
    traced_peak_bytes: int        # the trace at that batch


def traced_peak_bytes(model_class, config: TrainConfig, batch: int, lean_memory: bool = False) -> int:
    """The peak of one step of `config.algorithm` (and precision) at this batch, plus the
    optimiser's momentum buffers (one per parameter)."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed._tools.mem_tracker import MemTracker

    from pcdsl.runtime.step import STEPS, ep_step
    with FakeTensorMode():
        model = model_class()
        x = torch.randn((batch, *model.INPUT_SHAPE))
        label = torch.randint(0, model.NUM_CLASSES, (batch,))
        tracker = MemTracker()
        tracker.track_external(model)
        with tracker:
            if config.algorithm == "ep":
                ep_step(model, x, label, config, check=False, lean_memory=lean_memory)
            elif config.algorithm == "ipc":
                from pcdsl.runtime.optim import make_optimizer
                STEPS["ipc"](model, x, label, config, make_optimizer(model.parameters(), config))
            else:
                STEPS[config.algorithm](model, x, label, config)
        peak = tracker.get_tracker_snapshot("peak")[torch.device("cpu")]["Total"]
        momentum = sum(p.numel() * p.element_size() for p in model.parameters()) if config.momentum else 0
    return int(peak + momentum)


def largest_batch(model_class, config: TrainConfig, budget_bytes: float, reserve_bytes: float | None = None,
                  probe: tuple[int, int] = (32, 64), lean_memory: bool = False) -> MemoryFit:
    """The largest batch whose step fits `budget_bytes - reserve_bytes` (default reserve: 2.5 %
    of the budget, at most 2 GB; probes past the small batches at which the weights' gradients,
    not the activations, make the peak)."""
    if reserve_bytes is None:
        reserve_bytes = min(2e9, 0.025 * budget_bytes)
    small, large = (traced_peak_bytes(model_class, config, b, lean_memory) for b in probe)
    per_example = (large - small) / (probe[1] - probe[0])
    fixed = small - probe[0] * per_example
    batch = max(1, int((budget_bytes - reserve_bytes - fixed) // per_example)) if per_example > 0 else 1
    traced = traced_peak_bytes(model_class, config, batch, lean_memory)
    while batch > 1 and traced > budget_bytes - reserve_bytes:       # the line was optimistic
        batch -= max(1, batch // 100)
        traced = traced_peak_bytes(model_class, config, batch, lean_memory)
    return MemoryFit(per_example, fixed, batch, traced)
