# ---------------------------------------------------------------------------------------------
# The trainer on a tiny synthetic data set: what a run writes, seeding, exact resume, refusing to
# overwrite, divergence and Ctrl-C (each leaving the last good checkpoint as it was).
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import hashlib
import os
import signal
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import torch

import pcdsl.data
from pcdsl.ir.config import TrainConfig
from pcdsl.runtime.checkpoint import load_checkpoint
from pcdsl.runtime.loading import load_model_class
from pcdsl.runtime.metrics import read_metrics
from pcdsl.runtime.trainer import (RunError, TrainingInterrupted, build_model, evaluate_run, train,
                                   weights_sha256)
from pcdsl.runtime.runfolder import LOCK_FILE
from tests.support.fake_data import ArraySplit, gaussian_clusters
from tests.support.sources import handwritten_source

SOURCE = handwritten_source((16, 24, 24, 10))
PC_TEXT = "model tiny_mlp { }\n"
TIMING_KEYS = {"seconds", "train_seconds", "eval_seconds", "train_examples_per_s"}


def config(**changes) -> TrainConfig:
    base = dict(algorithm="ep", beta=0.05, steps=4, lr=0.05, momentum=0.9, nesterov=True,
                weight_decay=1e-4, batch=32, eval_batch=64, epochs=2, seed=3)
    return TrainConfig(**{**base, **changes})


def run(out: Path, cfg: TrainConfig, data=None, **kwargs) -> list[dict]:
    data = data or gaussian_clusters(n_train=128, n_test=64)
    lines = kwargs.pop("lines", [])
    return train(SOURCE, PC_TEXT, "tiny.pc", cfg, data, out, log=lines.append, **kwargs)


def tree(folder: Path) -> dict[str, str]:
    """Every file under `folder` with a hash of its bytes (but the run lock's note of its holder)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != LOCK_FILE}


def without_timing(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in record.items() if k not in TIMING_KEYS} for record in records]


def test_a_run_trains_and_writes_its_folder(tmp_path):
    out = tmp_path / "run"
    lines = []
    history = run(out, config(epochs=3, lr=0.2), gaussian_clusters(n_train=256, n_test=64),
                  lines=lines, data_spec="clusters")
    assert set(tree(out)) == {"model.py", "tiny.pc", "config.json", "metrics.jsonl",
                              "checkpoints/epoch_001.pt", "checkpoints/epoch_002.pt",
                              "checkpoints/epoch_003.pt", "checkpoints/last.pt"}
    assert (out / "model.py").read_text() == SOURCE and (out / "tiny.pc").read_text() == PC_TEXT
    records = read_metrics(out / "metrics.jsonl")
    assert records == history and [r["epoch"] for r in records] == [1, 2, 3]
    for record in records:
        assert {"epoch", "train_loss", "train_acc", "test_loss", "test_acc", "test_top5", "lr",
                "seconds", "algorithm"} <= set(record)
        assert record["algorithm"] == "ep" and 0 <= record["test_acc"] <= 1
    assert records[-1]["test_acc"] > 0.7          # ten clusters: chance is 0.1
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    assert sum(line.startswith("epoch ") for line in lines) == 3
    last = load_checkpoint(out / "checkpoints" / "last.pt")
    assert last["epoch"] == 3 and last["step"] == 3 * 8 and last["metrics"] == history
    recorded = __import__("json").loads((out / "config.json").read_text())
    assert recorded["config"]["beta"] == 0.05 and recorded["data"]["spec"] == "clusters"
    assert recorded["model"]["pc_file"] == "tiny.pc" and recorded["pcdsl_version"]


def test_top5_is_left_out_for_five_classes_or_fewer(tmp_path):
    source = handwritten_source((16, 12, 4))
    data = gaussian_clusters(n_train=64, n_test=32, num_classes=4)
    history = train(source, PC_TEXT, "four.pc", config(epochs=1), data, tmp_path / "run", log=lambda _: None)
    assert "test_top5" not in history[0]


def test_ep_and_bp_start_from_the_same_weights_and_batches(tmp_path):
    data = gaussian_clusters(n_train=128, n_test=64)
    run(tmp_path / "ep", config(epochs=1), data)
    run(tmp_path / "bp", config(epochs=1, algorithm="bp"), data)
    recorded = [__import__("json").loads((tmp_path / name / "config.json").read_text())
                for name in ("ep", "bp")]
    expected = weights_sha256(build_model(load_model_class(SOURCE), config()))
    assert recorded[0]["initial_weights_sha256"] == recorded[1]["initial_weights_sha256"] == expected
    ep_first, bp_first = (served for served in data.train.served)
    assert ep_first[:2] == bp_first[:2] == (3, 0)          # (seed, epoch) passed to batches()
    assert torch.equal(ep_first[2], bp_first[2]) and torch.equal(ep_first[3], bp_first[3])


def test_ep_tracks_bp_on_the_same_run(tmp_path):
    # small beta, enough steps: the EP estimate is close to the BP gradient, so the runs agree
    ep = run(tmp_path / "ep", config(epochs=2, beta=0.01, steps=8))
    bp = run(tmp_path / "bp", config(epochs=2, algorithm="bp"))
    for e, b in zip(ep, bp):
        assert e["train_loss"] == pytest.approx(b["train_loss"], rel=1e-2)


@pytest.mark.parametrize("scheme", ["centered", "random"])
def test_resume_continues_exactly(tmp_path, scheme):
    cfg = config(epochs=3, scheme=scheme, min_lr=1e-3)
    straight = run(tmp_path / "straight", cfg)
    run(tmp_path / "split", cfg, epochs=1)
    lines = []
    resumed = run(tmp_path / "split", cfg, resume=True, lines=lines)
    assert any("resuming" in line for line in lines)
    assert without_timing(resumed) == without_timing(straight)
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    assert without_timing(read_metrics(tmp_path / "split" / "metrics.jsonl")) == without_timing(straight)


def test_resume_of_a_finished_run_does_nothing(tmp_path):
    out = tmp_path / "run"
    first = run(out, config(epochs=1))
    before = tree(out)
    assert run(out, config(epochs=1), resume=True) == first
    assert tree(out) == before


def test_an_existing_run_is_not_touched_without_resume(tmp_path):
    out = tmp_path / "run"
    run(out, config(epochs=1))
    before = tree(out)
    with pytest.raises(RunError, match="--resume") as caught:
        run(out, config(epochs=1))
    assert "Nothing was changed" in str(caught.value)
    assert tree(out) == before


def test_unrelated_files_in_the_folder_are_fine(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    run(out, config(epochs=1))
    assert (out / "notes.txt").read_text() == "mine"


def test_resume_refuses_a_changed_model(tmp_path):
    out = tmp_path / "run"
    run(out, config(epochs=1))
    before = tree(out)
    with pytest.raises(RunError, match="model changed"):
        train(handwritten_source((16, 20, 10)), PC_TEXT, "tiny.pc", config(), gaussian_clusters(128, 64),
              out, resume=True, log=lambda _: None)
    assert tree(out) == before


def test_resume_refuses_a_different_config_but_allows_more_epochs(tmp_path):
    out = tmp_path / "run"
    run(out, config(epochs=1))
    before = tree(out)
    with pytest.raises(RunError, match=r"lr: 0.05 -> 0.1") as caught:
        run(out, config(epochs=1, lr=0.1, beta=0.02), resume=True)
    assert "beta: 0.05 -> 0.02" in str(caught.value)
    assert tree(out) == before
    assert [r["epoch"] for r in run(out, config(epochs=2, eval_batch=16), resume=True)] == [1, 2]


def test_resume_refuses_other_data(tmp_path):
    out = tmp_path / "run"
    run(out, config(epochs=1))
    with pytest.raises(RunError, match="trained on"):
        run(out, config(epochs=2), data=gaussian_clusters(128, 64, seed=9), resume=True)


def test_resume_needs_a_run(tmp_path):
    with pytest.raises(RunError, match="nothing to resume"):
        run(tmp_path / "empty", config(), resume=True)


def test_wrong_number_of_classes(tmp_path):
    with pytest.raises(RunError, match="12 classes but the model .* outputs 10"):
        run(tmp_path / "run", config(), data=gaussian_clusters(64, 32, num_classes=12))
    assert not (tmp_path / "run").exists()


def test_wrong_input_shape(tmp_path):
    with pytest.raises(RunError, match=r"shape \[8\] but the model .* takes \[16\]"):
        run(tmp_path / "run", config(), data=gaussian_clusters(64, 32, dim=8))


def test_divergence_stops_with_epoch_and_batch_and_keeps_the_last_good_checkpoint(tmp_path):
    # one batch per epoch; lr = 1000 makes the first update enormous, so epoch 2's relaxation
    # runs away
    out = tmp_path / "run"
    data = gaussian_clusters(n_train=32, n_test=32)
    cfg = config(epochs=3, lr=1000.0, schedule="constant")
    with pytest.raises(RunError) as caught:
        run(out, cfg, data)
    message = str(caught.value)
    assert "diverged at epoch 2, batch 1 of 1" in message
    assert "smaller lr (now 1000)" in message and "beta (now 0.05)" in message
    assert "epoch 1" in message and "last.pt" in message
    checkpoints = out / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["epoch_001.pt", "last.pt"]
    assert load_checkpoint(checkpoints / "last.pt")["epoch"] == 1
    assert len(read_metrics(out / "metrics.jsonl")) == 1


def test_huge_beta_diverges_in_the_first_epoch(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RunError, match="diverged at epoch 1, batch 1 of 4.*no checkpoint was written"):
        run(out, config(beta=1e6))
    assert not (out / "checkpoints").exists()


@dataclass
class InterruptedSplit:
    """Delegates to `inner` but raises KeyboardInterrupt at one (epoch, batch)."""
    inner: ArraySplit
    epoch: int
    batch: int

    def __len__(self):
        return len(self.inner)

    signal: int | None = None     # send this signal to the process instead of raising

    def batches(self, batch_size, *, shuffle, seed=0, epoch=0, start=0, shard=None):
        items = self.inner.batches(batch_size, shuffle=shuffle, seed=seed, epoch=epoch, start=start, shard=shard)
        for number, item in enumerate(items, start=start):
            if (epoch, number) == (self.epoch, self.batch):
                if self.signal is None:
                    raise KeyboardInterrupt
                os.kill(os.getpid(), self.signal)
            yield item


def test_ctrl_c_keeps_the_last_completed_epoch_and_resume_finishes_it(tmp_path):
    data = gaussian_clusters(n_train=128, n_test=64)
    cfg = config(epochs=2)
    straight = run(tmp_path / "straight", cfg, data)
    interrupted = replace(data, train=InterruptedSplit(data.train, epoch=1, batch=2))
    lines = []
    with pytest.raises(TrainingInterrupted) as caught:
        run(tmp_path / "run", cfg, interrupted, lines=lines)
    assert "interrupted during epoch 2" in str(caught.value) and "--resume" in str(caught.value)
    assert [r["epoch"] for r in caught.value.metrics] == [1]
    assert lines[-1] == str(caught.value)
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["epoch"] == 1
    resumed = run(tmp_path / "run", cfg, data, resume=True)
    assert without_timing(resumed) == without_timing(straight)


def test_evaluate_run_rebuilds_the_model(tmp_path, monkeypatch):
    out = tmp_path / "run"
    data = gaussian_clusters(n_train=128, n_test=64)
    history = run(out, config(epochs=2), data, data_spec="clusters")
    result = evaluate_run(out, data=data, source=SOURCE)     # a hand-written module: given, not read from the run
    assert result["epoch"] == 2 and result["examples"] == 64 and result["same_module"]
    assert result["acc"] == history[-1]["test_acc"] and result["top5"] == history[-1]["test_top5"]
    assert result["loss"] == pytest.approx(history[-1]["test_loss"])
    first = evaluate_run(out / "checkpoints" / "epoch_001.pt", data=data, source=SOURCE)
    assert first["epoch"] == 1 and first["acc"] == history[0]["test_acc"]

    asked = []
    def fake_loader(spec, input_shape, cfg, **options):
        asked.append(spec)
        return data
    monkeypatch.setattr(pcdsl.data, "load_data_for", fake_loader)
    evaluate_run(out, source=SOURCE)                 # the spec recorded in the run
    evaluate_run(out, "other-spec", source=SOURCE)   # or the one given
    assert asked == ["clusters", "other-spec"]


def test_evaluate_run_errors(tmp_path):
    out = tmp_path / "run"
    data = gaussian_clusters(n_train=64, n_test=32)
    with pytest.raises(RunError, match="has no checkpoints/last.pt"):
        evaluate_run(tmp_path, data=data)
    run(out, config(epochs=1), data)
    with pytest.raises(RunError, match="did not record which data"):
        evaluate_run(out, source=SOURCE)
    # the run's module is regenerated from its .pc, never read from model.py: this one's .pc is
    # not a model
    with pytest.raises(RunError, match="does not compile with the installed pcdsl"):
        evaluate_run(out, data=data)
    with pytest.raises(RunError, match="does not fit the weights"):
        evaluate_run(out, data=data, source=handwritten_source((16, 20, 10)))


def test_resume_falls_back_to_the_newest_readable_epoch_checkpoint(tmp_path):
    """last.pt missing, or damaged (it is a copy, not a link, so the epoch file survives): the
    newest epoch checkpoint that reads is resumed, the log says which, and the result equals an
    uninterrupted run."""
    data = gaussian_clusters(n_train=128, n_test=64)
    straight = run(tmp_path / "straight", config(epochs=3), data)
    for damage in ("missing", "corrupt"):
        out = tmp_path / damage
        run(out, config(epochs=3), data, epochs=2)
        last = out / "checkpoints" / "last.pt"
        if damage == "missing":
            last.unlink()
        else:
            last.write_bytes(last.read_bytes()[:100])
        epoch_two = (out / "checkpoints" / "epoch_002.pt").read_bytes()
        lines = []
        resumed = run(out, config(epochs=3), data, resume=True, lines=lines)
        assert any("resuming from" in line and "epoch_002.pt" in line for line in lines), lines
        assert without_timing(resumed) == without_timing(straight)
        assert (out / "checkpoints" / "epoch_002.pt").read_bytes() == epoch_two


def test_resume_never_restarts_a_run_with_history(tmp_path):
    """Every checkpoint unreadable, or none left while metrics.jsonl records epochs: refused, and
    nothing in the folder changes."""
    data = gaussian_clusters(n_train=128, n_test=64)
    out = tmp_path / "run"
    run(out, config(epochs=2), data)
    for path in (out / "checkpoints").glob("*.pt"):
        path.write_bytes(b"damaged")
    before = tree(out)
    with pytest.raises(RunError, match="none of its checkpoints can be read"):
        run(out, config(epochs=2), data, resume=True)
    assert tree(out) == before
    for path in (out / "checkpoints").glob("*.pt"):
        path.unlink()
    before = tree(out)
    with pytest.raises(RunError, match="records trained epochs"):
        run(out, config(epochs=2), data, resume=True)
    assert tree(out) == before


def test_a_mid_epoch_checkpoint_resumes_at_its_batch_exactly(tmp_path):
    """checkpoint_steps=3: killed (Ctrl-C) at batch 5 of epoch 2, the run loses at most the 2
    steps since the checkpoint at batch 3; resumed, its weights and metrics equal a run never
    stopped."""
    data = gaussian_clusters(n_train=256, n_test=64)
    cfg = config(epochs=2, checkpoint_steps=3)
    straight = run(tmp_path / "straight", cfg, data)
    with pytest.raises(TrainingInterrupted):
        run(tmp_path / "run", cfg, replace(data, train=InterruptedSplit(data.train, epoch=1, batch=5)))
    inside = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert inside["epoch"] == 1 and inside["position"]["epoch"] == 2 and inside["position"]["batches"] == 3
    lines = []
    resumed = run(tmp_path / "run", cfg, data, resume=True, lines=lines)
    assert any("batch 3 of epoch 2" in line for line in lines), lines
    ours = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["model"]
    theirs = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    for a, b in zip(resumed, straight):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)
        assert {k: v for k, v in a.items() if k not in TIMING_KEYS | {"train_loss"}} == \
            {k: v for k, v in b.items() if k not in TIMING_KEYS | {"train_loss"}}


@pytest.mark.parametrize("kind", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_run_with_a_checkpoint_where_it_stopped(tmp_path, kind):
    data = gaussian_clusters(n_train=256, n_test=64)
    cfg = config(epochs=2)
    straight = run(tmp_path / "straight", cfg, data)
    stopping = replace(data, train=InterruptedSplit(data.train, epoch=1, batch=4, signal=kind))
    with pytest.raises(TrainingInterrupted) as caught:
        run(tmp_path / "run", cfg, stopping)
    assert caught.value.signal == signal.Signals(kind).name and "--resume" in str(caught.value)
    inside = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["position"]
    assert (inside["epoch"], inside["batches"]) == (2, 5)       # the step under way when it came finished
    assert signal.getsignal(kind) is not None and signal.getsignal(signal.SIGTERM) != signal.SIG_IGN
    resumed = run(tmp_path / "run", cfg, data, resume=True)
    ours = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["model"]
    theirs = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    assert [r["test_acc"] for r in resumed] == [r["test_acc"] for r in straight]
