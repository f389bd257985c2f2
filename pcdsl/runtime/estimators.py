# ---------------------------------------------------------------------------------------------
# The learning algorithms' gradient estimates, composed from a compiled module's primitives.
#
# A generated module knows its model: the free phase, the relaxation, the energies and the
# parameter gradients of the energy at fixed states (protocol.py). How those make a gradient is
# the algorithm's business, and it lives here, once, for every model:
#
#   ep_gradients   equilibrium propagation: centered (two nudged phases, +beta and -beta,
#                  error O(beta^2)), forward / backward (one phase against the free state),
#                  random (forward or backward, the sign drawn per call)
#   bp_gradients   backprop through the free phase: the exact gradient of the same network (for
#                  a model whose free phase is a relaxation, through its iterations: BPTT)
#   pcil_gradients predictive-coding inference learning: the output clamped to the target (the
#                  cost at the output's prediction, PCX's convention), T inference sweeps of the
#                  hidden states (optionally precision-weighted, precisions.py), the weight
#                  gradient of the energy there (or Qi et al.'s forward update)
#   ipc_updates    incremental PC: the same, with a weight step at every sweep
#   generative_gradients  inference learning of a generative model (its input predicted):
#                  the states relax to explain the clamped data (the free phase), then the
#                  weight gradient of the energy there (Rao & Ballard 1999)
#   rbp_gradients  recurrent backpropagation (Almeida-Pineda): implicit differentiation at the
#                  free equilibrium, the exact gradient of the equilibrium's cost for a
#                  relaxation model, with the memory of one sweep rather than of every iteration
#
# Precision: "float32" computes in the model's dtype; "bf16" runs convolutions and matrix
# products in bfloat16 (autocast) and keeps everything EP's difference depends on in float32:
# the free phase's states and values are promoted before the nudged phases, whose affine
# intermediates are computed as free value + W·(state moves) (so bfloat16 rounds the O(beta)
# move, not the O(1) value), errors and states stay float32, and the gradients are returned in
# the parameters' dtype (the optimiser's).
#
# A relaxation that produces non-finite states or an energy that grows without bound is never
# turned into a gradient silently (METHOD.md section 3): the check is a device-side flag
# (`Health`), read once per estimate by default, or when the trainer chooses.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Optional

import torch

PRECISIONS = ("float32", "bf16")


def precision_context(x: torch.Tensor, precision: str):
    """The autocast region of a precision (none for float32)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: {', '.join(PRECISIONS)}")
    if precision == "float32":
        return contextlib.nullcontext()
    return torch.autocast(x.device.type, dtype=torch.bfloat16)


def _promoted(values: dict, dtype: torch.dtype) -> dict:
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in values.items()}


def _in_param_dtypes(model, grads: list[torch.Tensor]) -> list[torch.Tensor]:
    return [g.to(p.dtype) for p, g in zip(model.parameters(), grads)]

SCHEMES = ("centered", "forward", "backward", "random")


def _phase_signs(scheme: str, beta: float, generator) -> tuple[float, float]:
    if not beta > 0:
        raise ValueError(f"beta is the nudging magnitude and must be > 0, got {beta} (the scheme sets the signs)")
    if scheme == "random":
        scheme = ("forward", "backward")[int(torch.randint(0, 2, (1,), generator=generator))]
    if scheme not in SCHEMES:
        raise ValueError(f"unknown EP scheme {scheme!r}: {', '.join(SCHEMES)}")
    upper = beta if scheme in ("centered", "forward") else 0.0
    lower = -beta if scheme in ("centered", "backward") else 0.0
    return upper, lower


class Diverged(FloatingPointError):
    """A relaxation ran away (non-finite states, or an energy far beyond what the nudge explains)."""


ENERGY_GROWTH_LIMIT = 1e3


@dataclass
class _PhaseRecord:
    """What a nudged phase left for the health check: kept as tensors, read only on failure."""
    beta: float
    steps: int
    states: dict
    energy: torch.Tensor        # mean energy at the relaxed state (0-dim)
    bound: Optional[torch.Tensor]


@dataclass
class Health:
    """Device-side verdict on one gradient estimate: `ok` is a 0-dim bool tensor, so that checking
    it costs one host synchronisation, when the caller chooses (`raise_if_diverged`)."""
    ok: torch.Tensor
    phases: list[_PhaseRecord] = field(default_factory=list)
    # recurrent backpropagation: the adjoint's change at its first and last iteration, and the count
    adjoint: Optional[tuple[torch.Tensor, torch.Tensor, int]] = None

    def raise_if_diverged(self) -> None:
        if bool(self.ok):
            return
        if self.adjoint is not None:
            first, last, iterations = self.adjoint
            raise Diverged(f"recurrent backpropagation's adjoint diverged: its change per iteration grew from "
                           f"{float(first):.3g} to {float(last):.3g} over {iterations} iterations (one relaxation "
                           "sweep is not a contraction at the free equilibrium, e.g. a relax_momentum restarted "
                           "at every sweep; docs/language.md, rbp)")
        for phase in self.phases:
            for name, h in phase.states.items():
                if not bool(torch.isfinite(h).all()):
                    raise Diverged(f"the relaxation at beta={phase.beta:g} diverged: state {name} is not finite "
                                   f"after {phase.steps} steps")
            energy = float(phase.energy)
            if not math.isfinite(energy) or (phase.bound is not None and not energy <= float(phase.bound)):
                bound = f" (bound {float(phase.bound):.3g})" if phase.bound is not None else ""
                raise Diverged(f"the relaxation at beta={phase.beta:g} diverged: energy {energy:.3g} after "
                               f"{phase.steps} steps{bound}")
        raise Diverged("the relaxation diverged")


def _record(model, beta: float, steps: int, states: dict, energy: torch.Tensor, free_loss: torch.Tensor
            ) -> _PhaseRecord:
    mean = energy.mean()
    bound = None
    if model.FEEDFORWARD:
        # E grows from 0 at the free state to about beta^2 |dC|^2 / 2; orders of magnitude past
        # |beta| * C means the fixed-point iteration is running away (METHOD.md section 3).
        bound = ENERGY_GROWTH_LIMIT * abs(beta) * (free_loss + 1.0)
    return _PhaseRecord(beta, steps, states, mean, bound)


def _healthy(records: list[_PhaseRecord], reference: torch.Tensor) -> torch.Tensor:
    ok = torch.ones((), dtype=torch.bool, device=reference.device)
    for record in records:
        # an energy is finite only if every state and error is; NaN fails every comparison
        ok = ok & torch.isfinite(record.energy)
        if record.bound is not None:
            ok = ok & (record.energy <= record.bound)
    return ok


def _has_fast_path(model) -> bool:
    """Generated modules offer free_phase / nudged_phase / factors / param_grads_from (the
    explicit products and the carry from the free pass); a hand-written module following only
    the base protocol is driven through relax and param_grads."""
    return all(hasattr(model, name) for name in ("free_phase", "nudged_phase", "factors", "param_grads_from"))


def ep_gradients(model, x: torch.Tensor, label: torch.Tensor, beta: float, steps: int, *,
                 scheme: str = "centered", mod: bool = True, synchronous: bool = False,
                 free_steps: int | None = None, generator: torch.Generator | None = None,
                 check: bool = True, precision: str = "float32", early_products: bool = False,
                 perturbation: str = "nudge") -> dict:
    """Equilibrium propagation's estimate of d mean(C) / d theta at the free equilibrium.

    Returns {"grads": list (parameters() order), "loss": mean cost at the free state (0-dim),
    "free": the free states, "health": Health}. With `check` (the default) a relaxation that
    ran away raises Diverged here; otherwise the caller reads result["health"] when it likes
    (one host synchronisation). `early_products`: form each phase's parameter products as soon
    as the phase ends, so that its factors are freed before the next phase runs (less memory;
    the products of weights that read only the input are then formed once per phase).

    `perturbation`: "nudge" adds beta * C to the energy; "clamp" (squared-error costs, E412)
    holds the output at (1 - beta) * its own update + beta * y after each synchronous sweep
    (Scellier & Bengio's weak clamping). For squared error that is the nudge of strength
    beta / (1 - beta): the centered estimate keeps its O(beta^2) error."""
    _require_cost(model, "equilibrium propagation")
    upper, lower = _phase_signs(scheme, beta, generator)
    if perturbation not in ("nudge", "clamp"):
        raise ValueError(f"unknown perturbation {perturbation!r}: nudge, clamp")
    if perturbation == "clamp" and model.COST != "squared_error":
        raise ValueError(f"clamping is the perturbation of a squared-error cost; {model.NAME}'s is {model.COST} "
                         "(docs/errors.md, E412)")
    if precision == "bf16" and not model.FEEDFORWARD:
        # the checker's E405, for modules driven from Python
        raise ValueError(f"precision bf16 keeps EP's gradient only for a feedforward free phase; {model.NAME}'s "
                         "is a relaxation (docs/errors.md, E405)")
    fast = _has_fast_path(model)
    with torch.no_grad(), precision_context(x, precision):
        if fast:
            free, carry = model.free_phase(x, free_steps)
            carry = _promoted(carry, x.dtype)
        else:
            free = model(x, free_steps)
        free = _promoted(free, x.dtype)
        loss = model.cost(free, label).mean().to(x.dtype)
        scale = 1.0 / ((upper - lower) * x.shape[0])
        phases, records = [], []
        for signed_beta, sign in ((upper, 1.0), (lower, -1.0)):
            if signed_beta == 0.0 and model.FEEDFORWARD:
                continue           # the feedforward state has zero prediction error: dE/dtheta = 0
            if signed_beta == 0.0:
                states = free
                factors = model.factors(x, free) if fast else None
            elif perturbation == "clamp":
                states = _clamped_phase(model, x, free, label, signed_beta, steps, mod)
                factors = model.factors(x, states) if fast else None
            elif fast and not synchronous:
                states, factors = model.nudged_phase(x, free, carry, label, signed_beta, steps, mod)
            else:
                states = model.relax(x, free, label, signed_beta, steps, mod, synchronous)
                factors = model.factors(x, states) if fast else None
            if fast:
                energy = factors["energy"]
                if early_products:      # this phase's products now, its factors freed
                    phases.append((1.0, model.param_grads_from(x, [(sign * scale, factors)])))
                else:
                    phases.append((sign * scale, factors))
            else:
                energy, grads = model.param_grads(x, states)
                phases.append((sign * scale * x.shape[0], grads))
            # the states are kept for the health message only when it is read here
            records.append(_record(model, signed_beta, steps, states if check else {}, energy, loss))
            del states, factors, energy
        if fast and not early_products:
            grads = model.param_grads_from(x, phases)
        else:
            coefficients = [c for c, _ in phases]
            grads = [sum(c * g for c, g in zip(coefficients, per_phase)) for per_phase in zip(*(g for _, g in phases))]
    grads = _in_param_dtypes(model, grads)
    health = Health(_healthy(records, loss), records)
    if check:
        health.raise_if_diverged()
    return {"grads": grads, "loss": loss, "free": free, "health": health}


def _clamped_phase(model, x: torch.Tensor, free: dict, label: torch.Tensor, beta: float, steps: int,
                   mod: bool) -> dict:
    """`steps` synchronous sweeps at beta = 0 (damped by one half, as every synchronous sweep
    is: undamped ones of a PCN can cycle; the fixed points are the sweep's), with the output at
    each moved a fraction beta of the way from its own (unprojected) update towards the target,
    then projected into its domain: o <- Proj((1 - beta) * o~ + beta * y), o~ = o - (dE/do) / c
    (negative beta: away from y). Clamping before the projection is what keeps a saturated
    output unit where the nudge keeps it; the target of a squared-error cost is o - dC/do at any
    o. The fixed points are the nudged phase's at strength beta / (1 - beta)."""
    out = model.OUTPUT
    curvature = _output_curvature(model, x, free)
    low, high = model.STATE_BOUNDS[out]
    target = free[out] - model.cost_grad(free[out], label)
    states = free
    for _ in range(steps):
        update = states[out] - model.state_grads(x, states)[out] / curvature
        swept = model.relax(x, states, None, 0.0, 1, mod, synchronous=True)    # (damped by one half)
        states = {**swept, out: _project((1.0 - beta) * update + beta * target, low, high)}
    return states


def _output_curvature(model, x: torch.Tensor, states: dict) -> torch.Tensor:
    """c, the output's curvature in E (E is quadratic in the output): from two points."""
    out = model.OUTPUT
    at = model.state_grads(x, states)[out]
    return model.state_grads(x, {**states, out: states[out] + 1.0})[out] - at


def free_loss(model, x: torch.Tensor, label: torch.Tensor, free_steps: int | None = None):
    """(mean cost, free states): the function backprop differentiates."""
    free = model(x, free_steps)
    return model.cost(free, label).mean(), free


def bp_gradients(model, x: torch.Tensor, label: torch.Tensor, *, free_steps: int | None = None,
                 loss_function=free_loss, precision: str = "float32") -> dict:
    """Autograd's gradient of the batch-mean cost through the free phase (same result keys).
    `loss_function` may be a compiled free_loss (AOTAutograd then compiles the backward too)."""
    _require_cost(model, "backprop")
    params = list(model.parameters())
    with torch.enable_grad():
        with precision_context(x, precision):
            loss, free = loss_function(model, x, label, free_steps)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
    grads = _in_param_dtypes(model, [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)])
    return {"grads": grads, "loss": loss.detach().to(x.dtype),
            "free": {name: h.detach().to(x.dtype) for name, h in free.items()}}


def pcil_gradients(model, x: torch.Tensor, label: torch.Tensor, steps: int, *, mod: bool = True,
                   precisions: Optional[list[dict]] = None, forward_update: bool = False,
                   free_steps: int | None = None, nudge: Optional[float] = None,
                   label_state: str | None = None) -> dict:
    """Predictive-coding inference learning (Whittington & Bogacz 2017; PCX's supervised
    training) on a model whose free phase is the feedforward pass: the output is clamped to the
    target and the hidden states relax towards it, then every weight follows its local error.

    The clamp (PCX's convention, for any cost): the output holds its prediction minus the
    cost's gradient there, o = mu - dC(mu)/c (c, the curvature of the output's own term: 1 for
    a `~` output), so that its term pulls the states below exactly as the cost of the
    prediction, C(mu(h)), would; for squared error that is o = y. The states start at the
    feedforward pass and take `steps` inference sweeps (_inference_sweep: the model's own
    update rules, or with `precisions` gradient steps of the precision-weighted energy), the
    output clamped again after each. The weight gradient is that of the batch-mean energy at the
    relaxed states (the output layer's is then the cost's gradient at its prediction), or with
    `forward_update` Qi et al.'s (_forward_update). Unlike EP's it is not the gradient of the
    cost: it approaches backprop's only as the errors become small. With `nudge` (beta > 0) the
    output holds its prediction minus beta times the cost's gradient, and the update is divided
    by beta: the errors are then O(beta), and as beta -> 0 (with the states relaxed) the update
    approaches backprop's gradient of the cost (Whittington & Bogacz 2017), as EP's one-sided
    estimate does. Same result keys as ep_gradients, and "relaxed": the states the weights
    learn from. For a generative model (no
    output) it is generative_gradients (`free_steps`, `label_state`; `steps` and the rest do not
    apply)."""
    if model.OUTPUT is None:
        return generative_gradients(model, x, free_steps=free_steps, label=label, label_state=label_state)
    _require_feedforward(model, "predictive-coding inference learning starts from the feedforward pass", "E406")
    with torch.no_grad():
        free = model(x)
        loss = model.cost(free, label).mean()
        states = clamped_inference(model, x, free, label, steps, mod, precisions, nudge)[-1]
        energy, grads = (_forward_update(model, x, free, states) if forward_update
                         else model.param_grads(x, states))
        if nudge is not None:
            grads = [g / nudge for g in grads]
    return {"grads": _in_param_dtypes(model, grads), "loss": loss.to(x.dtype), "free": free,
            "relaxed": states, "health": Health(torch.isfinite(energy))}


def clamped_inference(model, x: torch.Tensor, free: dict, label: torch.Tensor, steps: int, mod: bool,
                      precisions: Optional[list[dict]] = None, nudge: Optional[float] = None
                      ) -> tuple[dict, dict]:
    """Inference learning's relaxation (pcil_gradients): the output clamped (_output_clamp), then
    `steps` inference sweeps from the feedforward pass `free`, the output clamped again after
    each. The states before the last sweep and after it (only those two are kept)."""
    clamp = _output_clamp(model, x, free, label, nudge)
    before = states = clamp(free)
    for t in range(steps):
        before, states = states, clamp(_inference_sweep(model, x, states, mod,
                                                        None if precisions is None else precisions[t]))
    return before, states


def generative_gradients(model, x: torch.Tensor, *, free_steps: int | None = None, label: torch.Tensor | None = None,
                         label_state: str | None = None) -> dict:
    """Inference learning of a generative model (the input predicted from the states, no
    output or cost): the states relax with the data clamped (the free phase: `free_steps`
    iterations from rest, the model's FREE_STEPS unless given), then each weight follows the
    gradient of the batch-mean energy there. At an exact minimum over the states that is the
    gradient of the minimised energy, min_h E(h, theta; x) (the envelope theorem): the learning
    lowers the energy of the data, as expectation-maximisation does. With `label_state`
    (generative classification) that state is held at the one-hot `label` throughout the
    relaxation (clamped_free_phase). Result keys: "grads", "loss" (the mean reconstruction
    error, reconstruction_errors), "energy" (the mean energy at the relaxed states), "free" and
    "relaxed" (those states) and "health" (finite energy)."""
    with torch.no_grad():
        if label_state is None:
            states = model(x, free_steps)
        else:
            states = clamped_free_phase(model, x, label_state, one_hot(model, label_state, label, x), free_steps)
        energy, grads = model.param_grads(x, states)
        loss = reconstruction_errors(model, x, states).mean()
    return {"grads": _in_param_dtypes(model, grads), "loss": loss.to(x.dtype), "energy": energy,
            "free": states, "relaxed": states, "health": Health(torch.isfinite(energy))}


def one_hot(model, state: str, label: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The value a label state is clamped to: one-hot `label` over the state's entries."""
    return torch.nn.functional.one_hot(label, model.STATE_SHAPES[state][0]).to(x.dtype)


def clamped_free_phase(model, x: torch.Tensor, state: str, value: torch.Tensor, steps: int | None = None,
                       start: dict | None = None) -> dict:
    """The free phase with `state` held at `value`: `steps` (None: FREE_STEPS) synchronous
    sweeps of the relaxation from rest (or from `start`, to go on with one), each reading the
    clamped value (a synchronous sweep reads only the old states, so resetting the state after
    each is an exact clamp; a momentum relaxation's velocity restarts at every sweep)."""
    states = {**(model.initial_states(x) if start is None else start), state: value}
    for _ in range(model.FREE_STEPS if steps is None else steps):
        states = {**model.relax(x, states, None, 0.0, 1, synchronous=True), state: value}
    return states


def reconstruction_errors(model, x: torch.Tensor, states: dict) -> torch.Tensor:
    """Per-example mean squared error of a generative model's prediction of its input at
    `states` against the input, shape [B]: the reconstruction error `pcdsl eval` reports."""
    prediction = model.predictions(x, states)[model.INPUT]
    return ((prediction - x) ** 2).flatten(1).mean(1)


def ipc_updates(model, x: torch.Tensor, label: torch.Tensor, steps: int, update_weights, *, mod: bool = True,
                precisions: Optional[list[dict]] = None, forward_update: bool = False,
                nudge: Optional[float] = None) -> dict:
    """Incremental predictive coding (Salvatori et al. 2024; PCX's iPC): inference learning in
    which the weights move at every inference sweep, not once after the last. Each sweep t
    takes the energy's weight gradient at the current states and the states' sweep with the
    current weights (both from the same point, as PCX updates states and weights together),
    then calls `update_weights(grads)` (the run's optimiser step). Everything else is
    pcil_gradients': the start at the feedforward pass, the clamp (recomputed after each weight
    step, since the output's prediction moves with the weights), the sweeps, `precisions`,
    `forward_update` and `nudge`. Same result keys; "grads" is the last sweep's gradient, "health" whether
    every step's energy stayed finite."""
    _require_cost(model, "incremental predictive coding")
    _require_feedforward(model, "incremental predictive coding starts from the feedforward pass", "E406")
    ok = torch.ones((), dtype=torch.bool, device=x.device)
    with torch.no_grad():
        free = model(x)
        loss = model.cost(free, label).mean()
        states = _output_clamp(model, x, free, label, nudge)(free)
        for t in range(steps):
            energy, grads = (_forward_update(model, x, free, states) if forward_update
                             else model.param_grads(x, states))
            if nudge is not None:
                grads = [g / nudge for g in grads]
            swept = _inference_sweep(model, x, states, mod, None if precisions is None else precisions[t])
            ok = ok & torch.isfinite(energy)
            update_weights(_in_param_dtypes(model, grads))
            states = _output_clamp(model, x, swept, label, nudge)(swept)
    return {"grads": _in_param_dtypes(model, grads), "loss": loss.to(x.dtype), "free": free,
            "relaxed": states, "health": Health(ok)}


def _require_cost(model, what: str) -> None:
    if model.OUTPUT is None:
        raise ValueError(f"{what} follows the gradient of a cost; {model.NAME} is generative (no output or cost) "
                         "and trains with pcil_gradients (docs/errors.md, E414)")


def _require_feedforward(model, what: str, code: str) -> None:
    if not model.FEEDFORWARD:
        raise ValueError(f"{what}; {model.NAME}'s free phase is a relaxation (docs/errors.md, {code})")


def _output_clamp(model, x: torch.Tensor, states: dict, label: torch.Tensor, nudge: Optional[float] = None):
    """The clamp of the output to its prediction minus the cost's gradient there (times `nudge`
    when given), as a function of the states (the prediction is recomputed from them each time)."""
    out = model.OUTPUT
    # the output's prediction mu = o - (dE/do) / c
    curvature = _output_curvature(model, x, states)
    scale = 1.0 if nudge is None else nudge

    def clamped(current: dict) -> dict:
        prediction = current[out] - model.state_grads(x, current)[out] / curvature
        return {**current, out: prediction - scale * model.cost_grad(prediction, label) / curvature}
    return clamped


def _inference_sweep(model, x: torch.Tensor, states: dict, mod: bool, precision: Optional[dict]) -> dict:
    """One synchronous inference sweep, damped by one half (each state moves half way to its
    update: undamped synchronous sweeps can cycle; the fixed points are the sweep's), so that
    every state reads the same (clamped) output. Without `precision`: the model's own update
    rules (closed form where the compiler derived one, projected gradient steps otherwise;
    `mod`: mod-PGD, else PGD). With `precision` (state -> pi, this sweep's): the projected
    gradient step of the weighted energy sum_k pi_k E_k, Proj(h - grad), damped the same way,
    by autograd of the model's per-term energies; with every pi = 1 it is the PGD sweep of a
    model whose states are `~` predictions (each term's curvature in its own state is 1)."""
    if precision is None:
        return model.relax(x, states, None, 0.0, 1, mod, synchronous=True)    # (damped by one half)
    with torch.enable_grad():
        start = {name: state.detach().requires_grad_(True) for name, state in states.items()}
        energies = model.energies(x, start)
        weighted = sum(precision[name] * energy.sum() for name, energy in energies.items())
        grads = torch.autograd.grad(weighted, list(start.values()))
    bounds = model.STATE_BOUNDS
    return {name: 0.5 * (states[name] + _project(states[name] - grad, *bounds[name]))
            for name, grad in zip(start, grads)}


def _project(h: torch.Tensor, low, high) -> torch.Tensor:
    return h if low is None and high is None else torch.clamp(h, low, high)


def _forward_update(model, x: torch.Tensor, free: dict, relaxed: dict) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Qi et al.'s forward update: each layer's weights follow the energy of its relaxed state
    against its prediction from the feedforward value of the layer below,
    d/dtheta_k 1/2 ||h_k* - f_k(theta_k, hbar_(k-1))||^2, rather than from the relaxed one (the
    errors of the layers below then do not pile up in it). Term k's gradient is the energy's
    gradient at the free states with h_k alone replaced by its relaxed value: every parameter
    belongs to one term, and term k reads h_k and the states below it. One param_grads per
    layer. Returns (mean of those energies, gradients in parameters() order)."""
    names = [name for name, _ in model.named_parameters()]
    grads: list[Optional[torch.Tensor]] = [None] * len(names)
    energy = torch.zeros((), dtype=x.dtype, device=x.device)
    for state in model.STATES:
        mixed = {**free, state: relaxed[state]}
        energy = energy + model.energies(x, mixed)[state].mean()
        _, term_grads = model.param_grads(x, mixed)
        for parameter in model.TERM_PARAMETERS[state]:
            index = names.index(parameter)
            grads[index] = term_grads[index]
    return energy, grads


def rbp_gradients(model, x: torch.Tensor, label: torch.Tensor, *, free_steps: int | None = None,
                  adjoint_steps: int | None = None, check: bool = True) -> dict:
    """Recurrent backpropagation (Almeida 1987, Pineda 1987): the gradient of the batch-mean
    cost L at the free equilibrium h* = Phi(h*), where Phi is one sweep of the model's
    relaxation at beta = 0, by the implicit function theorem:

        dL/dtheta = a . dPhi/dtheta,   a = dL/dh + a . dPhi/dh   (the adjoint, at h*)

    a is found by `adjoint_steps` fixed-point iterations from dL/dh (default: as many as the free
    phase has), each one vector-Jacobian product of one sweep. They converge where one sweep
    contracts around the equilibrium (spectral radius of dPhi/dh below 1): so for the plain
    sweeps of a relaxation that converges, but not always for a momentum relaxation (a sweep on
    its own restarts the velocity at zero: a plain gradient step at the momentum's rate, which
    may overshoot where the momentum iteration does not). A diverging adjoint is caught: its
    change per iteration, ||a_k - a_(k-1)||, must not end larger than it began (result
    "health"; with `check`, Diverged is raised here). Unlike backprop through the iterations
    (bp_gradients) it needs the graph of one sweep only, and it is the gradient of the
    equilibrium itself, not of where `free_steps` iterations happened to stop. Same result keys
    as bp_gradients, and "health"."""
    _require_cost(model, "recurrent backprop")
    if model.FEEDFORWARD:
        raise ValueError(f"recurrent backprop differentiates a relaxation; {model.NAME}'s free phase is the "
                         "feedforward pass, whose exact gradient bp_gradients gives (docs/errors.md, E408)")
    params = list(model.parameters())
    with torch.no_grad():
        free = model(x, free_steps)
    names = list(free)
    iterations = adjoint_steps if adjoint_steps is not None else (free_steps or model.FREE_STEPS)
    with torch.enable_grad():
        start = {name: state.detach().requires_grad_(True) for name, state in free.items()}
        swept = model.relax(x, start, None, 0.0, 1)
        outputs, inputs = [swept[name] for name in names], [start[name] for name in names]
        output = free[model.OUTPUT].detach().requires_grad_(True)
        loss = model.cost({**free, model.OUTPUT: output}, label).mean()
        pull = torch.autograd.grad(loss, output)[0]
        direct = [pull if name == model.OUTPUT else torch.zeros_like(free[name]) for name in names]
        adjoint = direct
        changes = []
        for _ in range(iterations):
            through = torch.autograd.grad(outputs, inputs, adjoint, retain_graph=True, allow_unused=True)
            previous, adjoint = adjoint, [d if t is None else d + t for d, t in zip(direct, through)]
            if len(changes) < 2:
                changes.append(_distance(adjoint, previous))
            else:
                changes[1] = _distance(adjoint, previous)
        grads = torch.autograd.grad(outputs, params, adjoint, allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
    ok = torch.isfinite(loss.detach())
    adjoint_record = None
    if changes:
        first, last = changes[0], changes[-1]
        # geometric decay once the sweep contracts; growth means it does not (NaN fails too)
        ok = ok & (last <= first) & torch.isfinite(last)
        adjoint_record = (first, last, iterations)
    health = Health(ok, adjoint=adjoint_record)
    if check:
        health.raise_if_diverged()
    return {"grads": grads, "loss": loss.detach(), "free": {name: h.detach() for name, h in free.items()},
            "health": health}


def _distance(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    return torch.sqrt(sum(((u - v) ** 2).sum() for u, v in zip(a, b)))


class Estimators:
    """Mixed into the classes `pcdsl.load` returns: the estimators as methods, with the model
    file's train block (`train_config`) supplying defaults."""

    train_config = None

    def _default(self, key, value):
        if value is not None:
            return value
        if self.train_config is None:
            raise TypeError(f"give `{key}`: this model class carries no train block defaults")
        return getattr(self.train_config, key)

    def ep_gradients(self, x, label, beta=None, steps=None, *, scheme=None, mod=None, synchronous=None,
                     free_steps=None, generator=None, check=True) -> dict:
        """EP's gradient estimate (see pcdsl.runtime.estimators.ep_gradients); unset arguments
        come from the model file's train block."""
        config = self.train_config
        return ep_gradients(self, x, label, self._default("beta", beta), self._default("steps", steps),
                            scheme=scheme or (config.scheme if config else "centered"),
                            mod=(config.update == "modpgd" if config else True) if mod is None else mod,
                            synchronous=(config.traversal == "sync" if config else False)
                            if synchronous is None else synchronous,
                            free_steps=free_steps, generator=generator, check=check)

    def bp_gradients(self, x, label, *, free_steps=None) -> dict:
        """Backprop's gradient through the free phase (see pcdsl.runtime.estimators.bp_gradients)."""
        return bp_gradients(self, x, label, free_steps=free_steps)

    def rbp_gradients(self, x, label, *, free_steps=None, adjoint_steps=None, check=True) -> dict:
        """Recurrent backprop's gradient at the free equilibrium (see
        pcdsl.runtime.estimators.rbp_gradients); unset adjoint_steps from the train block."""
        config = self.train_config
        adjoint_steps = adjoint_steps if adjoint_steps is not None else (config.adjoint_steps if config else None)
        return rbp_gradients(self, x, label, free_steps=free_steps, adjoint_steps=adjoint_steps, check=check)

    def pcil_gradients(self, x, label, steps=None, *, mod=None, nudge=None) -> dict:
        """Predictive-coding inference learning's update (see
        pcdsl.runtime.estimators.pcil_gradients); unset arguments from the train block."""
        config = self.train_config
        return pcil_gradients(self, x, label, self._default("steps", steps),
                              mod=(config.update == "modpgd" if config else True) if mod is None else mod,
                              nudge=nudge if nudge is not None else (config.output_nudge if config else None),
                              free_steps=config.free_steps if config else None,
                              label_state=config.label_state if config else None)
