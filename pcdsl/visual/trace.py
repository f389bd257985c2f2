# ---------------------------------------------------------------------------------------------
# The relaxation's trace on one batch: per iteration of the free phase and of each nudged phase,
# every energy term, the total energy E, the cost C, the objective F = E + beta * C and the size
# of each state's change. It tells whether K is large enough and whether a relaxation settles or
# runs away (the paper's VGG10 energy spikes around K = 5 before it settles).
#
# The iterations are the model's own relax(), one at a time from the state before; a momentum
# relaxation carries a velocity that one-step calls would restart, so its state at iteration t
# is relaxed afresh from the phase's start (t iterations), as the training step reaches it.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch


@dataclass
class PhaseTrace:
    name: str                      # "free", "nudged +beta", "nudged -beta"
    beta: float
    iterations: list[int] = field(default_factory=list)           # 0 is the phase's starting state
    energies: dict[str, list[float]] = field(default_factory=dict)  # term -> batch-mean energy
    total: list[float] = field(default_factory=list)              # E, batch mean
    cost: list[float | None] = field(default_factory=list)        # C, batch mean (None: generative)
    objective: list[float | None] = field(default_factory=list)   # F = E + beta * C
    changes: dict[str, list[float | None]] = field(default_factory=dict)  # state -> RMS step (None at 0)


@torch.no_grad()
def relaxation_trace(model, x: torch.Tensor, label: torch.Tensor | None, *, beta: float, steps: int,
                     free_steps: int | None = None, scheme: str = "centered", mod: bool = True,
                     synchronous: bool = False, label_state: str | None = None) -> list[PhaseTrace]:
    """The free phase (the feedforward pass: one point; otherwise `free_steps` iterations from
    rest, FREE_STEPS unless given) and the nudged phases of `scheme` (`steps` iterations each
    from the free state; none for a generative model, which has no cost). A generative
    classifier's free phase (`label_state`) is the clamped one its training runs: synchronous
    sweeps with that state held at the one-hot `label`."""
    if label_state is not None:
        from pcdsl.runtime.estimators import clamped_free_phase, one_hot
        value = one_hot(model, label_state, label, x)
        path = [{**model.initial_states(x), label_state: value}]
        for _ in range(model.FREE_STEPS if free_steps is None else free_steps):     # training's sweeps, one by one
            path.append(clamped_free_phase(model, x, label_state, value, 1, start=path[-1]))
        return [_phase(model, x, label, f"free ({label_state} clamped to the label)", 0.0, path)]
    if model.FEEDFORWARD:
        free_path = [model(x)]
    else:
        # as training's free phase, model(x, steps): the module's default sweep (mod-PGD,
        # asynchronous) at beta = 0, whatever `mod` and `synchronous` the nudged phases use
        free_path = _path(model, x, model.initial_states(x), None, 0.0,
                          model.FREE_STEPS if free_steps is None else free_steps, True, False)
    phases = [_phase(model, x, label, "free", 0.0, free_path)]
    if model.OUTPUT is None:
        return phases
    signs = {"centered": (1.0, -1.0), "random": (1.0, -1.0), "forward": (1.0,), "backward": (-1.0,)}[scheme]
    for sign in signs:
        path = _path(model, x, free_path[-1], label, sign * beta, steps, mod, synchronous)
        phases.append(_phase(model, x, label, f"nudged {'+' if sign > 0 else '-'}beta", sign * beta, path))
    return phases


def _path(model, x, start: dict, label, beta: float, steps: int, mod: bool, synchronous: bool) -> list[dict]:
    path = [start]
    for t in range(1, steps + 1):
        if model.RELAX_MOMENTUM:
            path.append(model.relax(x, start, label, beta, t, mod, synchronous))
        else:
            path.append(model.relax(x, path[-1], label, beta, 1, mod, synchronous))
    return path


def _phase(model, x, label, name: str, beta: float, path: list[dict]) -> PhaseTrace:
    phase = PhaseTrace(name, beta)
    for t, states in enumerate(path):
        phase.iterations.append(t)
        energies = model.energies(x, states)
        for term, energy in energies.items():
            phase.energies.setdefault(term, []).append(float(energy.mean()))
        total = float(sum(energies.values()).mean())
        phase.total.append(total)
        cost = float(model.cost(states, label).mean()) if model.OUTPUT is not None else None
        phase.cost.append(cost)
        phase.objective.append(None if cost is None else total + beta * cost)
        for state in model.STATES:
            change = None if t == 0 else float(torch.sqrt(((states[state] - path[t - 1][state]) ** 2).mean()))
            phase.changes.setdefault(state, []).append(change)
    return phase


def first_non_finite(phases: list[PhaseTrace]) -> tuple[str, int] | None:
    """(phase, iteration) where the energy first stops being finite (a relaxation that ran away)."""
    for phase in phases:
        for t, value in zip(phase.iterations, phase.total):
            if not math.isfinite(value):
                return phase.name, t
    return None


def trace_json(phases: list[PhaseTrace]) -> list[dict]:
    """The trace as JSON-ready data (non-finite numbers as None: a relaxation that ran away)."""
    return [_finite(asdict(phase)) for phase in phases]


def _finite(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def trace_csv(phases: list[PhaseTrace]) -> str:
    """phase,beta,iteration,quantity,name,value: every number of the trace."""
    lines = ["phase,beta,iteration,quantity,name,value"]
    for phase in phases:
        rows = [("energy", term, values) for term, values in phase.energies.items()]
        rows += [("total_energy", "E", phase.total), ("cost", "C", phase.cost), ("objective", "F", phase.objective)]
        rows += [("change", state, values) for state, values in phase.changes.items()]
        for quantity, name, values in rows:
            for t, value in zip(phase.iterations, values):
                if value is not None:
                    lines.append(f"{phase.name},{phase.beta!r},{t},{quantity},{name},{value!r}")
    return "\n".join(lines) + "\n"
