# ---------------------------------------------------------------------------------------------
# One training step, by EP or by backprop, on any model that follows protocol.py.
#
# Both leave the gradient of the batch-MEAN cost in p.grad (EP: the model's estimate from its
# equilibria; BP: autograd through the free phase) and return the batch's free-phase outputs, so
# the trainer treats the two algorithms alike: step, optimiser.step(), bookkeeping.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

from dataclasses import dataclass

import torch

from pcdsl.ir.config import TrainConfig
from pcdsl.runtime.estimators import bp_gradients, ep_gradients


@dataclass
class StepResult:
    loss: torch.Tensor      # 0-dim: mean cost at the free state, before the update
    logits: torch.Tensor    # [B, classes]: the free output state, detached


def _fill(model, estimate: dict) -> StepResult:
    for parameter, grad in zip(model.parameters(), estimate["grads"], strict=True):
        parameter.grad = grad.detach()
    return StepResult(loss=estimate["loss"].detach(), logits=estimate["free"][model.OUTPUT].detach())


def ep_step(model, x: torch.Tensor, label: torch.Tensor, config: TrainConfig) -> StepResult:
    """Fill p.grad with the EP estimate. Raises FloatingPointError if a relaxation blows up."""
    return _fill(model, ep_gradients(model, x, label, config.beta, config.steps, scheme=config.scheme,
                                     mod=config.update == "modpgd", synchronous=config.traversal == "sync",
                                     free_steps=config.free_steps))


def bp_step(model, x: torch.Tensor, label: torch.Tensor, config: TrainConfig) -> StepResult:
    """Fill p.grad by backprop through the free phase (a forward pass for a PCN; for other
    energies, through the `free_steps` relaxation iterations)."""
    return _fill(model, bp_gradients(model, x, label, free_steps=config.free_steps))


def training_step(model, x: torch.Tensor, label: torch.Tensor, config: TrainConfig) -> StepResult:
    step = ep_step if config.algorithm == "ep" else bp_step
    return step(model, x, label, config)


def gradients_finite(model) -> bool:
    """True when every p.grad is finite (one fused reduction, not one sync per tensor)."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return True
    return bool(torch.isfinite(torch.stack([g.abs().sum() for g in grads]).sum()))
