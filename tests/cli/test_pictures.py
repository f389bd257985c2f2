# ---------------------------------------------------------------------------------------------
# The data behind `pcdsl plot` and `pcdsl trace` (not their pixels), and that both write PNGs.
#   - plot: each series is the run's metrics.jsonl, epoch by epoch; the CSV holds every number;
#   - trace: each iteration's states are the model's relax() run from the phase's start for
#     that many iterations (an independent route: one call, not the trace's step by step), and
#     the energies, cost, objective and changes are computed from them here.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import csv
import io
import json

import pytest
import torch
from PIL import Image

from helpers import MODELS, ROOT, build, random_batch, run_cli
from pcdsl.visual.curves import PlotError, run_curves
from pcdsl.visual.trace import relaxation_trace, trace_csv, trace_json

run = run_cli


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plot")
    runs = []
    for algorithm in ("ep", "bp"):
        out = folder / algorithm
        result = run("train", MODELS / "mlp_digits.pc", "--algorithm", algorithm, "--epochs", "2", "--out", out,
                     "--limit", "200")
        assert result.exit_code == 0, result.output
        runs.append(out)
    return runs


def _png_size(path) -> tuple[int, int]:
    with Image.open(path) as picture:
        assert picture.format == "PNG"
        return picture.size


def test_the_curves_are_the_runs_metrics(two_runs):
    for folder in two_runs:
        curves = run_curves(folder)
        records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        assert curves.epochs == [r["epoch"] for r in records]
        for name in ("train_loss", "test_loss", "train_acc", "test_acc", "test_top5", "lr"):
            assert curves.series[name] == [r[name] for r in records]
        assert curves.model == "mlp_digits" and curves.algorithm == folder.name and not curves.generative


def test_plot_writes_a_png_and_a_csv_of_every_number(two_runs, tmp_path):
    picture, table = tmp_path / "curves.png", tmp_path / "curves.csv"
    result = run("plot", *two_runs, "-o", picture, "--csv", table)
    assert result.exit_code == 0, result.output
    width, height = _png_size(picture)
    assert width > 800 and height > 300
    rows = list(csv.DictReader(io.StringIO(table.read_text())))
    assert len(rows) == 2 * 2 * 6             # two runs, two epochs, six series
    ep_test = [float(r["value"]) for r in rows if r["algorithm"] == "ep" and r["metric"] == "test_acc"]
    assert ep_test == run_curves(two_runs[0]).series["test_acc"]


def test_a_torn_last_line_is_left_out_and_said(two_runs, tmp_path):
    import shutil
    copy = tmp_path / "torn"
    shutil.copytree(two_runs[0], copy)
    with open(copy / "metrics.jsonl", "a") as handle:
        handle.write('{"epoch": 3, "train_lo')
    assert run_curves(copy).epochs == [1, 2] and run_curves(copy).skipped_lines == 1
    result = run("plot", copy, "-o", tmp_path / "p.png")
    assert result.exit_code == 0 and "unreadable line" in result.output


def test_plot_refuses_what_is_not_a_run(tmp_path):
    with pytest.raises(PlotError, match="no metrics.jsonl"):
        run_curves(tmp_path)
    missing = run("plot", tmp_path / "nowhere", "-o", tmp_path / "p.png")
    assert missing.exit_code == 1 and "no such folder" in missing.output
    assert not (tmp_path / "p.png").exists()


# -- the trace ---------------------------------------------------------------------------------
@torch.no_grad()
def _check_phase(model, x, label, phase, start, steps):
    for t in range(steps + 1):
        states = start if t == 0 else model.relax(x, start, label, phase.beta, t)
        energies = model.energies(x, states)
        for term, energy in energies.items():
            assert phase.energies[term][t] == pytest.approx(float(energy.mean()), rel=1e-9, abs=1e-12)
        cost = float(model.cost(states, label).mean())
        assert phase.cost[t] == pytest.approx(cost, rel=1e-9)
        assert phase.objective[t] == pytest.approx(phase.total[t] + phase.beta * cost, rel=1e-9, abs=1e-12)
        if t:
            before = start if t == 1 else model.relax(x, start, label, phase.beta, t - 1)
            for name in model.STATES:
                rms = float(torch.sqrt(((states[name] - before[name]) ** 2).mean()))
                assert phase.changes[name][t] == pytest.approx(rms, rel=1e-7, abs=1e-12)
    return model.relax(x, start, label, phase.beta, steps)


@pytest.mark.parametrize("model_file", ["hopfield_tiny.pc", "mlp_digits.pc"])
def test_the_trace_is_the_relaxation_from_each_phase_start(model_file):
    _, model = build(MODELS / model_file)
    x, label = random_batch(model, batch=3)
    phases = relaxation_trace(model, x, label, beta=0.2, steps=6, free_steps=12)
    assert [p.name for p in phases] == ["free", "nudged +beta", "nudged -beta"]
    free = phases[0]
    if model.FEEDFORWARD:
        assert free.iterations == [0] and free.total[0] == pytest.approx(0.0, abs=1e-20)
        end = model(x)
    else:
        end = _check_phase(model, x, label, free, model.initial_states(x), 12)
    for phase, sign in zip(phases[1:], (1.0, -1.0)):
        assert phase.beta == sign * 0.2
        _check_phase(model, x, label, phase, end, 6)


@torch.no_grad()
def test_the_free_phase_is_trainings_whatever_rule_the_nudged_phases_use():
    # training's free phase is model(x, free_steps), the module's default sweep; pgd and the
    # synchronous traversal apply to the nudged phases only
    _, model = build(MODELS / "hopfield_tiny.pc")
    x, label = random_batch(model, batch=3)
    free, plus, _ = relaxation_trace(model, x, label, beta=0.2, steps=4, free_steps=12, mod=False, synchronous=True)
    start = model(x, 12)
    assert free.total[-1] == pytest.approx(float(model.energy(x, start).mean()), rel=1e-9)
    end = model.relax(x, start, label, 0.2, 4, False, True)
    assert plus.total[-1] == pytest.approx(float(model.energy(x, end).mean()), rel=1e-9)


def test_a_momentum_relaxation_is_traced_from_its_start():
    text = (MODELS / "hopfield_tiny.pc").read_text()
    _, model = build(text, ["relax_rule=gradient", "relax_momentum=0.5"])
    x, label = random_batch(model, batch=2)
    phase = relaxation_trace(model, x, label, beta=0.1, steps=3, free_steps=5)[0]
    _check_phase(model, x, label, phase, model.initial_states(x), 5)


def test_trace_writes_png_csv_and_json(tmp_path):
    picture, table, data = tmp_path / "t.png", tmp_path / "t.csv", tmp_path / "t.json"
    result = run("trace", MODELS / "hopfield_tiny.pc", "-o", picture, "--csv", table, "--json", data,
                 "--steps", "4", "--free-steps", "6", "--batch", "2")
    assert result.exit_code == 0, result.output
    _png_size(picture)
    phases = json.loads(data.read_text())
    assert [len(p["iterations"]) for p in phases] == [7, 5, 5]
    rows = list(csv.DictReader(io.StringIO(table.read_text())))
    energy_rows = [r for r in rows if r["phase"] == "free" and r["quantity"] == "total_energy"]
    assert [float(r["value"]) for r in energy_rows] == pytest.approx(phases[0]["total"])


def test_trace_of_a_run_uses_its_weights_and_data(tmp_path):
    out = tmp_path / "run"
    assert run("train", MODELS / "mlp_digits.pc", "--epochs", "1", "--out", out, "--limit", "100").exit_code == 0
    data = tmp_path / "t.json"
    result = run("trace", out, "-o", tmp_path / "t.png", "--json", data, "--batch", "4")
    assert result.exit_code == 0, result.output
    assert "epoch 1" in result.output or json.loads(data.read_text())
    refused = run("trace", out, "-o", tmp_path / "u.png", "--set", "beta=0.1")
    assert refused.exit_code == 1 and "--set" in refused.output


def test_a_relaxation_that_runs_away_is_written_as_null(tmp_path):
    _, model = build(MODELS / "hopfield_tiny.pc")
    phases = relaxation_trace(model, *random_batch(model, batch=2), beta=0.1, steps=1, free_steps=1)
    phases[0].total[0] = float("inf")
    assert trace_json(phases)[0]["total"][0] is None
    assert "inf" in trace_csv(phases)


def test_a_generative_classifier_is_traced_with_its_label_clamped():
    from pcdsl.runtime.estimators import clamped_free_phase, one_hot
    _, model = build(ROOT / "examples" / "generative_classifier_mnist.pc")
    x = torch.rand((2, 784), dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    label = torch.tensor([3, 7])
    phase, = relaxation_trace(model, x, label, beta=0.1, steps=1, free_steps=6, label_state="c")
    states = clamped_free_phase(model, x, "c", one_hot(model, "c", label, x), 6)
    assert phase.total[-1] == pytest.approx(float(model.energy(x, states).mean()), rel=1e-9)
    assert all(change == 0.0 for change in phase.changes["c"][1:])


def test_a_runaway_relaxation_is_said_and_pictures_must_be_png(tmp_path):
    result = run("trace", ROOT / "tests" / "models" / "own_prediction_recurrent.pc", "--set", "relax_step=50",
                 "-o", tmp_path / "r.png")
    assert result.exit_code == 0 and "ran away" in result.output
    refused = run("trace", MODELS / "mlp_digits.pc", "-o", tmp_path / "r.svg")
    assert refused.exit_code == 1 and ".png" in refused.output


def test_a_run_without_training_accuracy_is_generative_even_with_a_test_accuracy(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "algorithm": "pcil", "train_loss": 0.01,
                                                        "train_acc": None, "test_loss": 0.01, "test_acc": 0.8,
                                                        "lr": 0.1}) + "\n")
    (tmp_path / "config.json").write_text('{"model": "not a dict", "config": []}')
    curves = run_curves(tmp_path)
    assert curves.generative and curves.model == tmp_path.name


@pytest.mark.parametrize("command", [["trace", str(MODELS / "mlp_digits.pc"), "-o", "never.png"],
                                     ["gradcheck", str(MODELS / "mlp_digits.pc")]], ids=["trace", "gradcheck"])
@pytest.mark.parametrize("beta", ["nan", "inf", "-inf", "0", "-0.1"])
def test_a_beta_that_is_not_a_positive_finite_number_is_refused(command, beta, tmp_path):
    result = run_cli(*command, f"--beta={beta}")
    assert result.exit_code == 2 and "is not a positive finite number" in result.output
