# ---------------------------------------------------------------------------------------------
# train(..., tensorboard=True): RUNDIR/tensorboard/ read back with TensorBoard's own readers.
# Oracles: metrics.jsonl (every numeric field of every epoch, at step = epoch, to float32
# precision, and nothing else); the raw events of every file (a resumed run adds each epoch
# once); the weights of a run without TensorBoard (logging changes nothing).
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import errno
import sys
import time

import pytest
import torch

pytest.importorskip("tensorboard")

from pcdsl.runtime.checkpoint import load_checkpoint
from pcdsl.runtime.metrics import read_metrics
from pcdsl.runtime.trainer import RunError
from tests.runtime.test_trainer import config, run, without_timing
from tests.support.events import assert_log_holds, raw_steps, scalars_in


def test_the_event_log_holds_the_metrics_of_every_epoch(tmp_path):
    out = tmp_path / "run"
    history = run(out, config(epochs=3), tensorboard=True)
    assert_log_holds(out / "tensorboard", read_metrics(out / "metrics.jsonl"))
    assert read_metrics(out / "metrics.jsonl") == history
    assert len(list((out / "tensorboard").glob("events.out.tfevents.*"))) == 1


def test_a_resumed_run_appends_its_epochs_once(tmp_path):
    out = tmp_path / "run"
    run(out, config(epochs=3), tensorboard=True, epochs=1)
    run(out, config(epochs=3), tensorboard=True, resume=True, epochs=2)
    run(out, config(epochs=3), tensorboard=True, resume=True)
    records = read_metrics(out / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert_log_holds(out / "tensorboard", records)
    raw = raw_steps(out / "tensorboard")
    assert set(raw.values()) == {1}                       # no epoch written twice, in any file
    assert sorted({step for _, step in raw}) == [1, 2, 3]
    assert len(list((out / "tensorboard").glob("events.out.tfevents.*"))) == 3


def test_turned_on_at_a_resume_the_log_starts_there(tmp_path):
    out = tmp_path / "run"
    run(out, config(epochs=2), epochs=1)
    assert not (out / "tensorboard").exists()
    run(out, config(epochs=2), tensorboard=True, resume=True)
    records = read_metrics(out / "metrics.jsonl")
    assert_log_holds(out / "tensorboard", [r for r in records if r["epoch"] == 2])


def test_epochs_trained_again_from_an_older_checkpoint_replace_their_events(tmp_path):
    # last.pt damaged and the newest epoch checkpoint gone: the run resumes from epoch 1 and
    # trains epoch 2 again; TensorBoard shows the new epoch 2 only (the resumed file's first
    # event purges the older file's from step 2 on)
    out = tmp_path / "run"
    run(out, config(epochs=2, lr=0.02), tensorboard=True)
    (out / "checkpoints" / "last.pt").write_bytes(b"damaged")
    (out / "checkpoints" / "epoch_002.pt").unlink()
    time.sleep(1.1)        # event files are named by the second they were opened: this one sorts last
    run(out, config(epochs=2, lr=0.02), tensorboard=True, resume=True)
    records = read_metrics(out / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [1, 2]
    assert_log_holds(out / "tensorboard", records)
    assert raw_steps(out / "tensorboard")["loss/train", 2] == 2      # the old one is there, hidden


def test_logging_changes_nothing_in_the_training(tmp_path):
    plain = run(tmp_path / "plain", config(epochs=2))
    logged = run(tmp_path / "logged", config(epochs=2), tensorboard=True)
    assert without_timing(logged) == without_timing(plain)
    a = load_checkpoint(tmp_path / "plain" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "logged" / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_a_failing_event_write_is_a_warning_and_the_run_goes_on(tmp_path, monkeypatch):
    from torch.utils.tensorboard import SummaryWriter

    def full_disk(self):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(SummaryWriter, "flush", full_disk)
    out, lines = tmp_path / "run", []
    history = run(out, config(epochs=2), tensorboard=True, lines=lines)
    assert [r["epoch"] for r in history] == [1, 2] == [r["epoch"] for r in read_metrics(out / "metrics.jsonl")]
    assert (out / "checkpoints" / "epoch_002.pt").exists()
    warnings = [line for line in lines if "TensorBoard" in line]
    assert len(warnings) == 1 and "No space left on device" in warnings[0] and "epoch 1" in warnings[0]


def test_without_tensorboard_installed_the_run_is_refused_before_anything(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)     # import fails
    out = tmp_path / "run"
    with pytest.raises(RunError, match=r'pip install "pcdsl\[tensorboard\]"'):
        run(out, config(epochs=1), tensorboard=True)
    assert not out.exists()


def test_only_what_the_run_wrote_is_read(tmp_path):
    # the epoch is the step, strings and nulls are left out: a generative-style record
    # (train_acc null) has no top-1 training accuracy tag
    from pcdsl.runtime.tensorboard_log import scalars
    assert scalars({"epoch": 3, "algorithm": "pcil", "train_loss": 0.5, "train_acc": None, "lr": 1,
                    "relax/energy/free": 2.5, "flag": True}) == {"loss/train": 0.5, "lr": 1.0,
                                                                 "relax/energy/free": 2.5}
    assert scalars_in(tmp_path) == {}
