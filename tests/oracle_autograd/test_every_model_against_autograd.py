# ---------------------------------------------------------------------------------------------
# Oracle: autograd on the total energy F = E + beta * C, for every accepted model.
#
# The generated module differentiates with derived expressions (explicit adjoints, the
# registry's derivative of each operator). Here the same quantities come from autograd on the
# module's energy and cost:
#   - state_grads(x, h, label, beta) must equal dF/dh at arbitrary states (inside the domains);
#   - relax() must equal the iteration written with autograd: per update group in traversal
#     order (or all at once, each state moving half way, when synchronous), closed-form states
#     h <- Proj(h - dF/dh / c) (the alpha = 1 step with the state's curvature c; PGD,
#     mod=False) and gradient-rule states the heavy-ball step v <- momentum * v + dF/dh,
#     h <- Proj(h - step * v).
# Proj is the clamp onto the domain written in the model file.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import pytest
import torch

from helpers import build, random_batch
from support.catalogue import ALL, GENERATIVE

# supervised models and generative ones (no cost: beta = 0 only)
EVERY = ALL + GENERATIVE


def _betas(model, betas):
    return betas if model.OUTPUT is not None else (0.0,)


def _domains(compiled):
    return {v.name: (v.domain.low, v.domain.high) for v in compiled.ir.free_states}


def _project(t, bounds):
    low, high = bounds
    return t if low is None and high is None else torch.clamp(t, low, high)


def _some_states(compiled, model, x, seed=7):
    """States away from any equilibrium but inside their domains."""
    with torch.no_grad():
        start = model(x) if model.FEEDFORWARD else model(x, 5)
    noise = torch.Generator().manual_seed(seed)
    domains = _domains(compiled)
    return {name: _project(h + 0.3 * torch.randn(h.shape, dtype=h.dtype, generator=noise), domains[name])
            for name, h in start.items()}


def _autograd_dF(model, x, states, label, beta, names):
    h = {k: v.detach().clone().requires_grad_(k in names) for k, v in states.items()}
    total = model.energy(x, h).sum()
    if beta:
        total = total + beta * model.cost(h, label).sum()
    return dict(zip(names, torch.autograd.grad(total, [h[k] for k in names])))


@pytest.mark.parametrize("entry", EVERY, ids=lambda e: e.id)
def test_state_grads_equal_autograd(entry):
    compiled, model = build(entry.path, list(entry.sets))
    x, label = random_batch(model, batch=2)
    states = _some_states(compiled, model, x)
    for beta in _betas(model, (0.0, 0.4, -0.4)):
        ours = model.state_grads(x, states, label, beta)
        truth = _autograd_dF(model, x, states, label, beta, list(model.STATES))
        for name in model.STATES:
            torch.testing.assert_close(ours[name], truth[name], rtol=1e-9, atol=1e-11, msg=name)


def autograd_relax(compiled, model, x, states, label, beta, steps, synchronous):
    rules, domains = compiled.checked.rules, _domains(compiled)
    s = {k: v.detach().clone() for k, v in states.items()}
    velocity = {k: torch.zeros_like(v) for k, v in s.items()}
    groups = [list(model.STATES)] if synchronous else [list(g) for g in model.UPDATE_GROUPS]
    # synchronous sweeps move each state half way to its update (one group: they are the async ones)
    damped = synchronous and len(model.UPDATE_GROUPS) > 1
    for _ in range(steps):
        for group in groups:
            grads = _autograd_dF(model, x, s, label, beta, group)
            new = {}
            for name in group:
                if rules[name].kind == "closed":
                    target = s[name] - grads[name] / float(rules[name].curvature)
                else:
                    velocity[name] = model.RELAX_MOMENTUM * velocity[name] + grads[name]
                    target = s[name] - model.RELAX_STEP * velocity[name]
                new[name] = _project(target, domains[name])
                if damped:
                    new[name] = 0.5 * (s[name] + new[name])
            s.update(new)
    return s


@pytest.mark.parametrize("entry", EVERY, ids=lambda e: e.id)
@pytest.mark.parametrize("synchronous", [False, True], ids=["async", "sync"])
def test_relaxation_equals_autograd_steps(entry, synchronous):
    compiled, model = build(entry.path, list(entry.sets))
    x, label = random_batch(model, batch=2)
    states = _some_states(compiled, model, x)
    for beta in _betas(model, (0.3, -0.3)):
        ours = model.relax(x, states, label, beta, 4, mod=False, synchronous=synchronous)
        reference = autograd_relax(compiled, model, x, states, label, beta, 4, synchronous)
        for name in model.STATES:
            torch.testing.assert_close(ours[name], reference[name], rtol=1e-8, atol=1e-10, msg=name)


def test_every_kind_of_rule_is_covered():
    """The catalogue exercises closed forms with and without mod-PGD, gradient rules with and
    without momentum, feedforward and relaxation free phases, and non-bipartite schedules."""
    seen = set()
    for entry in ALL:
        compiled, model = build(entry.path, list(entry.sets))
        for rule in compiled.checked.rules.values():
            seen.add((rule.kind, rule.mod_update is not None if rule.kind == "closed"
                      else model.RELAX_MOMENTUM > 0))
        seen.add(("free phase", model.FEEDFORWARD))
        seen.add(("groups", len(model.UPDATE_GROUPS) > 2))
    assert seen >= {("closed", True), ("closed", False), ("gradient", True), ("gradient", False),
                    ("free phase", True), ("free phase", False), ("groups", True)}


def _autograd_param_grads(model, x, states):
    """dE/dθ of the batch-mean energy by autograd on the module's energy."""
    params = list(model.parameters())
    fixed = {k: v.detach() for k, v in states.items()}
    with torch.enable_grad():
        energy = model.energy(x, fixed).mean()
        grads = torch.autograd.grad(energy, params, allow_unused=True)
    return energy.detach(), [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


@pytest.mark.parametrize("entry", EVERY, ids=lambda e: e.id)
def test_param_grads_are_the_autograd_gradient_of_the_energy(entry):
    """The explicit local products (cotangent at each weighted operator x its input, the conv
    weight-gradient kernel, bias sums) are dE/dθ, at states away from any equilibrium."""
    compiled, model = build(entry.path, list(entry.sets))
    x, _ = random_batch(model, batch=3)
    states = _some_states(compiled, model, x)
    energy, grads = model.param_grads(x, states)
    truth_energy, truth = _autograd_param_grads(model, x, states)
    torch.testing.assert_close(energy, truth_energy, rtol=1e-12, atol=1e-12)
    for (name, _), ours, theirs in zip(model.named_parameters(), grads, truth, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-11, msg=name)


@pytest.mark.parametrize("entry", ALL[:6], ids=lambda e: e.id)
def test_products_of_several_phases_are_the_weighted_sum(entry):
    """param_grads_from over two phases (the first layer's cotangents combined before one
    product) is the weighted sum of each phase's gradient."""
    compiled, model = build(entry.path, list(entry.sets))
    x, _ = random_batch(model, batch=3)
    a, b = _some_states(compiled, model, x, seed=7), _some_states(compiled, model, x, seed=8)
    combined = model.param_grads_from(x, [(0.7, model.factors(x, a)), (-1.3, model.factors(x, b))])
    batch = x.shape[0]
    separate = [0.7 * batch * ga - 1.3 * batch * gb
                for ga, gb in zip(_autograd_param_grads(model, x, a)[1], _autograd_param_grads(model, x, b)[1])]
    for (name, _), ours, theirs in zip(model.named_parameters(), combined, separate, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-10, msg=name)
