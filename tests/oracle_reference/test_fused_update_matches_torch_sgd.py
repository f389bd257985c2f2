# ---------------------------------------------------------------------------------------------
# Oracle: torch.optim.SGD. A compiled EP step takes the optimiser's step inside its own program
# (optim.sgd_step_, on the optimiser's state); parameters and momentum buffers after several
# steps must be what torch's SGD leaves after the same gradients, and a step whose health flag
# is false must leave every parameter and buffer as it was.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from helpers import build, random_batch
from pcdsl.runtime.optim import make_optimizer, momentum_buffers, sgd_step_
from pcdsl.runtime.step import StepOptions, TrainStep

ROOT = Path(__file__).resolve().parents[2]


def _parameters(shapes=((4, 3), (4,), (2, 4, 3, 3))):
    generator = torch.Generator().manual_seed(0)
    return [torch.nn.Parameter(torch.randn(s, dtype=torch.float64, generator=generator)) for s in shapes]


@pytest.mark.parametrize("momentum,nesterov,weight_decay", [(0.9, True, 1e-2), (0.9, False, 0.0), (0.0, False, 1e-3)])
@pytest.mark.parametrize("tensor_lr", [False, True])
def test_sgd_step_equals_torch_sgd(momentum, nesterov, weight_decay, tensor_lr):
    ours, theirs = _parameters(), _parameters()
    lr = torch.tensor(0.1, dtype=torch.float64) if tensor_lr else 0.1
    mine = torch.optim.SGD(ours, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    reference = torch.optim.SGD(theirs, lr=0.1, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    buffers = momentum_buffers(mine)
    generator = torch.Generator().manual_seed(1)
    for _ in range(4):
        grads = [torch.randn(p.shape, dtype=p.dtype, generator=generator) for p in ours]
        sgd_step_(mine, grads, buffers, apply=torch.tensor(True))
        for p, g in zip(theirs, grads):
            p.grad = g.clone()
        reference.step()
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-15)
    if momentum:
        for a, b in zip(ours, theirs):
            torch.testing.assert_close(mine.state[a]["momentum_buffer"], reference.state[b]["momentum_buffer"],
                                       rtol=1e-13, atol=1e-15)


def test_sgd_step_skipped_when_not_applied():
    params = _parameters()
    optimizer = torch.optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2)
    buffers = momentum_buffers(optimizer)
    before = [p.detach().clone() for p in params]
    grads = [torch.full_like(p, float("nan")) for p in params]
    sgd_step_(optimizer, grads, buffers, apply=torch.tensor(False))
    for p, b, buffer in zip(params, before, buffers):
        assert torch.equal(p, b) and not buffer.any()


@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_compiled_ep_step_takes_torch_sgd_step(cuda_graphs):
    """Three steps of the compiled EP step with the update inside it, against the eager step
    followed by torch's SGD, from the same weights; then a NaN batch changes nothing. (With
    cuda_graphs on a CPU: the same program, the optimiser's state marked static, no graphs.)"""
    compiled_model, model = build(ROOT / "tests" / "golden" / "tiny_pcn.pc")
    config = compiled_model.ir.train.model_copy(update={"beta": 1e-3, "steps": 8, "lr": 0.05, "momentum": 0.9,
                                                        "nesterov": True, "weight_decay": 1e-3})
    twin = copy.deepcopy(model)
    fused_optimizer = make_optimizer(model.parameters(), config, tensor_lr=True)
    fused = TrainStep(model, config, StepOptions(compile=True, cuda_graphs=cuda_graphs), fused_optimizer)
    reference_optimizer = make_optimizer(twin.parameters(), config, tensor_lr=True)   # the same float32 rate
    reference = TrainStep(twin, config, StepOptions(compile=False), reference_optimizer)
    for seed in range(3):
        x, label = random_batch(model, batch=4, seed=seed)
        result = fused(x, label)
        assert result.updated and bool(result.ok)
        twin_result = reference(x, label)
        assert not twin_result.updated
        reference_optimizer.step()
    for (name, a), b in zip(model.named_parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=lambda m, name=name: f"{name}: {m}")

    before = [p.detach().clone() for p in model.parameters()]
    x, label = random_batch(model, batch=4, seed=9)
    result = fused(torch.full_like(x, float("nan")), label)
    assert not bool(result.ok)
    for (name, p), b in zip(model.named_parameters(), before):
        assert torch.equal(p, b), name
