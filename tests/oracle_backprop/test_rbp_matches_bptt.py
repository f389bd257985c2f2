# ---------------------------------------------------------------------------------------------
# Oracles for recurrent backpropagation (implicit differentiation at the free equilibrium):
#   - backprop through the relaxation's iterations (BPTT), once the relaxation has converged:
#     the two are the same derivative of the same equilibrium's cost;
#   - the adjoint solved directly, (I - J^T) a = dL/dh with the sweep's Jacobian J formed by
#     autograd, on a model small enough to form it: the fixed-point iteration must reach it.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import pytest
import torch

from helpers import backprop_grads, build, cosine, random_batch, rel_error
from pcdsl.runtime.estimators import rbp_gradients
from support.catalogue import ALL

RELAXATIONS = [entry for entry in ALL if entry.free_steps is not None]


@pytest.mark.parametrize("entry", RELAXATIONS, ids=lambda e: e.id)
def test_rbp_is_backprop_through_a_converged_relaxation(entry):
    _, model = build(entry.path, list(entry.sets))
    assert not model.FEEDFORWARD
    x, label = random_batch(model, batch=2)
    truth = backprop_grads(model, x, label, entry.free_steps)
    estimate = rbp_gradients(model, x, label, free_steps=entry.free_steps, adjoint_steps=entry.free_steps)["grads"]
    for (name, _), ours, theirs in zip(model.named_parameters(), estimate, truth, strict=True):
        assert cosine(ours, theirs) > 0.99999 and rel_error(ours, theirs) < 1e-4, name


TINY_HOPFIELD = """model tiny_hopfield {
  input  x  : [5]
  label  y  : [3]
  state  h1 : [4] in [0, 1]
  output o  : [3] in [0, 1]
  energy layer1 = 0.5 * sum(h1**2) - sum(h1 * dense(x, 4)) - sum(h1 * bias)
  energy layer2 = 0.5 * sum(o**2)  - sum(o * dense(h1, 3))  - sum(o * bias)
  cost squared_error(o, y)
}"""


def _flat_sweep(model, x, free):
    """One relaxation sweep at beta = 0 as a map of one flat vector, and the free state's vector."""
    names = list(free)
    sizes = [free[name].numel() for name in names]

    def sweep(flat: torch.Tensor) -> torch.Tensor:
        parts = dict(zip(names, (p.view_as(free[n]) for p, n in zip(flat.split(sizes), names))))
        swept = model.relax(x, parts, None, 0.0, 1)
        return torch.cat([swept[name].reshape(-1) for name in names])

    return sweep, torch.cat([free[name].reshape(-1) for name in names]).detach()


def test_the_adjoint_iteration_reaches_the_direct_solve():
    _, model = build(TINY_HOPFIELD)
    x, label = random_batch(model, batch=2)
    x = x.abs() * 0.5               # most states inside their box, where the sweep has a slope
    free = {name: state.detach() for name, state in model(x, 300).items()}
    names = list(free)
    sweep, point = _flat_sweep(model, x, free)
    jacobian = torch.autograd.functional.jacobian(sweep, point)
    assert 0 < float(jacobian.abs().sum())               # not everything saturated
    output = free[model.OUTPUT].detach().requires_grad_(True)
    pull = torch.autograd.grad(model.cost({**free, model.OUTPUT: output}, label).mean(), output)[0]
    direct = torch.cat([(pull if name == model.OUTPUT else torch.zeros_like(free[name])).reshape(-1) for name in names])
    adjoint = torch.linalg.solve(torch.eye(len(point), dtype=point.dtype) - jacobian.T, direct)
    start = point.clone().requires_grad_(True)
    oracle = torch.autograd.grad(sweep(start), list(model.parameters()), adjoint, allow_unused=True)
    oracle = [torch.zeros_like(p) if g is None else g for p, g in zip(model.parameters(), oracle)]
    estimate = rbp_gradients(model, x, label, free_steps=300, adjoint_steps=300)["grads"]
    for ours, theirs in zip(estimate, oracle, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-8, atol=1e-12)


def test_a_training_run_with_rbp_follows_the_backprop_run(tmp_path):
    """`algorithm rbp` end to end (train block, step, trainer): on hopfield_tiny, whose 60 free
    iterations converge, its steps take backprop's gradient, so the runs' weights agree."""
    from click.testing import CliRunner

    from pcdsl.cli.main import main
    from pcdsl.runtime.checkpoint import load_checkpoint
    runs = {}
    for algorithm in ("bp", "rbp"):
        out = tmp_path / algorithm
        result = CliRunner().invoke(main, ["train", "hopfield_tiny", "--algorithm", algorithm, "--epochs", "1",
                                           "--limit", "128", "--out", str(out)])
        assert result.exit_code == 0, result.output
        runs[algorithm] = load_checkpoint(out / "checkpoints" / "last.pt")
    assert "recurrent backprop (implicit differentiation, 60 adjoint steps)" in result.output
    assert runs["rbp"]["config"]["algorithm"] == "rbp"
    for name, weights in runs["bp"]["model"].items():
        torch.testing.assert_close(runs["rbp"]["model"][name], weights, rtol=1e-4, atol=1e-6)


def _sweep_spectral_radius(model, x, free) -> float:
    sweep, point = _flat_sweep(model, x, free)
    return float(torch.linalg.eigvals(torch.autograd.functional.jacobian(sweep, point)).abs().max())


@pytest.mark.parametrize("bias", [0.0, 3.0])
def test_a_diverging_adjoint_is_caught_where_the_sweep_does_not_contract(bias):
    """quartic_sparsity relaxes h with momentum; one sweep on its own is a plain gradient step at
    the momentum's rate, which overshoots where the quartic term is stiff (a large layer-1 bias
    drives h up the quartic). The oracle is the sweep's Jacobian: spectral radius above 1 ⇔ the
    adjoint iteration diverges, and the estimate must then say so rather than return it."""
    from pathlib import Path

    from pcdsl.runtime.estimators import Diverged
    _, model = build(Path(__file__).parents[1] / "models" / "quartic_sparsity.pc")
    x, label = random_batch(model, batch=2)
    with torch.no_grad():
        model.layer1_b.fill_(bias)
    free = {name: state.detach() for name, state in model(x, 600).items()}
    contracts = _sweep_spectral_radius(model, x, free) < 1
    assert contracts == (bias == 0.0)                # the premise: both regimes are exercised
    estimate = rbp_gradients(model, x, label, free_steps=600, adjoint_steps=100, check=False)
    assert bool(estimate["health"].ok) == contracts
    if not contracts:
        with pytest.raises(Diverged, match="adjoint diverged"):
            rbp_gradients(model, x, label, free_steps=600, adjoint_steps=100)
        # the training step's flag, and what the trainer then reports
        from pcdsl.ir.config import TrainConfig
        from pcdsl.runtime.step import TrainStep
        step = TrainStep(model, TrainConfig(algorithm="rbp", free_steps=600, adjoint_steps=100))
        result = step(x, label)
        assert not bool(result.ok)
        assert "adjoint diverged" in step.diagnose(x, label, result)
