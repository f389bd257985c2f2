# ---------------------------------------------------------------------------------------------
# Oracle: autograd on the total energy F = E + beta * C, for every accepted model.
#
# The generated module differentiates with derived expressions (explicit adjoints, the
# registry's derivative of each operator). Here the same quantities come from autograd on the
# module's energy and cost:
#   - state_grads(x, h, label, beta) must equal dF/dh at arbitrary states (inside the domains);
#   - relax() must equal the iteration written with autograd: per update group in traversal
#     order (or all at once when synchronous), closed-form states h <- Proj(h - dF/dh / c) (the
#     alpha = 1 step with the state's curvature c; PGD, mod=False) and gradient-rule states the
#     heavy-ball step v <- momentum * v + dF/dh, h <- Proj(h - step * v).
# Proj is the clamp onto the domain written in the model file.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import pytest
import torch

from helpers import build, random_batch
from support.catalogue import ALL


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


@pytest.mark.parametrize("entry", ALL, ids=lambda e: e.id)
def test_state_grads_equal_autograd(entry):
    compiled, model = build(entry.path, list(entry.sets))
    x, label = random_batch(model, batch=2)
    states = _some_states(compiled, model, x)
    for beta in (0.0, 0.4, -0.4):
        ours = model.state_grads(x, states, label, beta)
        truth = _autograd_dF(model, x, states, label, beta, list(model.STATES))
        for name in model.STATES:
            torch.testing.assert_close(ours[name], truth[name], rtol=1e-9, atol=1e-11, msg=name)


def autograd_relax(compiled, model, x, states, label, beta, steps, synchronous):
    rules, domains = compiled.checked.rules, _domains(compiled)
    s = {k: v.detach().clone() for k, v in states.items()}
    velocity = {k: torch.zeros_like(v) for k, v in s.items()}
    groups = [list(model.STATES)] if synchronous else [list(g) for g in model.UPDATE_GROUPS]
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
            s.update(new)
    return s


@pytest.mark.parametrize("entry", ALL, ids=lambda e: e.id)
@pytest.mark.parametrize("synchronous", [False, True], ids=["async", "sync"])
def test_relaxation_equals_autograd_steps(entry, synchronous):
    compiled, model = build(entry.path, list(entry.sets))
    x, label = random_batch(model, batch=2)
    states = _some_states(compiled, model, x)
    for beta in (0.3, -0.3):
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
