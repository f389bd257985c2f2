# ---------------------------------------------------------------------------------------------
# `pcdsl train --tensorboard --diagnostics` on the digits demo, end to end.
# Oracles: metrics.jsonl for the event log (read back by TensorBoard's EventAccumulator); for
# the relaxation numbers, the generated module's fast path (free_phase, nudged_phase, factors:
# the peeled, carried relaxation EP trains with, not the relax() the diagnostics call) in
# float64 at each epoch's checkpoint; `pcdsl plot` still reads the run.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import json
import sys

import pytest
import torch
from click.testing import CliRunner

from helpers import MODELS
from pcdsl.cli.main import main
from pcdsl.data import load_data_for
from pcdsl.runtime.trainer import load_run


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result


def test_without_tensorboard_installed_train_is_refused_at_once(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)     # import fails
    out = tmp_path / "run"
    result = run("train", MODELS / "mlp_digits.pc", "--epochs", "1", "--limit", "100", "--out", out, "--tensorboard")
    assert result.exit_code == 1
    assert 'error: --tensorboard needs the tensorboard package' in result.output
    assert 'pip install "pcdsl[tensorboard]"' in result.output
    assert not out.exists() and "epoch" not in result.output


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    pytest.importorskip("tensorboard")
    out = tmp_path_factory.mktemp("live") / "run"
    result = run("train", MODELS / "mlp_digits.pc", "--epochs", "2", "--limit", "200", "--out", out,
                 "--tensorboard", "--diagnostics")
    assert result.exit_code == 0, result.output
    return out, [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_the_event_log_holds_metrics_jsonl(digits_run):
    from support.events import assert_log_holds
    out, records = digits_run
    assert [r["epoch"] for r in records] == [1, 2]
    assert_log_holds(out / "tensorboard", records)
    assert any(tag.startswith("relax/") for tag in records[0])


@torch.no_grad()
def test_the_relaxation_numbers_are_those_of_the_ep_step_s_own_phases(digits_run):
    out, records = digits_run
    for record in records:
        loaded = load_run(out / "checkpoints" / f"epoch_{record['epoch']:03d}.pt")
        model, config = loaded.model.double(), loaded.config
        data = load_data_for("digits", (64,), config, augment=False, limit_train=200, limit_test=200)
        x, y = next(iter(data.test.batches(config.batch, shuffle=False)))       # the fixed batch
        x = x.double()
        free, carry = model.free_phase(x)
        expected = {"relax/energy/free": float(model.factors(x, free)["energy"].mean())}
        for name, beta in (("nudged_pos", config.beta), ("nudged_neg", -config.beta)):
            last, factors = model.nudged_phase(x, free, carry, y, beta, config.steps)
            before, _ = model.nudged_phase(x, free, carry, y, beta, config.steps - 1)
            expected[f"relax/energy/{name}"] = float(factors["energy"].mean())
            for state in model.STATES:
                expected[f"relax/change/{name}/{state}"] = float((last[state] - before[state]).pow(2).mean().sqrt())
        measured = {k: v for k, v in record.items() if k.startswith("relax/")}
        assert set(measured) == set(expected)
        assert measured["relax/energy/free"] == 0.0                   # a PCN's feedforward pass has no error
        for key, value in expected.items():
            # float32 states moving by ~1e-5 per iteration at the end: their change is resolved to ~1e-3
            assert measured[key] == pytest.approx(value, rel=2e-3 if "/change/" in key else 1e-5), key
        assert all(1e-8 < measured[k] < 1e-2 for k in measured if "/change/" in k)


def test_plot_reads_a_run_with_diagnostics(digits_run, tmp_path):
    pytest.importorskip("matplotlib")
    out, records = digits_run
    result = run("plot", out, "-o", tmp_path / "curves.png", "--csv", tmp_path / "curves.csv")
    assert result.exit_code == 0, result.output
    rows = (tmp_path / "curves.csv").read_text().splitlines()[1:]
    assert len(rows) == 2 * 6 and not any("relax" in row for row in rows)   # its six series, per epoch
