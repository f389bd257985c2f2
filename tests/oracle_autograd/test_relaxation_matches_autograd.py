# ---------------------------------------------------------------------------------------------
# Oracle: autograd on the total energy F = E + beta * C.
#
# The generated relaxation applies closed-form updates with explicit adjoints (transposed
# matmul / conv, max-unpool, unflatten). Here the same iteration is written with autograd:
# for each update group in order, h <- Proj(h - dF/dh) (alpha = 1, curvature 1), and for
# mod-PGD the own prediction relu(a) inside the projection is replaced by a, with a computed
# directly from the parameters. After K iterations both must give the same states.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from helpers import MODELS, build, random_batch


def autograd_relax(model, x, states, label, beta, steps, projections, synchronous=False, preact=None):
    """projections: state -> callable; preact: state -> callable(states) giving a (for mod-PGD)."""
    s = {k: v.detach().clone() for k, v in states.items()}
    for _ in range(steps):
        new = {}
        for group in model.UPDATE_GROUPS:
            source = s
            h = {k: v.detach().clone().requires_grad_(k in group) for k, v in source.items()}
            total = model.energy(x, h).sum() + (beta * model.cost(h, label).sum() if beta else 0.0)
            grads = torch.autograd.grad(total, [h[k] for k in group])
            for name, grad in zip(group, grads):
                target = h[name].detach() - grad
                if preact is not None and name in preact:
                    a = preact[name](source)
                    target = target - torch.relu(a) + a
                new[name] = projections[name](target)
            if not synchronous:
                s = {**s, **{k: new[k] for k in group}}
        if synchronous:      # each state half way to its update
            s = {**s, **{k: 0.5 * (s[k] + v) for k, v in new.items()}}
    return s


RELU = torch.relu
IDENTITY = lambda t: t  # noqa: E731
BOX = lambda t: torch.clamp(t, 0.0, 1.0)  # noqa: E731


def _projections(model):
    return {name: (IDENTITY if name == model.OUTPUT and model.FEEDFORWARD else RELU) for name in model.STATES}


@pytest.mark.parametrize("name,sets", [("mlp_digits.pc", []), ("vgg5_cifar10.pc", []),
                                       ("vgg10skip_imagenet.pc", ["S=32"])])
@pytest.mark.parametrize("synchronous", [False, True])
@pytest.mark.parametrize("beta", [0.3, -0.3])
def test_pgd_relaxation_equals_autograd_projected_steps(name, sets, synchronous, beta):
    _, model = build(MODELS / name, sets)
    x, label = random_batch(model, batch=2)
    free = model(x)
    ours = model.relax(x, free, label, beta, 6, mod=False, synchronous=synchronous)
    reference = autograd_relax(model, x, free, label, beta, 6, _projections(model), synchronous)
    for state in model.STATES:
        assert torch.allclose(ours[state], reference[state], atol=1e-10, rtol=1e-8), state


def test_mod_pgd_relaxation_equals_autograd_with_preactivation_swap():
    _, model = build(MODELS / "vgg5_mnist.pc")
    x, label = random_batch(model, batch=2)
    # pre-activations written directly from the parameters: maxpool(conv(h_prev) + b)
    chain = ["x", "h1", "h2", "h3", "h4"]

    def preact_of(k):
        layer, prev = chain[k], chain[k - 1]
        weight, bias = getattr(model, f"{layer}_w_{prev}"), getattr(model, f"{layer}_b")
        return lambda s: F.max_pool2d(F.conv2d(x if prev == "x" else s[prev], weight, bias, padding=1), 2)

    preact = {chain[k]: preact_of(k) for k in range(1, 5)}
    free = model(x)
    ours = model.relax(x, free, label, 0.5, 7, mod=True)
    reference = autograd_relax(model, x, free, label, 0.5, 7, _projections(model), preact=preact)
    for state in model.STATES:
        assert torch.allclose(ours[state], reference[state], atol=1e-10, rtol=1e-8), state


def test_hopfield_relaxation_equals_autograd_box_projected_steps():
    _, model = build(MODELS / "hopfield_tiny.pc")
    x, label = random_batch(model, batch=3)
    x = x.abs().clamp(0, 1)
    start = model(x, 5)
    ours = model.relax(x, start, label, 0.2, 9)
    reference = autograd_relax(model, x, start, label, 0.2, 9, {name: BOX for name in model.STATES})
    for state in model.STATES:
        assert torch.allclose(ours[state], reference[state], atol=1e-12), state


def test_hopfield_update_is_the_exact_block_minimiser():
    """For the Hopfield energy the alpha = 1 step minimises F over one state exactly: no
    projected gradient step from the updated state can lower F."""
    _, model = build(MODELS / "hopfield_tiny.pc")
    x, label = random_batch(model, batch=3)
    x = x.abs().clamp(0, 1)
    s = model(x, 3)
    # one synchronous step updates every state from the same old states, half way: keep only
    # h1's, undamped (twice the move)
    updated = {**s, "h1": 2 * model.relax(x, s, label, 0.0, 1, synchronous=True)["h1"] - s["h1"]}
    h1 = updated["h1"]
    base = model.energy(x, updated).sum()
    for step in (1e-3, 1e-2, 1e-1):
        for direction in (torch.randn_like(h1), -torch.randn_like(h1)):
            moved = torch.clamp(h1 + step * direction, 0, 1)
            assert model.energy(x, {**updated, "h1": moved}).sum() >= base - 1e-12
