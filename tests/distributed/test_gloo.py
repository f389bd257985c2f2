# ---------------------------------------------------------------------------------------------
# Several processes train one run (issue #7), on the CPU with the gloo backend, started by torch's
# own launcher (torchrun, or `pcdsl train --nproc`). Oracle: ONE process with the whole batch.
# Two processes with batch 2B each take B examples of every batch; after several steps their
# weights must be identical to each other (one reduced gradient, one update) and equal to the
# single process's within float rounding (the reduction sums in another order), for EP and BP.
# A run stopped by SIGTERM under two processes resumes under two to the same weights, bit for bit,
# as one never stopped.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pcdsl.runtime.checkpoint import load_checkpoint

SCRIPT = Path(__file__).resolve().parents[1] / "support" / "train_under_torchrun.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _torchrun(nproc: int, *arguments: str, env=None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               str(SCRIPT), *arguments]
    return subprocess.run(command, env=env or ENV, capture_output=True, text=True, timeout=300)


def _weights(path: Path) -> dict:
    return torch.load(path, weights_only=True)


@pytest.mark.parametrize("algorithm, scheme", [("ep", "random"), ("bp", "centered")])
def test_two_processes_with_half_batches_equal_one_with_the_whole_batch(tmp_path, algorithm, scheme):
    # 129 examples in batches of 32: the last batch holds one, so rank 1 idles through it; the
    # random EP scheme is drawn on every rank, which must stay in step to agree with one process
    sets = [f"algorithm={algorithm}", f"scheme={scheme}", "batch=32", "epochs=2", "lr=0.05"]
    env = {**ENV, "PCDSL_TEST_LIMIT": "129"}
    runs = {}
    for nproc in (1, 2):
        ranks = tmp_path / f"ranks{nproc}"
        ranks.mkdir()
        done = _torchrun(nproc, "mlp_digits", str(tmp_path / f"run{nproc}"), str(ranks), *sets, env=env)
        assert done.returncode == 0, done.stderr
        runs[nproc] = done, ranks
    one = _weights(runs[1][1] / "rank0.pt")
    rank0, rank1 = _weights(runs[2][1] / "rank0.pt"), _weights(runs[2][1] / "rank1.pt")
    assert all(torch.equal(rank0[name], rank1[name]) for name in one), "the ranks' weights differ"
    for name, expected in one.items():
        assert not torch.equal(expected, load_checkpoint(tmp_path / "run1" / "checkpoints" / "epoch_001.pt")["model"][name])
        torch.testing.assert_close(rank0[name], expected, rtol=1e-5, atol=1e-6)
    # rank 0 alone wrote the run folder, and it records what one process records
    saved = load_checkpoint(tmp_path / "run2" / "checkpoints" / "last.pt")
    assert saved["step"] == 2 * 5 and saved["processes"] == 2
    assert all(torch.equal(saved["model"][name], rank0[name]) for name in rank0)
    metrics = [load_checkpoint(tmp_path / f"run{n}" / "checkpoints" / "last.pt")["metrics"][-1] for n in (1, 2)]
    for key in ("train_loss", "train_acc", "test_loss", "test_acc"):
        assert metrics[1][key] == pytest.approx(metrics[0][key], rel=1e-5), key
    assert runs[2][0].stderr.count("epoch 2/2") == 1, "only rank 0 logs"


MODEL = """model digits_mlp {
  input  x  : [64]
  label  y  : [10]

  state  h1 : [128] >= 0 ~ relu(dense(x, 128) + bias)
  output o  : [10]       ~ dense(h1, 10) + bias

  cost cross_entropy(o, y)
}

train {
  ep(scheme=centered, beta=0.05, steps=12)
  sgd(lr=0.02, momentum=0.9)
  batch 16
  epochs 6
  checkpoint_steps 5
}
"""


def _nproc_train(model: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pcdsl", "train", str(model), "--nproc", "2", "--out", str(out), *extra]


def _start_until_a_checkpoint(model: Path, out: Path) -> subprocess.Popen:
    """`pcdsl train --nproc 2` in a session of its own, once it has written a checkpoint."""
    process = subprocess.Popen(_nproc_train(model, out), env=ENV, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while not (out / "checkpoints" / "last.pt").exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    return process


def test_sigterm_under_two_processes_then_resume_is_bit_identical(tmp_path):
    model = tmp_path / "digits_mlp.pc"
    model.write_text(MODEL)
    straight = subprocess.run(_nproc_train(model, tmp_path / "straight"), env=ENV, capture_output=True,
                              text=True, timeout=300)
    assert straight.returncode == 0, straight.stderr
    out = tmp_path / "stopped"
    # what a scheduler does: SIGTERM to every process of the job (launcher and trainers)
    process = _start_until_a_checkpoint(model, out)
    assert process.poll() is None, "the run ended before it could be stopped"
    os.killpg(process.pid, signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert stderr.count("stopped by SIGTERM") == 1 and "--resume" in stderr
    stopped = load_checkpoint(out / "checkpoints" / "last.pt")
    assert stopped["epoch"] < 6
    finish = subprocess.run(_nproc_train(model, out, "--resume"), env=ENV, capture_output=True, text=True,
                            timeout=300)
    assert finish.returncode == 0, finish.stderr
    assert "resuming" in finish.stderr
    ours = load_checkpoint(out / "checkpoints" / "last.pt")["model"]
    theirs = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(ours[name], theirs[name]) for name in theirs)


CONV_MODEL = """model digits_conv {
  input  x  : [1, 8, 8]
  label  y  : [10]

  state  h1 : [4, 8, 8] >= 0 ~ relu(conv(x, 4, k=3, pad=1) + bias)
  state  h2 : [64] >= 0      ~ relu(dense(flatten(h1), 64) + bias)
  output o  : [10]           ~ dense(h2, 10) + bias

  cost cross_entropy(o, y)
}

train {
  ep(scheme=centered, beta=0.05, steps=8)
  sgd(lr=0.02, momentum=0.9)
  constant()
  batch 32
  epochs 2
}
"""


def test_a_run_resumed_with_another_number_of_processes_continues_it(tmp_path):
    """One process for the first epoch, two for the second: the same batches and mean gradient
    (and the momentum rank 0 saved, whatever its memory layout, reaches rank 1)."""
    model = tmp_path / "digits_conv.pc"
    model.write_text(CONV_MODEL)
    train = lambda out, *extra: subprocess.run(
        [sys.executable, "-m", "pcdsl", "train", str(model), "--out", str(out), *extra],
        env=ENV, capture_output=True, text=True, timeout=300)
    straight = train(tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr
    first = train(tmp_path / "switched", "--epochs", "1")
    assert first.returncode == 0, first.stderr
    second = train(tmp_path / "switched", "--epochs", "2", "--resume", "--nproc", "2")
    assert second.returncode == 0, second.stderr
    assert "continues with 2 process(es), it was saved by 1" in second.stderr
    ours = load_checkpoint(tmp_path / "switched" / "checkpoints" / "last.pt")["model"]
    theirs = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")["model"]
    for name, expected in theirs.items():
        torch.testing.assert_close(ours[name], expected, rtol=1e-4, atol=1e-5)


def test_processes_started_unlike_each_other_are_refused(tmp_path):
    ranks = tmp_path / "ranks"
    ranks.mkdir()
    done = _torchrun(2, "mlp_digits", str(tmp_path / "run"), str(ranks), "epochs=1",
                     env={**ENV, "PCDSL_TEST_LIMIT": "64", "PCDSL_TEST_RANK1_SET": "lr=0.2"})
    assert done.returncode != 0
    assert "the processes of the run were not started alike" in done.stderr
    assert "config: rank 0 has" in done.stderr and "rank(s) 1 differ" in done.stderr
    assert not (tmp_path / "run").exists()


def _children(parent: int) -> list[int]:
    """The processes whose parent is `parent` (from /proc: Linux)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            # the fields after the command's closing parenthesis: state, ppid, ...
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if entry.name.isdigit() and int(fields[1]) == parent:
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the launched processes through /proc (Linux)")
def test_a_process_killed_ends_the_run_with_a_clear_message(tmp_path):
    model = tmp_path / "digits_mlp.pc"
    model.write_text(MODEL)
    out = tmp_path / "run"
    process = _start_until_a_checkpoint(model, out)
    pids = _children(process.pid)
    assert len(pids) == 2, pids
    os.kill(max(pids), signal.SIGKILL)            # one of the two training processes
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGKILL, stderr     # the status of the process that failed first
    # the survivor says so when it notices first; the launcher may stop it before it does, and
    # then the command names the process that was killed (both, often)
    assert "was killed by SIGKILL" in stderr, stderr
    assert "internal error" not in stderr and "this is a bug" not in stderr, stderr


def test_under_two_processes_rank_0_alone_writes_the_tensorboard_log(tmp_path):
    pytest.importorskip("tensorboard")
    from support.events import assert_log_holds
    from pcdsl.runtime.metrics import read_metrics
    model = tmp_path / "digits_mlp.pc"
    model.write_text(MODEL)
    out = tmp_path / "run"
    done = subprocess.run(_nproc_train(model, out, "--epochs", "1", "--limit", "128", "--tensorboard", "--diagnostics"),
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert len(list((out / "tensorboard").glob("events.out.tfevents.*"))) == 1      # one writer: rank 0
    records = read_metrics(out / "metrics.jsonl")
    assert "relax/energy/nudged_pos" in records[0]
    assert_log_holds(out / "tensorboard", records)
