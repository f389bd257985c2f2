# ---------------------------------------------------------------------------------------------
# Nothing from a run folder or a checkpoint is executed: `pcdsl eval` regenerates the module
# from the run's .pc text and --set items with the installed compiler.
# Oracles: a file that a tampered model.py would create (it must not exist), the run's own
# recorded test accuracy, and the refusals' messages.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import json

import pytest

from helpers import run_cli
from pcdsl.runtime.checkpoint import load_checkpoint, save_checkpoint

SIZED = """model sized {
  size H = 16
  input  x : [64]
  label  y : [10]

  state  h : [H] >= 0 ~ relu(dense(x, H) + bias)
  output o : [10]     ~ dense(h, 10) + bias

  cost cross_entropy(o, y)
}

train {
  epochs 1
  batch 32
}
"""


run = run_cli


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run of a model whose hidden size came from --set (the regeneration must use it)."""
    folder = tmp_path_factory.mktemp("trust")
    (folder / "sized.pc").write_text(SIZED)
    out = folder / "run"
    result = run("train", folder / "sized.pc", "--set", "H=24", "--out", out, "--limit", "200")
    assert result.exit_code == 0, result.output
    accuracy = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["test_acc"]
    return out, accuracy


def _payload(path: str) -> str:
    return f"import pathlib\npathlib.Path({path!r}).write_text('ran')\n"


def _rewrite_checkpoint(out, change):
    last = out / "checkpoints" / "last.pt"
    checkpoint = load_checkpoint(last)
    change(checkpoint)
    last.unlink()
    save_checkpoint(last, checkpoint)


def test_a_tampered_model_py_is_not_executed(trained, tmp_path):
    out, accuracy = trained
    marker = tmp_path / "pwned"
    original = (out / "model.py").read_text()
    try:
        (out / "model.py").write_text(_payload(str(marker)) + original)
        result = run("eval", out, "--json", "--limit", "200")
        assert result.exit_code == 0, result.output
        assert not marker.exists()
        metrics = json.loads(result.stdout)
        assert metrics["acc"] == pytest.approx(accuracy) and metrics["same_module"]
    finally:
        (out / "model.py").write_text(original)


def test_checkpoints_without_their_model_file_fall_back_to_the_run_folder(tmp_path, trained):
    out, accuracy = trained
    copy = tmp_path / "old_run"
    import shutil
    shutil.copytree(out, copy)
    _rewrite_checkpoint(copy, lambda c: c.pop("pc"))          # as pcdsl wrote them before recording it
    result = run("eval", copy, "--json", "--limit", "200")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["acc"] == pytest.approx(accuracy)

    record = json.loads((copy / "config.json").read_text())
    record["model"]["pc_file"] = "../../sized.pc"               # outside the run folder
    (copy / "config.json").write_text(json.dumps(record))
    refused = run("eval", copy)
    assert refused.exit_code == 1 and "not a file of the run folder" in refused.output


def test_a_model_file_that_no_longer_fits_the_weights_is_refused(tmp_path, trained):
    out, _ = trained
    copy = tmp_path / "changed"
    import shutil
    shutil.copytree(out, copy)
    _rewrite_checkpoint(copy, lambda c: c["pc"].update(sets=[]))   # H back to 16: other shapes
    result = run("eval", copy)
    assert result.exit_code == 1
    assert "does not fit the weights" in result.output and "sha256" in result.output
