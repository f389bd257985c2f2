# ---------------------------------------------------------------------------------------------
# The straightforward eager EP step: what `pcdsl bench` measures the compiled step against.
#
# Centered EP the way it is usually written by hand for an energy model in PyTorch: the free
# phase by the model's forward pass; each nudged phase by K asynchronous sweeps over the update
# groups in which autograd differentiates the total energy F = E + beta * C with respect to the
# group's states and each state takes the projected step h <- Proj(h - dF/dh / c) (c: its
# curvature; for a closed-form state this is the alpha = 1 step, PGD); then dE/dtheta by autograd
# on the energy at each nudged state. It recomputes the whole energy for every half-sweep and
# re-runs the network forward for the parameter gradients: no carried values, no explicit
# adjoints. It works on any module that follows the protocol.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch


@dataclass(frozen=True)
class StateStep:
    """How the reference moves one state: h <- clamp(h - scale * dF/dh, low, high)."""
    scale: float
    low: Optional[float]
    high: Optional[float]


def state_steps(checked) -> dict[str, StateStep]:
    """From a CheckedModel: 1 / curvature for closed-form states, the step size otherwise."""
    steps = {}
    for variable in checked.ir.free_states:
        rule = checked.rules[variable.name]
        scale = 1.0 / float(rule.curvature) if rule.kind == "closed" else checked.ir.train.relax_step
        steps[variable.name] = StateStep(scale, variable.domain.low, variable.domain.high)
    return steps


def _total_energy(model, x, states, label, beta):
    total = model.energy(x, states).sum()
    return total + beta * model.cost(states, label).sum() if beta else total


def reference_ep_gradients(model, x: torch.Tensor, label: torch.Tensor, beta: float, steps: int,
                           state_steps: dict[str, StateStep], free_steps: int | None = None,
                           scheme: str = "centered") -> list[torch.Tensor]:
    """EP's estimate of d mean(C) / d theta, computed the straightforward way: centered, or
    one-sided (forward: +beta against the free state; backward: the free state against -beta;
    random is timed as forward, which costs the same)."""
    params = list(model.parameters())
    with torch.no_grad():
        free = model(x, free_steps)

    def nudged(signed_beta: float) -> list[torch.Tensor]:
        states = {name: h.detach().clone() for name, h in free.items()}
        for _ in range(steps if signed_beta else 0):
            for group in model.UPDATE_GROUPS:
                with torch.enable_grad():
                    leaves = {name: h.detach().requires_grad_(name in group) for name, h in states.items()}
                    total = _total_energy(model, x, leaves, label, signed_beta)
                    grads = torch.autograd.grad(total, [leaves[name] for name in group])
                for name, grad in zip(group, grads):
                    step = state_steps[name]
                    moved = states[name] - step.scale * grad
                    states[name] = torch.clamp(moved, step.low, step.high) if (
                        step.low is not None or step.high is not None) else moved
        with torch.enable_grad():
            energy = model.energy(x, {name: h.detach() for name, h in states.items()}).mean()
            grads = torch.autograd.grad(energy, params, allow_unused=True)
        return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]

    if scheme not in ("centered", "forward", "backward", "random"):
        raise ValueError(f"unknown EP scheme {scheme!r}")
    high = 0.0 if scheme == "backward" else beta
    low = -beta if scheme in ("centered", "backward") else 0.0
    upper, lower = nudged(high), nudged(low)
    return [(gu - gl) / (high - low) for gu, gl in zip(upper, lower)]
