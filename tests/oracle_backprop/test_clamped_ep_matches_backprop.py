# ---------------------------------------------------------------------------------------------
# EP with the output clamped (h_L <- (1 - beta) h_L + beta y) instead of nudged, against
#   - backprop through the free phase as beta -> 0, on a boxed Hopfield model (saturated output
#     units included) and on a squared-error PCN;
#   - the nudged phase it stands for: for squared error the clamped fixed point is the nudged
#     one at strength beta / (1 - beta), which the relaxations must reach.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers import backprop_grads, build, cosine, random_batch, rel_error
from pcdsl.runtime.estimators import _clamped_phase, ep_gradients

ROOT = Path(__file__).resolve().parents[2]
SQUARED_PCN = """model squared_pcn {
  input  x  : [6]
  label  y  : [4]
  state  h1 : [8] ~ tanh(dense(x, 8) + bias)
  state  h2 : [8] >= 0 ~ relu(dense(h1, 8) + bias)
  output o  : [4] ~ dense(h2, 4) + bias
  cost squared_error(o, y)
}"""
CASES = [(ROOT / "pcdsl" / "models" / "hopfield_tiny.pc", 200), (SQUARED_PCN, 100)]


@pytest.mark.parametrize("source, steps", CASES, ids=["hopfield_tiny", "squared_pcn"])
def test_clamped_ep_approaches_backprop(source, steps):
    _, model = build(source)
    x, label = random_batch(model, batch=4)
    truth = backprop_grads(model, x, label)
    errors = []
    for beta in (1e-2, 1e-3):
        estimate = ep_gradients(model, x, label, beta, steps, perturbation="clamp")["grads"]
        errors.append(max(rel_error(ours, theirs) for ours, theirs in zip(estimate, truth)))
    for ours, theirs in zip(estimate, truth):      # at beta 1e-3 (1e-2 moves boxed units across an edge)
        assert cosine(ours, theirs) > 0.99999
    assert errors[1] < 1e-4
    assert errors[1] < errors[0]                # and it shrinks with beta


def test_the_clamped_fixed_point_is_the_nudged_one_at_beta_over_one_minus_beta():
    _, model = build(ROOT / "pcdsl" / "models" / "hopfield_tiny.pc")
    x, label = random_batch(model, batch=4)
    free = model(x, 300)
    beta = 0.2
    clamped = _clamped_phase(model, x, free, label, beta, 400, mod=True)
    nudged = model.relax(x, free, label, beta / (1 - beta), 200)
    for name in free:
        torch.testing.assert_close(clamped[name], nudged[name], rtol=0, atol=1e-9)
    assert int(((free[model.OUTPUT] == 0) | (free[model.OUTPUT] == 1)).sum()) > 0   # saturated units exist
