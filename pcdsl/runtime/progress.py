# ---------------------------------------------------------------------------------------------
# Progress reporting for one epoch.
#
# On a terminal (stderr is a TTY): a rich progress bar with the running loss and an ETA, removed
# when the epoch ends (the trainer then logs the epoch's one-line summary). Elsewhere (CI, a log
# file, `nohup`): no bar; long epochs get a plain line about every tenth of the epoch, so a
# log shows that the run is alive and how fast it goes. The running loss is summed on the
# device and read only when it is shown (at most every REFRESH_SECONDS on a terminal), so the
# bar costs the training loop no host synchronisation per batch.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import sys
import time
from typing import Callable

import torch

# Epochs with fewer batches than this are quick enough that the per-epoch summary suffices.
PLAIN_LINES_FROM_BATCHES = 100
PLAIN_LINES_PER_EPOCH = 10
REFRESH_SECONDS = 0.5


def stderr_is_terminal() -> bool:
    return hasattr(sys.stderr, "isatty") and sys.stderr.isatty()


class EpochProgress:
    """Context manager: `update(loss)` after every batch (a float or a 0-dim tensor)."""

    def __init__(self, epoch: int, epochs: int, batches: int, log: Callable[[str], None],
                 live: bool | None = None):
        self.epoch, self.epochs, self.batches, self.log = epoch, epochs, batches, log
        self.live = stderr_is_terminal() if live is None else live
        self.done = 0
        self.loss_sum = 0.0
        self.started = time.perf_counter()
        self.every = (max(1, batches // PLAIN_LINES_PER_EPOCH)
                      if batches >= PLAIN_LINES_FROM_BATCHES else 0)
        self._bar = None
        self._shown_at = 0.0
        self._pending: list = []     # losses not yet added to loss_sum (read when shown)

    def __enter__(self) -> "EpochProgress":
        if self.live:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)
            self._bar = Progress(TextColumn(f"epoch {self.epoch}/{self.epochs}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
                                 TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                                 console=Console(stderr=True), transient=True)
            self._bar.start()
            self._task = self._bar.add_task("train", total=self.batches, loss="-")
        return self

    @property
    def mean_loss(self) -> float:
        """The running mean (reading the device: called only to show it)."""
        if not self.done:
            return float("nan")
        if self._pending:
            self.loss_sum += float(torch.stack([torch.as_tensor(v) for v in self._pending]).sum())
            self._pending.clear()
        return self.loss_sum / self.done

    def update(self, loss) -> None:
        self.done += 1
        self._pending.append(loss.detach() if hasattr(loss, "detach") else loss)
        if self._bar is not None:
            now = time.perf_counter()
            if now - self._shown_at >= REFRESH_SECONDS or self.done == self.batches:
                self._shown_at = now
                self._bar.update(self._task, completed=self.done, loss=f"{self.mean_loss:.4f}")
        elif self.every and self.done % self.every == 0 and self.done < self.batches:
            elapsed = time.perf_counter() - self.started
            eta = elapsed / self.done * (self.batches - self.done)
            self.log(f"  epoch {self.epoch}/{self.epochs}  batch {self.done}/{self.batches}  "
                     f"loss {self.mean_loss:.4f}  {self.done / elapsed:.1f} batch/s  eta {eta:.0f} s")

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
