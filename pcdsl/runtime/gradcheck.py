# ---------------------------------------------------------------------------------------------
# Gradient check: the model's EP estimate (or its recurrent-backprop gradient, algorithm="rbp";
# predictive-coding inference learning's update with the output nudged by beta, "pcil") against
# the backprop gradient of the same cost.
#
# A generative model has no cost: its inference-learning update (the energy's weight gradient at
# the relaxed states) is checked against autograd of the energy at the end of the relaxation,
# through its iterations, d/dtheta E(h_T(theta); theta). The two agree once the relaxation has
# converged (dE/dh = 0 there: the envelope theorem).
#
# The oracle is autograd through the free phase: d/dtheta of model.cost(model(x), label).mean().
# For a PCN model(x) is the feedforward pass; for other energies it is the relaxation loop itself,
# so autograd differentiates through the iterations (the BPTT-style oracle). With exact equilibria
# and beta -> 0 the two agree (METHOD.md section 2); run this in float64 for tight comparisons.
#
# Mixed precision (precision="bf16"): the estimate runs as training runs it (float32 weights,
# bfloat16 products), the oracle is float64 backprop on a float64 copy, and each parameter also
# gets the cosine of bf16 backprop against the same oracle: what bfloat16 costs any algorithm on
# this network, the yardstick for EP's.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import copy
import math

import torch

from pcdsl.runtime.estimators import (bp_gradients, clamped_free_phase, ep_gradients, generative_gradients, one_hot,
                                      pcil_gradients, rbp_gradients)


def compare(ep: torch.Tensor, bp: torch.Tensor) -> dict:
    """Cosine and relative error ||ep - bp|| / ||bp|| of two gradient tensors.

    Zero norms: two zero tensors agree perfectly (cosine 1, error 0); if only the oracle is zero
    the relative error is infinite, and a zero tensor has cosine 0 with a non-zero one."""
    ep, bp = ep.detach().double().flatten(), bp.detach().double().flatten()
    ep_norm, bp_norm = float(ep.norm()), float(bp.norm())
    difference = float((ep - bp).norm())
    if ep_norm == 0.0 and bp_norm == 0.0:
        cosine = 1.0
    elif ep_norm == 0.0 or bp_norm == 0.0:
        cosine = 0.0
    else:
        cosine = float(ep @ bp) / (ep_norm * bp_norm)
    if bp_norm > 0.0:
        rel_error = difference / bp_norm
    else:
        rel_error = 0.0 if difference == 0.0 else math.inf
    return {"cosine": cosine, "rel_error": rel_error, "bp_norm": bp_norm, "ep_norm": ep_norm}


def gradcheck(model, x: torch.Tensor, label: torch.Tensor, beta: float, steps: int,
              scheme: str = "centered", mod: bool = True, synchronous: bool = False, perturbation: str = "nudge",
              free_steps: int | None = None, precision: str = "float32", algorithm: str = "ep",
              adjoint_steps: int | None = None, label_state: str | None = None) -> dict:
    """Per-parameter agreement of the EP estimate with backprop, plus the worst of each.
    With precision="bf16" the model and x are used in float32 and the oracle in float64.
    algorithm="rbp": implicit differentiation at the free equilibrium instead of EP (beta and
    steps unused), which equals backprop through the relaxation once that has converged."""
    if algorithm in ("rbp", "pcil") and precision != "float32":
        raise ValueError(f"{algorithm} is checked in float32 or float64 only")
    if precision == "bf16":
        oracle_model = copy.deepcopy(model).double()
        model, x_estimate, x_oracle = model.float(), x.float(), x.double()
    else:
        oracle_model, x_estimate, x_oracle = model, x, x
    if model.OUTPUT is None:
        estimate = generative_gradients(model, x, free_steps=free_steps, label=label, label_state=label_state)
    elif algorithm == "rbp":
        estimate = rbp_gradients(model, x_estimate, label, free_steps=free_steps, adjoint_steps=adjoint_steps)
    elif algorithm == "pcil":
        estimate = pcil_gradients(model, x, label, steps, mod=mod, nudge=beta)
    else:
        estimate = ep_gradients(model, x_estimate, label, beta, steps, scheme=scheme, mod=mod,
                                synchronous=synchronous, free_steps=free_steps, precision=precision,
                                perturbation=perturbation)
    oracle = (_relaxed_energy_gradients(model, x, free_steps, label, label_state) if model.OUTPUT is None
              else bp_gradients(oracle_model, x_oracle, label, free_steps=free_steps))
    same_precision = (bp_gradients(model, x_estimate, label, free_steps=free_steps, precision=precision)["grads"]
                      if precision != "float32" else None)
    rows = []
    named = model.named_parameters()
    for index, ((name, parameter), ep, bp) in enumerate(zip(named, estimate["grads"], oracle["grads"], strict=True)):
        row = {"name": name, "shape": list(parameter.shape), **compare(ep, bp)}
        if same_precision is not None:
            row["bp_same_precision_cosine"] = compare(same_precision[index], bp)["cosine"]
        rows.append(row)
    result = {"params": rows,
              "min_cosine": min(row["cosine"] for row in rows),
              "max_rel_error": max(row["rel_error"] for row in rows)}
    if same_precision is not None:
        result["bp_same_precision_min_cosine"] = min(row["bp_same_precision_cosine"] for row in rows)
    return result


def _relaxed_energy_gradients(model, x: torch.Tensor, free_steps: int | None, label: torch.Tensor,
                              label_state: str | None) -> dict:
    """A generative model's oracle: autograd of the batch-mean energy at the end of the free
    phase (a generative classifier's: with the label state clamped), through its iterations."""
    params = list(model.parameters())
    with torch.enable_grad():
        if label_state is None:
            states = model(x, free_steps)
        else:
            states = clamped_free_phase(model, x, label_state, one_hot(model, label_state, label, x), free_steps)
        energy = model.energy(x, states).mean()
        grads = torch.autograd.grad(energy, params, allow_unused=True)
    return {"grads": [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]}
