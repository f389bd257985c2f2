# ---------------------------------------------------------------------------------------------
# Runs survive kills (issue #7): a real `pcdsl train` process is SIGKILLed at random moments
# inside its epochs, several times, and resumed each time; it must end with weights bit-identical
# to a run never stopped (CPU, one thread: deterministic), having lost no more than the
# checkpoint interval per kill. SIGTERM ends a run cleanly with a checkpoint where it stopped.
# Oracle: the uninterrupted run's final weights.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from pcdsl.runtime.checkpoint import load_checkpoint

MODEL = """model slow_digits {
  input  x  : [64]
  label  y  : [10]

  state  h1 : [256] >= 0 ~ relu(dense(x, 256) + bias)
  state  h2 : [256] >= 0 ~ relu(dense(h1, 256) + bias)
  output o  : [10]       ~ dense(h2, 10) + bias

  cost cross_entropy(o, y)
}

train {
  ep(scheme=centered, beta=0.05, steps=12)
  sgd(lr=0.02, momentum=0.9)
  batch 16
  epochs 2
  checkpoint_steps 7
}
"""
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _command(model: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pcdsl.cli.main", "train", str(model), "--out", str(out), *extra]


def _weights(out: Path) -> dict:
    return load_checkpoint(out / "checkpoints" / "last.pt")["model"]


def _position(out: Path):
    last = out / "checkpoints" / "last.pt"
    try:
        checkpoint = load_checkpoint(last)
    except Exception:
        return None
    return checkpoint["position"], checkpoint["step"]


def _wait_for_a_new_checkpoint(out: Path, process, seen, timeout=120.0):
    """Block until last.pt holds a step past `seen` (the run is inside its training)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        found = _position(out)
        if found is not None and found[1] > seen:
            return found[1]
        time.sleep(0.02)
    return None


def test_sigkill_at_random_moments_then_resume_is_bit_identical(tmp_path):
    model = tmp_path / "slow_digits.pc"
    model.write_text(MODEL)
    straight = subprocess.run(_command(model, tmp_path / "straight"), env=ENV, capture_output=True, text=True)
    assert straight.returncode == 0, straight.stderr
    out, chooser, kills, seen = tmp_path / "killed", random.Random(7), 0, 0
    for attempt in range(3):
        process = subprocess.Popen(_command(model, out, *(["--resume"] if attempt else [])), env=ENV,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        reached = _wait_for_a_new_checkpoint(out, process, seen)
        if reached is None:
            break                                   # it finished first
        time.sleep(chooser.uniform(0.0, 0.05))      # somewhere inside the next steps (or a write)
        process.kill()
        process.wait()
        kills += 1
        resumed_at = _position(out)
        assert resumed_at is not None, "a kill left no readable checkpoint"
        seen = resumed_at[1]
    assert kills >= 2
    finish = subprocess.run(_command(model, out, "--resume"), env=ENV, capture_output=True, text=True)
    assert finish.returncode == 0, finish.stderr
    assert "resuming" in finish.stderr
    ours, theirs = _weights(out), _weights(tmp_path / "straight")
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    assert not list(out.rglob("*.tmp*")), "a killed write left its temporary file"


def test_sigterm_stops_with_a_checkpoint_and_the_resume_command(tmp_path):
    model = tmp_path / "slow_digits.pc"
    model.write_text(MODEL)
    out = tmp_path / "run"
    process = subprocess.Popen(_command(model, out), env=ENV, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    assert _wait_for_a_new_checkpoint(out, process, 0) is not None
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "stopped by SIGTERM" in stderr and "--resume" in stderr
    position, _ = _position(out)
    assert position is not None and position["batches"] > 0


IMAGE_MODEL = """model tiny_images {
  input  x : [3, 8, 8]
  label  y : [2]

  state  h : [32] >= 0 ~ relu(dense(flatten(x), 32) + bias)
  output o : [2]       ~ dense(h, 2) + bias

  cost cross_entropy(o, y)
}

train {
  ep(scheme=centered, beta=0.05, steps=40)
  batch 4
  epochs 2
  checkpoint_steps 3
}
"""


def test_sigterm_to_the_whole_process_group_with_decoding_workers(tmp_path):
    """What a cluster scheduler does: SIGTERM to every process of the job, the data workers
    included. The workers leave it to the trainer (they ignore it), which saves and exits 143.
    (A worker killed while torch still waits on it made the trainer fail with torch's
    "DataLoader worker is killed" error and no checkpoint; this small run does not always
    catch a worker in that state, so it guards the outcome, not that race.)"""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    for split, count in (("train", 800), ("test", 10)):
        for label in ("a", "b"):
            folder = tmp_path / "images" / split / label
            folder.mkdir(parents=True)
            for k in range(count):
                Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / f"{k}.png")
    model = tmp_path / "tiny_images.pc"
    model.write_text(IMAGE_MODEL)
    out = tmp_path / "run"
    process = subprocess.Popen(_command(model, out, "--data", str(tmp_path / "images"), "--workers", "2"),
                               env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    assert _wait_for_a_new_checkpoint(out, process, 0) is not None
    os.killpg(process.pid, signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "stopped by SIGTERM" in stderr and "internal error" not in stderr
    assert _position(out) is not None
