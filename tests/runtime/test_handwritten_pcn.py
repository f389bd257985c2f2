# ---------------------------------------------------------------------------------------------
# The hand-written PCN against autograd.
#
# Oracle 1: its closed-form relaxation equals alpha = 1 projected gradient steps on
#   F = sum over the batch of (E + beta*C), with dF/dh computed by autograd: PGD is
#   h_k <- relu(h_k - dF/dh_k); mod-PGD swaps the prediction relu(a_k) inside that step for the
#   raw pre-activation a_k; the linear output is not projected.
# Oracle 2: as beta -> 0 its EP estimate equals the backprop gradient of the mean cost (float64),
#   with an error that shrinks like beta^2 (centered) or beta (one-sided).
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pcdsl.runtime.estimators import bp_gradients
from pcdsl.runtime.gradcheck import compare, gradcheck
from pcdsl.runtime.protocol import CompiledModel
from tests.support.handwritten_pcn import Model

SIZES = (12, 10, 8, 6, 5)   # four layers: the teaching signal needs two async iterations to reach h1


def make_model(cost: str = "cross_entropy", sizes=SIZES, seed: int = 1) -> Model:
    model = Model(sizes=sizes, cost=cost).double()
    model.reset_parameters(torch.Generator().manual_seed(seed))
    return model


def make_batch(model: Model, n: int = 16, seed: int = 2):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, model.sizes[0], dtype=torch.float64, generator=generator)
    y = torch.randint(0, model.NUM_CLASSES, (n,), generator=generator)
    return x, y


def perturbed_free_state(model: Model, x: torch.Tensor, seed: int = 3) -> dict:
    """A feasible state away from every equilibrium, so the updates have work to do."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        states = model(x)
    noisy = {}
    for name, value in states.items():
        value = value + 0.3 * torch.randn(value.shape, dtype=value.dtype, generator=generator)
        noisy[name] = value if name == model.OUTPUT else value.clamp(min=0)
    return noisy


def autograd_relax(model: Model, x, states, label, beta, steps, mod, synchronous):
    names = model.STATES
    index = {name: k for k, name in enumerate(names, start=1)}
    current = {name: value.clone() for name, value in states.items()}
    groups = (names,) if synchronous else model.UPDATE_GROUPS
    for _ in range(steps):
        for group in groups:
            leaves = {name: current[name].detach().requires_grad_(True) for name in names}
            total = model.energy(x, leaves).sum() + beta * model.cost(leaves, label).sum()
            grads = torch.autograd.grad(total, [leaves[name] for name in group])
            for name, grad in zip(group, grads):
                step = (leaves[name] - grad).detach()
                k = index[name]
                if name == model.OUTPUT:
                    updated = step
                else:
                    below = x if k == 1 else leaves[names[k - 2]]   # as of the group's start
                    a = F.linear(below, getattr(model, f"W{k}"), getattr(model, f"b{k}")).detach()
                    updated = torch.relu(step - torch.relu(a) + a) if mod else torch.relu(step)
                # synchronous sweeps move each state half way to its update
                current[name] = 0.5 * (leaves[name].detach() + updated) if synchronous else updated
    return current


def test_follows_the_protocol():
    model = Model(sizes=(8, 6, 4, 3))
    assert isinstance(model, CompiledModel)
    assert model.STATES == ("h1", "h2", "h3") and model.OUTPUT == "h3"
    assert model.UPDATE_GROUPS == (("h2",), ("h1", "h3"))   # even-indexed layers first
    assert [name for name, _ in model.named_parameters()] == ["W1", "b1", "W2", "b2", "W3", "b3"]
    assert model.INPUT_SHAPE == (8,) and model.NUM_CLASSES == 3 and model.FEEDFORWARD


def test_single_layer_model_has_one_group():
    model = Model(sizes=(4, 3))
    assert model.UPDATE_GROUPS == (("h1",),)


def test_reset_parameters_is_seeded_and_bounded():
    model = Model(sizes=(50, 20, 10), gain=0.5, gains={"h2": 2.0})
    model.reset_parameters(torch.Generator().manual_seed(7))
    first = {k: v.clone() for k, v in model.state_dict().items()}
    model.reset_parameters(torch.Generator().manual_seed(7))
    assert all(torch.equal(first[k], v) for k, v in model.state_dict().items())
    assert model.W1.abs().max() <= 0.5 * math.sqrt(1 / 50) and model.b1.abs().max() <= 0.5 * math.sqrt(1 / 50)
    assert model.W2.abs().max() <= 2.0 * math.sqrt(1 / 20)
    assert model.W2.abs().max() > 1.5 * math.sqrt(1 / 20)     # the per-state gain was used


@pytest.mark.parametrize("cost", ["cross_entropy", "squared_error"])
def test_free_phase_is_an_equilibrium(cost):
    model = make_model(cost)
    x, y = make_batch(model)
    with torch.no_grad():
        free = model(x)
    assert torch.allclose(model.energy(x, free), torch.zeros(len(x), dtype=torch.float64))
    relaxed = model.relax(x, free, None, 0.0, steps=5)
    for name in model.STATES:
        assert torch.allclose(relaxed[name], free[name], atol=1e-12)


@pytest.mark.parametrize("cost", ["cross_entropy", "squared_error"])
@pytest.mark.parametrize("mod", [True, False], ids=["modpgd", "pgd"])
@pytest.mark.parametrize("synchronous", [False, True], ids=["async", "sync"])
def test_relax_equals_autograd_projected_steps(cost, mod, synchronous):
    model = make_model(cost)
    x, y = make_batch(model)
    start = perturbed_free_state(model, x)
    for beta in (0.3, -0.3):
        closed_form = model.relax(x, start, y, beta, steps=4, mod=mod, synchronous=synchronous)
        oracle = autograd_relax(model, x, start, y, beta, steps=4, mod=mod, synchronous=synchronous)
        for name in model.STATES:
            torch.testing.assert_close(closed_form[name], oracle[name], rtol=1e-10, atol=1e-12)


def test_async_and_sync_traversals_differ():
    # guards the oracle above: the two traversals must not coincide by construction
    model = make_model()
    x, y = make_batch(model)
    start = perturbed_free_state(model, x)
    a = model.relax(x, start, y, 0.3, steps=2, synchronous=False)
    s = model.relax(x, start, y, 0.3, steps=2, synchronous=True)
    assert not torch.allclose(a["h1"], s["h1"])


def test_param_grads_are_local_error_times_activity():
    # dE/dW_k = -(eps_k * f_k'(a_k))^T h_{k-1} / B: presynaptic activity times postsynaptic error
    model = make_model()
    x, y = make_batch(model)
    states = perturbed_free_state(model, x)
    grads = dict(zip([n for n, _ in model.named_parameters()], model.param_grads(x, states)[1]))
    h = [x] + [states[name] for name in model.STATES]
    for k in range(1, model.layers + 1):
        a = F.linear(h[k - 1], getattr(model, f"W{k}"), getattr(model, f"b{k}")).detach()
        slope = torch.ones_like(a) if k == model.layers else (a > 0).double()
        error = (h[k] - (a if k == model.layers else torch.relu(a))) * slope
        torch.testing.assert_close(grads[f"W{k}"], -error.T @ h[k - 1] / len(x))
        torch.testing.assert_close(grads[f"b{k}"], -error.sum(0) / len(x))


@pytest.mark.parametrize("cost", ["cross_entropy", "squared_error"])
def test_centered_ep_matches_backprop_at_small_beta(cost):
    model = make_model(cost)
    x, y = make_batch(model)
    report = gradcheck(model, x, y, beta=1e-4, steps=40)
    assert report["min_cosine"] > 0.9999
    assert report["max_rel_error"] < 1e-5
    assert [row["name"] for row in report["params"]] == [n for n, _ in model.named_parameters()]


@pytest.mark.parametrize("cost", ["cross_entropy", "squared_error"])
def test_error_order_in_beta(cost):
    # halving beta divides the error by 4 for centered EP (O(beta^2)), by 2 for one-sided (O(beta))
    model = make_model(cost)
    x, y = make_batch(model)
    for scheme, expected in (("centered", 4.0), ("forward", 2.0), ("backward", 2.0)):
        big = gradcheck(model, x, y, beta=2e-3, steps=40, scheme=scheme)["max_rel_error"]
        small = gradcheck(model, x, y, beta=1e-3, steps=40, scheme=scheme)["max_rel_error"]
        assert big / small == pytest.approx(expected, rel=0.05), scheme


def test_random_scheme_draws_one_sign_per_batch_from_the_torch_generator():
    model = make_model()
    x, y = make_batch(model)
    one_sided = {sign: model.ep_gradients(x, y, 1e-2, 20, scheme=scheme)["grads"]
                 for sign, scheme in ((1, "forward"), (-1, "backward"))}
    torch.manual_seed(0)
    draws = []
    for _ in range(8):
        grads = model.ep_gradients(x, y, 1e-2, 20, scheme="random")["grads"]
        sign = next(s for s, ref in one_sided.items() if all(torch.equal(g, r) for g, r in zip(grads, ref)))
        draws.append(sign)
    assert set(draws) == {1, -1}
    torch.manual_seed(0)
    again = [1 if torch.equal(model.ep_gradients(x, y, 1e-2, 20, scheme="random")["grads"][0],
                              one_sided[1][0]) else -1 for _ in range(8)]
    assert again == draws


def test_ep_gradients_returns_loss_and_free_state():
    model = make_model()
    x, y = make_batch(model)
    out = model.ep_gradients(x, y, 0.05, 10)
    with torch.no_grad():
        free = model(x)
        loss = model.cost(free, y).mean()
    assert torch.equal(out["loss"], loss)
    assert all(torch.equal(out["free"][n], free[n]) for n in model.STATES)
    assert [g.shape for g in out["grads"]] == [p.shape for p in model.parameters()]


def test_rejects_bad_arguments():
    model = make_model()
    x, y = make_batch(model)
    with pytest.raises(ValueError, match="beta"):
        model.ep_gradients(x, y, 0.0, 5)
    with pytest.raises(ValueError, match="scheme"):
        model.ep_gradients(x, y, 0.1, 5, scheme="sideways")
    with pytest.raises(ValueError, match="labels"):
        model.relax(x, model(x), None, 0.1, 5)


def test_runaway_relaxation_raises_floating_point_error():
    # weights 20x the init: the top-down Jacobians are far from contractive
    model = make_model()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(20)
    x, y = make_batch(model)
    with pytest.raises(FloatingPointError, match="beta"):
        model.ep_gradients(x, y, 0.05, 10)


def test_backprop_oracle_is_autograd_of_mean_cost():
    model = make_model()
    x, y = make_batch(model)
    grads = bp_gradients(model, x, y)["grads"]
    model.zero_grad()
    model.cost(model(x), y).mean().backward()
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, model.parameters()))


def test_compare_handles_zero_norms():
    zero, one = torch.zeros(3), torch.ones(3)
    assert compare(zero, zero) == {"cosine": 1.0, "rel_error": 0.0, "bp_norm": 0.0, "ep_norm": 0.0}
    assert compare(one, zero)["cosine"] == 0.0 and compare(one, zero)["rel_error"] == math.inf
    assert compare(zero, one)["cosine"] == 0.0 and compare(zero, one)["rel_error"] == 1.0
    assert compare(one, 2 * one)["cosine"] == pytest.approx(1.0)
    assert compare(one, 2 * one)["rel_error"] == pytest.approx(0.5)
