# ---------------------------------------------------------------------------------------------
# train(..., diagnostics=True): the relax/... numbers of each epoch's record.
# Oracles: a model whose relaxation has a closed form (one output state relaxed by gradient
# steps on a quadratic energy: every iterate, energy and change is a formula of the weights the
# epoch's checkpoint holds); `pcdsl trace`'s relaxation (visual/trace.py: the phases iteration by
# iteration, each iterate relaxed afresh for a momentum relaxation) at the checkpoint's weights;
# the weights and numbers of runs without diagnostics (measuring changes nothing).
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import math

import pytest
import torch

from helpers import MODELS
from pcdsl.pipeline import compile_text
from pcdsl.runtime.checkpoint import load_checkpoint
from pcdsl.runtime.loading import load_model_class
from pcdsl.runtime.metrics import read_metrics
from pcdsl.runtime.trainer import train
from pcdsl.visual.trace import relaxation_trace
from tests.runtime.test_trainer import config, run, without_timing
from tests.support.fake_data import gaussian_clusters

# E = 1/2 |o|^2 - o . W x, relaxed by o <- o - s dF/do: from rest o_t = (1 - (1 - s)^t) W x; the
# nudged phase (squared error, F = E + beta/2 |o - y|^2) moves geometrically, by the factor
# 1 - s (1 + beta) per iteration, towards (W x + beta y) / (1 + beta)
LINEAR = """
model linear_out {
  input  x : [4]
  label  y : [3]
  output o : [3]

  energy e = 0.5 * sum(o**2) - sum(o * dense(x, 3))

  cost squared_error(o, y)
}

train {
  ep(scheme=centered, beta=0.2, steps=3, free_steps=6)
  relax(rule=gradient, step=0.25)
  sgd(lr=0.05, momentum=0.0)
  batch 8
  epochs 2
}
"""

GENERATIVE_CLASSIFIER = """
model tiny_generative_classifier {
  input x  : [16] ~ sigmoid(dense(h1, 16) + bias)
  state h1 : [8]  ~ tanh(dense(c, 8) + bias)
  state c  : [10]

  energy prior = 0.5 * sum(c ** 2)
}

train {
  pcil(free_steps=6, label=c)
  relax(step=0.1)
  sgd(lr=0.05, momentum=0.9)
  batch 16
  epochs 1
}
"""


def train_text(tmp_path, text: str, data, sets=()):
    compiled = compile_text(text, "model.pc", list(sets))
    out = tmp_path / "run"
    history = train(compiled.source, text, "model.pc", compiled.ir.train, data, out, log=lambda _: None,
                    diagnostics=True)
    return compiled, out, history


def model_at(compiled, out, epoch: int):
    model = load_model_class(compiled.source)()
    model.load_state_dict(load_checkpoint(out / "checkpoints" / f"epoch_{epoch:03d}.pt")["model"])
    return model


def rms(t: torch.Tensor) -> float:
    return float(t.pow(2).mean().sqrt())


def test_the_numbers_are_those_of_the_closed_form_relaxation(tmp_path):
    data = gaussian_clusters(n_train=48, n_test=20, dim=4, num_classes=3)
    compiled, out, history = train_text(tmp_path, LINEAR, data)
    assert read_metrics(out / "metrics.jsonl") == history
    s, beta, K, N = 0.25, 0.2, 3, 6
    x, y = data.test.x[:8].double(), data.test.y[:8]          # the fixed batch: the first `batch` test examples
    target = torch.nn.functional.one_hot(y, 3).double()
    for record in history:
        W = load_checkpoint(out / "checkpoints" / f"epoch_{record['epoch']:03d}.pt")["model"]["e_w_x"].double()
        u = x @ W.T

        def energy(o):
            return float((0.5 * (o ** 2).sum(1) - (o * u).sum(1)).mean())
        free, before = (1 - (1 - s) ** N) * u, (1 - (1 - s) ** (N - 1)) * u
        expected = {"relax/energy/free": energy(free), "relax/change/free/o": rms(free - before)}
        for name, b in (("nudged_pos", beta), ("nudged_neg", -beta)):
            rate, fixed = 1 - s * (1 + b), (u + b * target) / (1 + b)

            def after(t):
                return fixed + rate ** t * (free - fixed)
            expected[f"relax/energy/{name}"] = energy(after(K))
            expected[f"relax/change/{name}/o"] = rms(after(K) - after(K - 1))
        assert {k: v for k, v in record.items() if k.startswith("relax/")} == pytest.approx(expected, rel=2e-4)
        assert expected["relax/change/nudged_pos/o"] > 1e-3          # a change that means something


def trace_numbers(phases, names) -> dict[str, float]:
    numbers = {}
    for phase, name in zip(phases, names):
        numbers[f"relax/energy/{name}"] = phase.total[-1]
        if len(phase.iterations) > 1:
            numbers.update({f"relax/change/{name}/{state}": values[-1] for state, values in phase.changes.items()})
    return numbers


@pytest.mark.parametrize("scheme, sets", [("centered", ["relax_rule=gradient", "relax_momentum=0.5", "steps=5",
                                                        "free_steps=9"]),
                                          ("forward", ["steps=4", "free_steps=7"])])
def test_a_relaxation_model_matches_its_trace(tmp_path, scheme, sets):
    source = (MODELS / "hopfield_tiny.pc").read_text()
    data = gaussian_clusters(n_train=64, n_test=40, dim=64)
    compiled, out, history = train_text(tmp_path, source, data, [f"scheme={scheme}", "batch=32", "epochs=1", *sets])
    config = compiled.ir.train
    model = model_at(compiled, out, 1)
    x, y = data.test.x[:32], data.test.y[:32]
    phases = relaxation_trace(model, x, y, beta=config.beta, steps=config.steps, free_steps=config.free_steps,
                              scheme=scheme)
    names = ["free", "nudged_pos", "nudged_neg"] if scheme == "centered" else ["free", "nudged_pos"]
    expected = trace_numbers(phases, names)
    measured = {k: v for k, v in history[0].items() if k.startswith("relax/")}
    assert set(measured) == set(expected) and len(measured) == len(names) * 3
    assert measured == pytest.approx(expected, rel=1e-4, abs=1e-7)
    assert all(value > 1e-6 for key, value in measured.items() if "/change/" in key)


def test_a_generative_classifier_reports_its_clamped_free_phase(tmp_path):
    data = gaussian_clusters(n_train=32, n_test=16, dim=16)
    compiled, out, history = train_text(tmp_path, GENERATIVE_CLASSIFIER, data)
    model = model_at(compiled, out, 1)
    phases = relaxation_trace(model, data.test.x, data.test.y, beta=0.0, steps=1, free_steps=6, label_state="c")
    measured = {k: v for k, v in history[0].items() if k.startswith("relax/")}
    assert measured == pytest.approx(trace_numbers(phases, ["free"]), rel=1e-4, abs=1e-9)
    assert measured["relax/change/free/c"] == 0.0               # clamped to the label
    assert set(measured) == {"relax/energy/free", "relax/change/free/h1", "relax/change/free/c"}


@pytest.mark.parametrize("algorithm, scheme, phases", [("ep", "backward", ["nudged_neg"]),
                                                       ("ep", "random", ["nudged_pos", "nudged_neg"]),
                                                       ("bp", "centered", []), ("pcil", "centered", ["clamped"]),
                                                       ("ipc", "centered", ["clamped"])])
def test_a_feedforward_pcn_has_a_free_energy_of_zero_and_the_phases_its_algorithm_runs(tmp_path, algorithm,
                                                                                          scheme, phases):
    history = run(tmp_path / "run", config(epochs=1, algorithm=algorithm, scheme=scheme), diagnostics=True)
    measured = {k: v for k, v in history[0].items() if k.startswith("relax/")}
    states = ("h1", "h2", "h3")          # the hand-written PCN 16-24-24-10: h3 is its output
    expected_keys = {"relax/energy/free"} | {f"relax/energy/{p}" for p in phases} | {
        f"relax/change/{p}/{s}" for p in phases for s in states}
    assert set(measured) == expected_keys
    assert measured["relax/energy/free"] == pytest.approx(0.0, abs=1e-12)    # the feedforward pass: no error
    assert all(math.isfinite(v) and v >= 0 for v in measured.values())


def test_measuring_changes_nothing_in_the_training_and_resumes_exactly(tmp_path):
    cfg = config(epochs=3, scheme="random")      # the random scheme's draws: none may be added
    plain = run(tmp_path / "plain", cfg)
    measured = run(tmp_path / "measured", cfg, diagnostics=True)
    assert without_timing(plain) == [{k: v for k, v in r.items() if not k.startswith("relax/")}
                                     for r in without_timing(measured)]
    a = load_checkpoint(tmp_path / "plain" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "measured" / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(a[name], b[name]) for name in a)
    run(tmp_path / "split", cfg, diagnostics=True, epochs=1)
    resumed = run(tmp_path / "split", cfg, diagnostics=True, resume=True)
    assert without_timing(resumed) == without_timing(measured)


# PC-IL on a squared-error PCN: the clamp holds the output at its prediction minus the cost's
# gradient there, which for squared error is the target itself; each inference sweep is the
# model's synchronous (half-damped) sweep with the output put back on the target
SQUARED_PCN = """
model pcn_squared {
  input  x  : [16]
  label  y  : [4]
  state  h1 : [12] >= 0 ~ relu(dense(x, 12) + bias)
  output o  : [4]       ~ dense(h1, 4) + bias
  cost squared_error(o, y)
}

train {
  pcil(steps=5, update=pgd)
  sgd(lr=0.05, momentum=0.0)
  batch 8
  epochs 1
}
"""


def test_inference_learning_reports_its_clamped_relaxation(tmp_path):
    data = gaussian_clusters(n_train=32, n_test=16, dim=16, num_classes=4)
    compiled, out, history = train_text(tmp_path, SQUARED_PCN, data)
    model = model_at(compiled, out, 1)
    x, y = data.test.x[:8], data.test.y[:8]
    target = torch.nn.functional.one_hot(y, 4).to(x.dtype)
    with torch.no_grad():
        states = {**model(x), "o": target}
        for _ in range(5):
            before = states
            states = {**model.relax(x, states, None, 0.0, 1, False, synchronous=True), "o": target}
        energy = float(model.energy(x, states).mean())
    measured = {k: v for k, v in history[0].items() if k.startswith("relax/")}
    assert set(measured) == {"relax/energy/free", "relax/energy/clamped", "relax/change/clamped/h1",
                             "relax/change/clamped/o"}
    assert measured["relax/energy/clamped"] == pytest.approx(energy, rel=1e-5)
    assert measured["relax/change/clamped/h1"] == pytest.approx(rms(states["h1"] - before["h1"]), rel=1e-4)
    assert measured["relax/change/clamped/o"] == pytest.approx(0.0, abs=1e-6)   # held on the target
    # (up to rounding: the clamp is the prediction minus the cost's gradient, mu - (mu - y))


def test_a_failing_measurement_is_a_warning_and_the_epoch_is_kept(tmp_path, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise RuntimeError("CUDA out of memory (simulated)")
    monkeypatch.setattr("pcdsl.runtime.trainer.relaxation_diagnostics", out_of_memory)
    lines = []
    history = run(tmp_path / "run", config(epochs=2), diagnostics=True, lines=lines)
    assert len(history) == 2 and not any(k.startswith("relax/") for r in history for k in r)
    assert sum("relaxation diagnostics of epoch" in line and "simulated" in line for line in lines) == 2
    assert (tmp_path / "run" / "checkpoints" / "epoch_002.pt").exists()


def test_a_bug_in_the_measurement_is_not_hidden(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (simulated)")
    monkeypatch.setattr("pcdsl.runtime.trainer.relaxation_diagnostics", broken)
    with pytest.raises(RuntimeError, match="simulated"):
        run(tmp_path / "run", config(epochs=1), diagnostics=True)
