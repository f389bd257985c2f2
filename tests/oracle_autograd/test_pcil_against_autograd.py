# ---------------------------------------------------------------------------------------------
# Predictive-coding inference learning against autograd of the energy it minimises, written
# here by hand for a small PCN (PCX's convention: the hidden prediction errors plus the cost at
# the output's prediction, the output clamped to the target):
#     F(h1, h2) = 1/2 |h1 - act(W1 x + b1)|^2 + 1/2 |h2 - act(W2 h1 + b2)|^2 + C(W3 h2 + b3, y)
#   - the weight update is autograd's dF/dtheta (batch mean) at the states PC-IL relaxed to;
#   - after enough sweeps (PGD) those states are stationary points of F, for a smooth F (with
#     ReLU kinks the sweeps settle where a pre-activation sits on its kink, and F has no
#     gradient there to test);
#   - with squared error the clamped output is the target itself.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from helpers import build, random_batch
from pcdsl.runtime.estimators import pcil_gradients


def _pcn(activation: str, domain: str, cost: str) -> str:
    return f"""model small {{
  input  x  : [6]
  label  y  : [4]
  state  h1 : [8] {domain} ~ {activation}(dense(x, 8) + bias)
  state  h2 : [8] {domain} ~ {activation}(dense(h1, 8) + bias)
  output o  : [4] ~ dense(h2, 4) + bias
  cost {cost}(o, y)
}}"""


CASES = [("relu", ">= 0", "cross_entropy"), ("tanh", "", "squared_error"), ("leaky_relu", "", "cross_entropy")]
ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh, "leaky_relu": F.leaky_relu}


def _energy(model, activation, cost, x, y, h1, h2):
    """The energy F above, per example, from the model's weights (by their generated names)."""
    act = ACTIVATIONS[activation]
    w = dict(model.named_parameters())
    e1 = 0.5 * ((h1 - act(F.linear(x, w["h1_w_x"], w["h1_b"]))) ** 2).sum(1)
    e2 = 0.5 * ((h2 - act(F.linear(h1, w["h2_w_h1"], w["h2_b"]))) ** 2).sum(1)
    mu = F.linear(h2, w["o_w_h2"], w["o_b"])
    if cost == "cross_entropy":
        c = F.cross_entropy(mu, y, reduction="none")
    else:
        c = 0.5 * ((mu - F.one_hot(y, 4).to(mu.dtype)) ** 2).sum(1)
    return e1 + e2 + c


@pytest.mark.parametrize("activation, domain, cost", CASES, ids=[c[0] for c in CASES])
def test_the_weight_update_is_the_energys_gradient_at_the_relaxed_states(activation, domain, cost):
    _, model = build(_pcn(activation, domain, cost))
    x, y = random_batch(model, batch=5)
    result = pcil_gradients(model, x, y, steps=6)
    h1, h2 = result["relaxed"]["h1"], result["relaxed"]["h2"]
    oracle = torch.autograd.grad(_energy(model, activation, cost, x, y, h1, h2).mean(), list(model.parameters()))
    for (name, _), ours, theirs in zip(model.named_parameters(), result["grads"], oracle, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-12, msg=name)


SMOOTH = [("tanh", "", "squared_error"), ("tanh", "", "cross_entropy")]


@pytest.mark.parametrize("activation, domain, cost", SMOOTH, ids=[c[2] for c in SMOOTH])
def test_many_sweeps_reach_a_stationary_point_of_the_energy(activation, domain, cost):
    _, model = build(_pcn(activation, domain, cost))
    x, y = random_batch(model, batch=5)
    relaxed = pcil_gradients(model, x, y, steps=400, mod=False)["relaxed"]     # PGD: F's own fixed points
    h1, h2 = (relaxed[name].clone().requires_grad_(True) for name in ("h1", "h2"))
    g1, g2 = torch.autograd.grad(_energy(model, activation, cost, x, y, h1, h2).sum(), [h1, h2])
    for grad in (g1, g2):
        assert float(grad.abs().max()) < 1e-8


def test_with_squared_error_the_clamped_output_is_the_target():
    _, model = build(_pcn("tanh", "", "squared_error"))
    x, y = random_batch(model, batch=5)
    relaxed = pcil_gradients(model, x, y, steps=3)["relaxed"]
    torch.testing.assert_close(relaxed["o"], F.one_hot(y, 4).to(x.dtype))


def test_pcil_trains_a_pcn_and_refuses_a_relaxation(tmp_path):
    """End to end through the train block key, the step and the trainer; the checker's E406."""
    import json

    from click.testing import CliRunner

    from pcdsl.cli.main import main
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "mlp_digits", "--algorithm", "pcil", "--set", "steps=8",
                                       "--set", "update=pgd", "--set", "lr=0.02", "--epochs", "5", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "predictive-coding inference learning (8 sweeps, output clamped, pgd)" in result.output
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["test_acc"] > 0.85          # 90.6 % measured; backprop and EP reach 97-98 %
    refused = CliRunner().invoke(main, ["train", "hopfield_tiny", "--algorithm", "pcil", "--out", str(tmp_path / "no")])
    assert refused.exit_code == 1 and "error[E406]" in refused.output
