# ---------------------------------------------------------------------------------------------
# Oracle: the straightforward computation each optimisation replaces.
#
# nudged_phase is relax() from the free state with the free pass's values carried in, the first
# iterations reduced to the states the error has reached (the wavefront) and the factors of
# dE/dθ formed from what the last iteration left valid. relax() itself is checked against
# autograd (tests/oracle_autograd), so here the optimised path must give the same states and the
# same parameter gradients as relax() + param_grads, to float64 rounding, for every accepted
# model, every iteration count around the wavefront's length, both signs of beta, PGD and
# mod-PGD.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import pytest
import torch

from helpers import build, random_batch
from support.catalogue import ALL


@pytest.mark.parametrize("entry", ALL, ids=lambda e: e.id)
def test_nudged_phase_is_relax_then_param_grads(entry):
    compiled, model = build(entry.path, list(entry.sets))
    x, label = random_batch(model, batch=2)
    free, carry = model.free_phase(x, entry.free_steps)
    reference_free = model(x, entry.free_steps)
    for name in model.STATES:
        assert torch.equal(free[name], reference_free[name]), name
    peeled = len(compiled.plan.nudged.peeled) if compiled.plan.nudged else 0
    # every way out of the peeled iterations, into the loop and through it; PGD once
    runs = [(True, steps) for steps in sorted({0, 1, peeled, peeled + 1, peeled + 2})] + [(False, peeled + 1)]
    for beta in (0.3, -0.3):
        for mod, steps in runs:
            states, factors = model.nudged_phase(x, free, carry, label, beta, steps, mod)
            reference = model.relax(x, free, label, beta, steps, mod)
            for name in model.STATES:
                torch.testing.assert_close(states[name], reference[name], rtol=1e-12, atol=1e-13,
                                           msg=f"{name} beta={beta} mod={mod} steps={steps}")
            energy, grads = model.param_grads(x, reference)
            ours = model.param_grads_from(x, [(1.0 / x.shape[0], factors)])
            torch.testing.assert_close(factors["energy"].mean(), energy, rtol=1e-10, atol=1e-14)
            for (name, _), a, b in zip(model.named_parameters(), ours, grads, strict=True):
                torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-13, msg=f"{name} steps={steps}")


def test_the_wavefront_is_peeled_where_the_error_has_not_arrived():
    """VGG5: at the free state only the output moves in iteration 1 and h4, h3 in iteration 2
    (hand-traced from the update groups (h2, h4), (h1, h3, o))."""
    compiled, _ = build(ALL[3].path)
    assert ALL[3].id == "vgg5_cifar10"
    peeled = compiled.plan.nudged.peeled
    assert [[sweep.states for sweep in it.sweeps] for it in peeled] == [[["o"]], [["h4"], ["h3", "o"]]]


@pytest.mark.parametrize("name", ["mlp_mnist", "vgg5_cifar10", "hopfield_tiny"])
def test_early_products_give_the_same_gradient(name):
    """--lean-memory forms each nudged phase's products when the phase ends instead of combining
    the phases' cotangents first: the same estimate, to rounding."""
    from helpers import MODELS
    from pcdsl.runtime.estimators import ep_gradients
    compiled, model = build(MODELS / f"{name}.pc")
    x, label = random_batch(model, batch=3)
    config = compiled.ir.train
    combined = ep_gradients(model, x, label, config.beta, config.steps)["grads"]
    early = ep_gradients(model, x, label, config.beta, config.steps, early_products=True)["grads"]
    for a, b in zip(early, combined):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)
