# ---------------------------------------------------------------------------------------------
# Relaxation diagnostics (`pcdsl train --diagnostics`): how the relaxations of the run's training
# step end, as numbers per epoch, in metrics.jsonl under `relax/...` keys.
#
# Measured once per epoch by rank 0, at the epoch's final weights, on one fixed batch: the first
# B examples of the test split in stored order (B: the train block's batch, whatever the number
# of processes), the same batch every epoch, so that an epoch's numbers differ from the one before only by what training
# changed. (Not averaged over the epoch's training batches: that would make the training step,
# a compiled program, return more than it does, and would mix a whole epoch of weights.) The
# phases are those the run's training step runs, with its settings (beta, steps, update rule,
# traversal, perturbation, free steps, a clamped label state), run eagerly in the model's dtype
# (a bf16 run's without autocast); labels are read only by the nudged phases, nothing is learnt.
#
#   relax/energy/PHASE          the batch-mean energy E at the end of the phase (not
#                               F = E + beta * C)
#   relax/change/PHASE/STATE    the RMS, over the batch and the state's entries, of the state's
#                               change at the phase's last iteration: how far from its fixed
#                               point the relaxation stopped
#
# PHASE is `free`, and for EP `nudged_pos` / `nudged_neg` (those its scheme runs; both for the
# random scheme, whose draw belongs to the training step and is not made here); for supervised
# inference learning (pcil, ipc) `clamped`: the output clamped and the `steps` inference sweeps
# (estimators.clamped_inference; for ipc with the weights held at the epoch's end, where its
# training moves them at every sweep). bp and rbp report the free phase only. A feedforward free phase (a PCN's) is its
# own equilibrium, reached without iterating: it has an energy but no change. A number that is
# not finite (a relaxation that ran away on this batch) is null.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import math

import torch

from pcdsl.ir.config import TrainConfig
from pcdsl.runtime.estimators import _clamped_phase, clamped_free_phase, clamped_inference, one_hot
from pcdsl.runtime.precisions import sweep_precisions

PREFIX = "relax/"


@torch.no_grad()
def relaxation_diagnostics(model, x: torch.Tensor, label: torch.Tensor, config: TrainConfig
                           ) -> dict[str, float | None]:
    """The `relax/...` numbers of one batch (see above), read from the device at once."""
    values: dict[str, torch.Tensor] = {}
    before, free = _free_phase_ends(model, x, label, config)
    _measure(values, model, x, "free", before, free)
    if config.algorithm == "ep" and model.OUTPUT is not None:
        for phase, beta in _nudges(config):
            before, last = _nudged_phase_ends(model, x, free, label, beta, config)
            _measure(values, model, x, phase, before, last)
    if config.algorithm in ("pcil", "ipc") and model.OUTPUT is not None:
        before, last = clamped_inference(model, x, free, label, config.steps, config.update == "modpgd",
                                         sweep_precisions(model, config, config.steps), config.output_nudge)
        _measure(values, model, x, "clamped", before if config.steps else None, last)
    numbers = torch.stack([value.double() for value in values.values()]).cpu().tolist()
    return {key: number if math.isfinite(number) else None for key, number in zip(values, numbers)}


def _measure(values: dict, model, x: torch.Tensor, phase: str, before: dict | None, last: dict) -> None:
    values[f"{PREFIX}energy/{phase}"] = model.energy(x, last).mean()
    if before is not None:
        for state in model.STATES:
            values[f"{PREFIX}change/{phase}/{state}"] = (last[state] - before[state]).double().pow(2).mean().sqrt()


def _free_phase_ends(model, x: torch.Tensor, label: torch.Tensor, config: TrainConfig) -> tuple[dict | None, dict]:
    """The free phase's states one iteration before its end (None: no iteration) and at its end,
    as training reaches them: the feedforward pass, `free_steps` iterations from rest, or a
    generative classifier's sweeps with its label state clamped."""
    steps = config.free_steps
    if config.label_state is not None:
        value = one_hot(model, config.label_state, label, x)
        before = clamped_free_phase(model, x, config.label_state, value, steps - 1)
        return before, clamped_free_phase(model, x, config.label_state, value, 1, start=before)
    if model.FEEDFORWARD:
        return None, model(x)
    # the free phase is `steps` iterations from rest (protocol.py): the last one taken on its
    # own, but a momentum relaxation's velocity restarts with every call: from rest again
    before = model(x, steps - 1)
    if getattr(model, "RELAX_MOMENTUM", 0.0):
        return before, model(x, steps)
    return before, model.relax(x, before, None, 0.0, 1)


def _nudges(config: TrainConfig) -> list[tuple[str, float]]:
    positive, negative = ("nudged_pos", config.beta), ("nudged_neg", -config.beta)
    return {"forward": [positive], "backward": [negative]}.get(config.scheme, [positive, negative])


def _nudged_phase_ends(model, x: torch.Tensor, free: dict, label: torch.Tensor, beta: float,
                       config: TrainConfig) -> tuple[dict, dict]:
    """A nudged phase's states after steps - 1 and after `steps` iterations from the free state,
    by the training step's rule (ep_gradients: relax, or the clamp of a squared-error output)."""
    mod, steps = config.update == "modpgd", config.steps
    if config.perturbation == "clamp":
        return (_clamped_phase(model, x, free, label, beta, steps - 1, mod),
                _clamped_phase(model, x, free, label, beta, steps, mod))
    synchronous = config.traversal == "sync"
    before = model.relax(x, free, label, beta, steps - 1, mod, synchronous)
    if getattr(model, "RELAX_MOMENTUM", 0.0):      # a velocity restarts with every call: from the start
        return before, model.relax(x, free, label, beta, steps, mod, synchronous)
    return before, model.relax(x, before, label, beta, 1, mod, synchronous)
