# ---------------------------------------------------------------------------------------------
# Oracle: backprop through the same network, for predictive-coding inference learning with the
# output nudged (`pcil(nudge=beta)`): the output holds its prediction minus beta times the
# cost's gradient, the states relax (PGD sweeps), and the update divided by beta approaches the
# cost's gradient as beta -> 0 (Whittington & Bogacz 2017). Every catalogue model the checker
# accepts for pcil (a feedforward free phase, the output last), except the VGGs, whose hundred
# sweeps take 25-50 s each here (measured at cosine 1.000000 too: docs/results.md, section 10).
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import pytest

from helpers import backprop_grads, build, cosine, random_batch
from pcdsl.diagnostics import PcdslError
from pcdsl.pipeline import compile_file
from pcdsl.runtime.estimators import pcil_gradients
from support.catalogue import ALL

PCIL = ["algorithm=pcil", "update=pgd"]


def _accepted(entry) -> bool:
    try:
        compile_file(entry.path, list(entry.sets) + PCIL)
    except PcdslError:
        return False
    return True


ENTRIES = [e for e in ALL if not e.id.startswith("vgg") and _accepted(e)]


def test_the_catalogue_has_models_of_every_kind_for_pcil():
    assert len(ENTRIES) >= 12
    refused = [e.id for e in ALL if not _accepted(e)]
    assert "hopfield_tiny" in refused          # a relaxation free phase: E406


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.id)
def test_nudged_pcil_matches_backprop(entry):
    _, model = build(entry.path, list(entry.sets) + PCIL)
    x, label = random_batch(model, batch=2)
    truth = backprop_grads(model, x, label)
    estimate = pcil_gradients(model, x, label, 100, mod=False, nudge=1e-4)["grads"]
    for (name, _), ours, theirs in zip(model.named_parameters(), estimate, truth):
        assert cosine(ours, theirs) > 0.9999, name


def test_the_error_shrinks_with_beta():
    entry = next(e for e in ENTRIES if e.id == "tanh_mlp")
    _, model = build(entry.path, list(entry.sets) + PCIL)
    x, label = random_batch(model, batch=4)
    truth = backprop_grads(model, x, label)

    def worst(beta):
        grads = pcil_gradients(model, x, label, 200, mod=False, nudge=beta)["grads"]
        return 1.0 - min(cosine(a, b) for a, b in zip(grads, truth))
    assert worst(1e-3) < worst(1e-1) / 10
