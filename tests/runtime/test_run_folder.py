# ---------------------------------------------------------------------------------------------
# A run folder belongs to one run at a time and to nothing else (issue #7).
# Oracles: the folder's files before and after (hashes), and the refusals' messages.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from pcdsl.runtime import trainer as trainer_module
from pcdsl.runtime.runfolder import LOCK_FILE, held_run_folder
from pcdsl.runtime.trainer import RunError
from tests.runtime.test_trainer import config, run, tree
from tests.support.fake_data import gaussian_clusters


def test_a_second_run_on_a_held_folder_is_refused(tmp_path):
    out = tmp_path / "run"
    run(out, config(epochs=1))
    before = tree(out)
    with held_run_folder(out):           # another trainer holds it (flock: per open file, so in-process too)
        with pytest.raises(RunError, match=rf"in use by another run \(pcdsl train, pid {os.getpid()}"):
            run(out, config(epochs=2), resume=True)
    assert tree(out) == before
    run(out, config(epochs=2), resume=True)          # released: the run goes on


@pytest.mark.parametrize("target", ["/", "~", ".", ".."])
def test_folders_that_are_not_a_runs_own_are_refused(tmp_path, monkeypatch, target):
    work = tmp_path / "project" / "here"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path / "project"))
    before = tree(tmp_path)
    with pytest.raises(RunError, match="a run writes model.py"):
        run(Path(target).expanduser(), config(epochs=1))
    assert tree(tmp_path) == before


def test_a_file_as_output_folder_is_refused(tmp_path):
    (tmp_path / "notes").write_text("mine")
    with pytest.raises(RunError, match="is a file, not a folder"):
        run(tmp_path / "notes", config(epochs=1))
    assert (tmp_path / "notes").read_text() == "mine"


def test_a_file_of_the_models_name_is_never_overwritten(tmp_path):
    out = tmp_path / "models"
    out.mkdir()
    (out / "tiny.pc").write_text("the user's own model")
    with pytest.raises(RunError, match="already holds a file named tiny.pc"):
        run(out, config(epochs=1))
    assert (out / "tiny.pc").read_text() == "the user's own model"
    assert sorted(p.name for p in out.iterdir()) == sorted(["tiny.pc", LOCK_FILE])


def test_a_run_that_fails_before_writing_leaves_no_folder(tmp_path):
    out = tmp_path / "never"
    with pytest.raises(RunError, match="nothing to resume"):
        run(out, config(epochs=1), resume=True)
    assert not out.exists()


def test_a_full_disk_is_a_user_error_that_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    out = tmp_path / "run"
    data = gaussian_clusters(n_train=128, n_test=64)
    run(out, config(epochs=2), data, epochs=1)
    last = (out / "checkpoints" / "last.pt").read_bytes()

    def full(path, payload):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    monkeypatch.setattr(trainer_module, "save_checkpoint", full)
    with pytest.raises(RunError, match=r"cannot save epoch 2 .*No space left on device.*still holds epoch 1"):
        run(out, config(epochs=2), data, resume=True)
    assert (out / "checkpoints" / "last.pt").read_bytes() == last


def test_half_written_files_of_a_killed_run_are_removed_on_resume(tmp_path):
    out = tmp_path / "run"
    run(out, config(epochs=1))
    stale = [out / "checkpoints" / ".epoch_002.pt.tmp-999999", out / ".metrics.jsonl.tmp-999998"]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    (out / "checkpoints" / "notes.tmp").write_text("not ours")
    run(out, config(epochs=2), resume=True)
    assert not any(path.exists() for path in stale)
    assert (out / "checkpoints" / "notes.tmp").read_text() == "not ours"


def test_an_output_folder_that_cannot_be_made_is_a_user_error(tmp_path):
    (tmp_path / "notes").write_text("mine")
    with pytest.raises(RunError, match=r"cannot use .*notes/run for the run: Not a directory"):
        run(tmp_path / "notes" / "run", config(epochs=1))
    assert (tmp_path / "notes").read_text() == "mine"


def test_unreadable_data_is_found_before_the_first_epoch_and_leaves_no_folder(tmp_path):
    from pcdsl.data import DataError

    class CheckedSplits:
        """Fake data whose up-front check finds a corrupt file (pcdsl.data.DataSplits does it
        for image folders: every test header, a decoded sample of each split)."""
        def __init__(self, inner):
            self.__dict__.update(vars(inner))

        def check_readable(self):
            raise DataError("val/n01440764/x.JPEG: the image file is truncated")

    out = tmp_path / "run"
    with pytest.raises(DataError, match="x.JPEG"):
        run(out, config(epochs=1), CheckedSplits(gaussian_clusters(64, 32)))
    assert not out.exists()
