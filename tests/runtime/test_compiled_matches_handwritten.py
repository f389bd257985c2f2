# ---------------------------------------------------------------------------------------------
# The compiler's output against the hand-written reference.
#
# The hand-written PCN carries its own network as pcdsl text (Model.SOURCE). Compiled, that text
# must give a module that behaves the same through every protocol member: same initial weights
# from the same generator, same free phase, energies, relaxation (async/sync, mod-PGD/PGD,
# both signs of beta), parameter gradients, EP estimates and divergence detection.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

from functools import partial

import pytest
import torch

from pcdsl.runtime.estimators import ep_gradients
from pcdsl.runtime.loading import load_model_class
from tests.support.handwritten_pcn import Model

pipeline = pytest.importorskip("pcdsl.pipeline")

SIZES = (12, 10, 8, 6, 5)


def pair(cost: str):
    reference = Model(sizes=SIZES, cost=cost).double()
    compiled = load_model_class(pipeline.compile_text(reference.SOURCE, "handwritten.pc").source)().double()
    for model in (reference, compiled):
        model.reset_parameters(torch.Generator().manual_seed(4))
    return reference, compiled


def batch():
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(7, SIZES[0], dtype=torch.float64, generator=generator)
    return x, torch.randint(0, SIZES[-1], (7,), generator=generator)


def assert_same_states(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-12)


@pytest.mark.parametrize("cost", ["cross_entropy", "squared_error"])
def test_protocol_members_agree(cost):
    reference, compiled = pair(cost)
    for member in ("INPUT_SHAPE", "STATES", "OUTPUT", "NUM_CLASSES", "COST", "FEEDFORWARD",
                   "UPDATE_GROUPS"):
        assert getattr(reference, member) == getattr(compiled, member), member
    assert [p.shape for p in reference.parameters()] == [p.shape for p in compiled.parameters()]
    for a, b in zip(reference.parameters(), compiled.parameters()):
        assert torch.equal(a, b)                       # same init from the same generator


@pytest.mark.parametrize("cost", ["cross_entropy", "squared_error"])
def test_phases_and_gradients_agree(cost):
    reference, compiled = pair(cost)
    x, y = batch()
    with torch.no_grad():
        free = reference(x)
        assert_same_states(free, compiled(x))
    noise = torch.Generator().manual_seed(6)
    start = {name: value + 0.3 * torch.randn(value.shape, dtype=value.dtype, generator=noise)
             for name, value in free.items()}
    start = {name: v if name == reference.OUTPUT else v.clamp(min=0) for name, v in start.items()}
    torch.testing.assert_close(reference.energy(x, start), compiled.energy(x, start))
    torch.testing.assert_close(reference.cost(start, y), compiled.cost(start, y))
    for mod in (True, False):
        for synchronous in (False, True):
            for beta in (0.3, -0.3):
                assert_same_states(reference.relax(x, start, y, beta, 3, mod, synchronous),
                                   compiled.relax(x, start, y, beta, 3, mod, synchronous))
    (energy_a, grads_a), (energy_b, grads_b) = reference.param_grads(x, start), compiled.param_grads(x, start)
    torch.testing.assert_close(energy_a, energy_b)
    for a, b in zip(grads_a, grads_b):
        torch.testing.assert_close(a, b)
    for beta in (0.0, 0.3):
        grads_a, grads_b = reference.state_grads(x, start, y, beta), compiled.state_grads(x, start, y, beta)
        for name in reference.STATES:
            torch.testing.assert_close(grads_a[name], grads_b[name])
    # the hand-written module's own EP estimator against the runtime's, driving the compiled one
    for scheme in ("centered", "forward", "backward", "random"):
        torch.manual_seed(11)
        ours = reference.ep_gradients(x, y, 0.05, 5, scheme=scheme)
        torch.manual_seed(11)
        theirs = ep_gradients(compiled, x, y, 0.05, 5, scheme=scheme)
        torch.testing.assert_close(ours["loss"], theirs["loss"])
        for a, b in zip(ours["grads"], theirs["grads"]):
            torch.testing.assert_close(a, b)


def test_both_detect_a_runaway_relaxation():
    reference, compiled = pair("cross_entropy")
    x, y = batch()
    for model in (reference, compiled):
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.mul_(20)
        estimate = model.ep_gradients if model is reference else partial(ep_gradients, model)
        with pytest.raises(FloatingPointError, match="diverged"):
            estimate(x, y, 0.05, 10)
