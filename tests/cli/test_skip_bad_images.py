# ---------------------------------------------------------------------------------------------
# --skip-bad-images (issue #7): unreadable image files are left out of their batches and counted
# instead of ending the run. Oracles: hand counts (one damaged training and one damaged test file
# are left out once per epoch), and an evaluation that skips the damaged test file equals one on
# the same folder with that file deleted.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from pcdsl.cli.main import main
from pcdsl.runtime.trainer import evaluate_run

MODEL = """model tiny_images {
  input  x : [3, 8, 8]
  label  y : [2]

  state  h : [16] >= 0 ~ relu(dense(flatten(x), 16) + bias)
  output o : [2]       ~ dense(h, 2) + bias

  cost cross_entropy(o, y)
}

train {
  ep(scheme=centered, beta=0.05, steps=8)
  batch 4
  eval_batch 4
  epochs 2
}
"""
BAD_TRAIN, BAD_TEST = "train/b/005.png", "test/a/002.png"


@pytest.fixture
def folders(tmp_path):
    """(a folder with one unreadable training and one unreadable test file, the same folder
    without those two files, the model file)."""
    rng = np.random.default_rng(3)
    damaged = tmp_path / "damaged"
    for split, count in (("train", 12), ("test", 5)):
        for label in ("a", "b"):
            for k in range(count):
                path = damaged / split / label / f"{k:03d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                base = 60 if label == "a" else 190
                Image.fromarray(rng.integers(base - 50, base + 50, size=(8, 8, 3), dtype=np.uint8)).save(path)
    clean = tmp_path / "clean"
    shutil.copytree(damaged, clean)
    for name in (BAD_TRAIN, BAD_TEST):
        (damaged / name).write_bytes(b"\x89PNG\r\n\x1a\n cut short")
        (clean / name).unlink()
    model = tmp_path / "tiny_images.pc"
    model.write_text(MODEL)
    return damaged, clean, model


def _train(model, data, out, *extra):
    return CliRunner().invoke(main, ["train", str(model), "--data", str(data), "--out", str(out),
                                     "--workers", "0", *extra])


def test_without_the_flag_the_run_stops_before_training_naming_the_file(folders, tmp_path):
    damaged, _, model = folders
    result = _train(model, damaged, tmp_path / "run")
    assert result.exit_code == 1
    assert BAD_TEST in result.output and "could not read image" in result.output
    assert not (tmp_path / "run").exists()


def test_skipped_files_are_counted_every_epoch_and_named(folders, tmp_path):
    damaged, clean, model = folders
    result = _train(model, damaged, tmp_path / "run", "--skip-bad-images")
    assert result.exit_code == 0, result.output
    assert "2 unreadable, left out of their batches" in result.output
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [(m["skipped_train_examples"], m["skipped_test_examples"]) for m in metrics] == [(1, 1), (1, 1)]
    assert result.output.count("skipped 1 training and 1 test examples") == 2
    # the evaluation that skips the damaged file is the evaluation without it
    skipping = evaluate_run(tmp_path / "run", str(damaged), skip_unreadable=True)
    without = evaluate_run(tmp_path / "run", str(clean))
    assert (skipping["examples"], skipping["skipped"], without["examples"]) == (9, 1, 9)
    assert skipping["loss"] == pytest.approx(without["loss"], rel=1e-6) and skipping["acc"] == without["acc"]
    refused = CliRunner().invoke(main, ["eval", str(tmp_path / "run"), "--data", str(damaged)])
    assert refused.exit_code == 1 and BAD_TEST in refused.output
    shown = CliRunner().invoke(main, ["eval", str(tmp_path / "run"), "--data", str(damaged), "--skip-bad-images"])
    assert shown.exit_code == 0 and "skipped=1" in shown.output
