# ---------------------------------------------------------------------------------------------
# Optimiser and learning-rate schedule.
#
# SGD is torch's own. A compiled EP step may also apply it inside its own program (`sgd_step_`:
# torch's SGD written out, on the optimiser's own state, so checkpoints do not change), where the
# update fuses with the parameter products that made the gradient and is skipped, on the device,
# when the step's health flag is false. The schedule is a small explicit class rather than a torch LRScheduler: its
# whole state is one integer (optimiser steps taken), so a resumed run lands on exactly the
# learning rate it would have had, and the closed form is testable on its own.
#
# The cosine schedule is stepped once per ITERATION (optimiser step), not per epoch:
#     lr(t) = min_lr + (lr - min_lr) * (1 + cos(pi * min(t, T) / T)) / 2
# where t counts the steps already taken and T = epochs * batches per epoch is fixed when the run
# starts. Step t = 0 uses lr; past T the rate stays at min_lr.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import math
from typing import Iterable

import torch

from pcdsl.ir.config import TrainConfig


def make_optimizer(parameters: Iterable[torch.nn.Parameter], config: TrainConfig, *,
                   tensor_lr: bool = False) -> torch.optim.Optimizer:
    """torch's SGD. `tensor_lr`: the rate is a 0-dim tensor the schedule fills in place, so that
    a compiled optimizer step (torch.compile(optimizer.step)) is not recompiled when it changes."""
    if config.optimizer != "sgd":
        raise ValueError(f"unsupported optimizer {config.optimizer!r}")
    optimizer = torch.optim.SGD(parameters, lr=config.lr, momentum=config.momentum,
                                nesterov=config.nesterov, weight_decay=config.weight_decay)
    hold_learning_rate(optimizer, as_tensor=tensor_lr)
    return optimizer


def hold_learning_rate(optimizer: torch.optim.Optimizer, as_tensor: bool) -> None:
    """Keep each group's rate as a Python float, or as a 0-dim tensor on the parameters' device
    (a compiled step reads it without recompiling when the schedule changes it, and a CUDA graph
    without a host input). Called again after load_state_dict, which brings back the rate as it
    was saved: a run started eagerly may resume compiled, and the other way round."""
    for group in optimizer.param_groups:
        value = float(group["lr"])
        group["lr"] = torch.tensor(value, device=group["params"][0].device) if as_tensor else value


def fusable(optimizer) -> bool:
    """Whether sgd_step_ can take `optimizer`'s step: torch's SGD, one group, no dampening."""
    return (type(optimizer) is torch.optim.SGD and len(optimizer.param_groups) == 1
            and not optimizer.param_groups[0]["dampening"] and not optimizer.param_groups[0]["maximize"])


def momentum_buffers(optimizer: torch.optim.SGD) -> list[torch.Tensor] | None:
    """The momentum buffers of `optimizer`'s parameters, created (zero) where torch's SGD has
    none yet: its first step, buf = grad, is then momentum * 0 + grad, the same value."""
    group = optimizer.param_groups[0]
    if not group["momentum"]:
        return None
    buffers = []
    for parameter in group["params"]:
        state = optimizer.state[parameter]
        if state.get("momentum_buffer") is None:
            state["momentum_buffer"] = torch.zeros_like(parameter)
        buffers.append(state["momentum_buffer"])
    return buffers


@torch.no_grad()
def sgd_step_(optimizer: torch.optim.SGD, grads: list[torch.Tensor], buffers: list[torch.Tensor] | None,
              apply: torch.Tensor) -> None:
    """torch.optim.SGD's step (dampening 0) for the gradients `grads`, in place on the
    parameters and `buffers` (momentum_buffers(optimizer)), taken only where the 0-dim bool
    `apply` is true: a step whose gradient is not finite leaves everything as it was. Equal to
    torch's up to rounding (torch's add with alpha is one fused multiply-add; float32 results
    differ in the last bits, so a run resumed under another --compile is not bit-identical)."""
    group = optimizer.param_groups[0]
    lr, momentum, decay = group["lr"], group["momentum"], group["weight_decay"]
    for index, (parameter, grad) in enumerate(zip(group["params"], grads, strict=True)):
        d = grad + decay * parameter if decay else grad
        if momentum:
            buffer = buffers[index]
            moved = momentum * buffer + d
            d = d + momentum * moved if group["nesterov"] else moved
            buffer.copy_(torch.where(apply, moved, buffer))
        parameter.copy_(torch.where(apply, parameter - lr * d, parameter))


def cosine_lr(step: int, total_steps: int, lr: float, min_lr: float) -> float:
    """The cosine-annealed rate after `step` of `total_steps` optimiser steps."""
    progress = min(step, total_steps) / total_steps if total_steps > 0 else 1.0
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


class LRSchedule:
    """Sets the optimiser's learning rate before every step; `step()` after each optimiser step."""

    def __init__(self, optimizer: torch.optim.Optimizer, kind: str, lr: float, min_lr: float,
                 total_steps: int):
        if kind not in ("cosine", "constant"):
            raise ValueError(f"unknown schedule {kind!r}; expected cosine or constant")
        self.optimizer = optimizer
        self.kind = kind
        self.lr = lr
        self.min_lr = min_lr
        self.total_steps = total_steps
        self.steps_taken = 0
        self._apply()

    def rate(self, step: int) -> float:
        if self.kind == "constant":
            return self.lr
        return cosine_lr(step, self.total_steps, self.lr, self.min_lr)

    @property
    def current(self) -> float:
        """The rate the next optimiser step uses."""
        return self.rate(self.steps_taken)

    def step(self) -> None:
        self.steps_taken += 1
        self._apply()

    def _apply(self) -> None:
        for group in self.optimizer.param_groups:
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(self.current)
            else:
                group["lr"] = self.current

    def state_dict(self) -> dict:
        return {"kind": self.kind, "lr": self.lr, "min_lr": self.min_lr,
                "total_steps": self.total_steps, "steps_taken": self.steps_taken}

    def load_state_dict(self, state: dict) -> None:
        """Restore the position AND the horizon recorded when the run started."""
        self.kind = state["kind"]
        self.lr = float(state["lr"])
        self.min_lr = float(state["min_lr"])
        self.total_steps = int(state["total_steps"])
        self.steps_taken = int(state["steps_taken"])
        self._apply()


def make_schedule(optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int) -> LRSchedule:
    return LRSchedule(optimizer, config.schedule, config.lr, config.min_lr, total_steps)
