# ---------------------------------------------------------------------------------------------
# The variants of predictive-coding inference learning against a hand-written eager
# implementation of each, on the energy of a small tanh PCN written out by hand (PCX's
# convention: the cost at the output's prediction; the output clamped):
#     F_pi(h1, h2) = pi_1/2 |h1 - tanh(W1 x + b1)|^2 + pi_2/2 |h2 - tanh(W2 h1 + b2)|^2
#                    + pi_3 C(W3 h2 + b3, y)
#   - precision-weighted sweeps (Qi et al. 2025): h <- (h + (h - dF_pi/dh)) / 2 with the
#     schedule's pi for that sweep, then the weight update of the plain F (pi = 1);
#   - the forward update: each layer's weights from its relaxed state against its prediction
#     from the feedforward value of the layer below;
#   - incremental PC: a torch SGD step at every sweep, the gradient of F at the states then.
# The schedules themselves are compared with tables written by hand.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from helpers import build, random_batch
from pcdsl.ir.config import TrainConfig
from pcdsl.runtime.estimators import ipc_updates, pcil_gradients
from pcdsl.runtime.precisions import precision_schedule, sweep_precisions

PCN = """model small {
  input  x  : [6]
  label  y  : [4]
  state  h1 : [8] ~ tanh(dense(x, 8) + bias)
  state  h2 : [8] ~ tanh(dense(h1, 8) + bias)
  output o  : [4] ~ dense(h2, 4) + bias
  cost cross_entropy(o, y)
}"""


def _energy(weights, x, y, h1, h2, pi=(1.0, 1.0, 1.0)):
    e1 = 0.5 * ((h1 - torch.tanh(F.linear(x, weights["h1_w_x"], weights["h1_b"]))) ** 2).sum(1)
    e2 = 0.5 * ((h2 - torch.tanh(F.linear(h1, weights["h2_w_h1"], weights["h2_b"]))) ** 2).sum(1)
    cost = F.cross_entropy(F.linear(h2, weights["o_w_h2"], weights["o_b"]), y, reduction="none")
    return pi[0] * e1 + pi[1] * e2 + pi[2] * cost


def _feedforward(weights, x):
    h1 = torch.tanh(F.linear(x, weights["h1_w_x"], weights["h1_b"]))
    return h1, torch.tanh(F.linear(h1, weights["h2_w_h1"], weights["h2_b"]))


def _sweep(weights, x, y, h1, h2, pi):
    """One damped sweep of the weighted energy, by hand (unbounded states: no projection)."""
    h1, h2 = h1.detach().requires_grad_(True), h2.detach().requires_grad_(True)
    g1, g2 = torch.autograd.grad(_energy(weights, x, y, h1, h2, pi).sum(), [h1, h2])
    return (h1 - 0.5 * g1).detach(), (h2 - 0.5 * g2).detach()


def _schedule(model, kind, sweeps, **settings):
    config = TrainConfig(algorithm="pcil", update="pgd", inference_precision=kind, **settings)
    return sweep_precisions(model, config, sweeps)


# ---------------------------------------------------------------- the schedules, by hand
def test_spiking_precision_is_one_on_the_wavefront_only():
    assert precision_schedule("spiking", 3, 5, alpha=0.01) == [
        [0.01, 0.01, 1.0, 0.01, 0.01],      # layer 1: the error reaches it at sweep L - 1 = 2
        [0.01, 1.0, 0.01, 0.01, 0.01],
        [1.0, 0.01, 0.01, 0.01, 0.01],      # the output's layer: at the first sweep
    ]


def test_decaying_precision_decays_after_the_wavefront_down_to_alpha():
    assert precision_schedule("decaying", 3, 6, alpha=0.1, decay=0.5) == [
        [0.1, 0.1, 1.0, 0.5, 0.25, 0.125],
        [0.1, 1.0, 0.5, 0.25, 0.125, 0.1],
        [1.0, 0.5, 0.25, 0.125, 0.1, 0.1],
    ]


def test_a_table_holds_its_last_column_and_uniform_is_all_ones():
    assert precision_schedule("table", 2, 4, table=[[0.5, 1], [2]]) == [[0.5, 1.0, 1.0, 1.0], [2.0, 2.0, 2.0, 2.0]]
    assert precision_schedule("uniform", 2, 2) == [[1.0, 1.0], [1.0, 1.0]]
    with pytest.raises(ValueError, match="one row per layer"):
        precision_schedule("table", 3, 2, table=[[1.0]])


def test_a_models_states_read_their_layers_row():
    _, model = build(PCN)
    assert model.LAYERS == {"h1": 1, "h2": 2, "o": 3}
    per_sweep = _schedule(model, "spiking", 3, precision_alpha=0.01)
    assert per_sweep == [{"h1": 0.01, "h2": 0.01, "o": 1.0}, {"h1": 0.01, "h2": 1.0, "o": 0.01},
                         {"h1": 1.0, "h2": 0.01, "o": 0.01}]


# ---------------------------------------------------------------- sweeps and weight updates
@pytest.mark.parametrize("kind", ["spiking", "decaying"])
def test_weighted_sweeps_and_the_update_match_the_hand_written_ones(kind):
    _, model = build(PCN)
    x, y = random_batch(model, batch=5)
    steps = 5
    precisions = _schedule(model, kind, steps, precision_alpha=0.01)
    result = pcil_gradients(model, x, y, steps, mod=False, precisions=precisions)
    weights = dict(model.named_parameters())
    h1, h2 = (h.detach() for h in _feedforward(weights, x))
    for pi in precisions:
        h1, h2 = _sweep(weights, x, y, h1, h2, (pi["h1"], pi["h2"], pi["o"]))
    torch.testing.assert_close(result["relaxed"]["h1"], h1, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(result["relaxed"]["h2"], h2, rtol=1e-10, atol=1e-12)
    oracle = torch.autograd.grad(_energy(weights, x, y, h1, h2).mean(), list(model.parameters()))
    for (name, _), ours, theirs in zip(model.named_parameters(), result["grads"], oracle, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-12, msg=name)


def test_the_forward_update_predicts_each_layer_from_the_feedforward_one_below():
    _, model = build(PCN)
    x, y = random_batch(model, batch=5)
    result = pcil_gradients(model, x, y, 4, mod=False, forward_update=True)
    relaxed, weights = result["relaxed"], dict(model.named_parameters())
    bar1, bar2 = (h.detach() for h in _feedforward(weights, x))
    forward_energy = (0.5 * ((relaxed["h1"] - torch.tanh(F.linear(x, weights["h1_w_x"], weights["h1_b"]))) ** 2).sum(1)
                      + 0.5 * ((relaxed["h2"] - torch.tanh(F.linear(bar1, weights["h2_w_h1"], weights["h2_b"]))) ** 2).sum(1)
                      + 0.5 * ((relaxed["o"] - F.linear(bar2, weights["o_w_h2"], weights["o_b"])) ** 2).sum(1))
    oracle = torch.autograd.grad(forward_energy.mean(), list(model.parameters()))
    for (name, _), ours, theirs in zip(model.named_parameters(), result["grads"], oracle, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-12, msg=name)
    # the output layer's is the plain update's: its layer below is where the sweeps left it only
    # in the plain one, so the two differ exactly in the weights that read a relaxed state
    plain = pcil_gradients(model, x, y, 4, mod=False)["grads"]
    assert torch.equal(plain[0], result["grads"][0])          # h1's weights read the input in both
    assert not torch.allclose(plain[2], result["grads"][2])


@pytest.mark.parametrize("schedule", [None, "spiking"])
def test_incremental_pc_is_sgd_at_every_sweep(schedule):
    _, model = build(PCN)
    x, y = random_batch(model, batch=5)
    steps = 4
    precisions = None if schedule is None else _schedule(model, schedule, steps, precision_alpha=0.01)
    reference = copy.deepcopy(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    def update_weights(grads):
        for parameter, grad in zip(model.parameters(), grads):
            parameter.grad = grad
        optimizer.step()

    result = ipc_updates(model, x, y, steps, update_weights, mod=False, precisions=precisions)

    # by hand: the gradient of F at the states and the sweep from the same weights, then the step
    weights = dict(reference.named_parameters())
    hand_optimizer = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9)
    h1, h2 = (h.detach() for h in _feedforward(weights, x))
    for t in range(steps):
        pi = (1.0, 1.0, 1.0) if precisions is None else tuple(precisions[t][s] for s in ("h1", "h2", "o"))
        grads = torch.autograd.grad(_energy(weights, x, y, h1, h2).mean(), list(reference.parameters()))
        h1, h2 = _sweep(weights, x, y, h1, h2, pi)
        for parameter, grad in zip(reference.parameters(), grads):
            parameter.grad = grad
        hand_optimizer.step()
    for (name, ours), theirs in zip(model.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-12, msg=name)
    torch.testing.assert_close(result["relaxed"]["h2"], h2, rtol=1e-9, atol=1e-12)


def test_the_variants_train_end_to_end_from_the_train_block(tmp_path):
    """ipc with a spiking schedule and the forward update, through the train block, the step and
    the trainer (the optimiser's steps taken inside the step); a schedule for EP is refused."""
    import json

    from click.testing import CliRunner

    from pcdsl.cli.main import main
    model = tmp_path / "small.pc"
    model.write_text(PCN.replace("model small", "model small_mlp").replace("[6]", "[64]").replace("[4]", "[10]")
                     .replace("dense(h2, 4)", "dense(h2, 10)")
                     + "\ntrain {\n  ipc(steps=3, update=pgd)\n  spiking(alpha=0.01)\n  forward_update()\n"
                       "  sgd(lr=0.05, momentum=0.9)\n  batch 32\n}\n")
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", str(model), "--epochs", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert ("incremental predictive coding (3 sweeps, output clamped, pgd, spiking precision, forward update, "
            "a weight step per sweep)") in result.output
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["test_acc"] > 0.5               # chance is 0.1
    refused = CliRunner().invoke(main, ["train", str(model), "--algorithm", "ep", "--out", str(tmp_path / "no")])
    assert refused.exit_code == 1 and "error[E410]" in refused.output
