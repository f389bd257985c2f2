# ---------------------------------------------------------------------------------------------
# A run's TensorBoard scalars (`pcdsl train --tensorboard`): RUNDIR/tensorboard/.
#
# The numbers are metrics.jsonl's: each epoch's record, once its checkpoint and its metrics line
# are on disk, becomes one scalar per numeric field at step = epoch (tags below; the epoch is
# the step, strings and nulls are left out). Rank 0 alone writes, like every file of the run.
#
# A resumed run opens a new event file in the same folder (TensorBoard reads a folder's event
# files as one log) and writes only the epochs it trains. Its first event marks the epoch it
# starts at (SummaryWriter's purge_step): TensorBoard hides what older files hold from that
# epoch on, which matters only when a run resumed from an older checkpoint than its newest (a
# damaged last.pt) trains epochs again. Epochs trained without --tensorboard are not written
# afterwards: a run that turns it on at a resume has its log from there.
#
# The event log is a copy of metrics.jsonl, so a failure to write it (a full disk) is a warning
# that ends the TensorBoard log for the rest of the run, not the run: a full disk stops the run
# at its next checkpoint, with the last one intact, as it does without TensorBoard.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

from pathlib import Path
from typing import Callable

TENSORBOARD_FOLDER = "tensorboard"
INSTALL = 'pip install "pcdsl[tensorboard]"'

# metrics.jsonl's keys -> TensorBoard tags, grouped as TensorBoard shows them; another numeric
# key (relax/... of --diagnostics, or one added later) is its own tag
TAGS = {
    "train_loss": "loss/train", "test_loss": "loss/test",
    "train_acc": "accuracy/top1_train", "test_acc": "accuracy/top1_test", "test_top5": "accuracy/top5_test",
    "lr": "lr", "step": "progress/optimizer_steps",
    "seconds": "time/epoch_seconds", "train_seconds": "time/train_seconds", "eval_seconds": "time/eval_seconds",
    "train_examples_per_s": "time/train_examples_per_s",
    "skipped_train_examples": "data/skipped_train_examples", "skipped_test_examples": "data/skipped_test_examples",
}


def tensorboard_missing() -> str | None:
    """Why --tensorboard cannot work here (the message for the user), or None."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except Exception as error:       # missing, or broken (a protobuf it cannot work with raises TypeError)
        return f"--tensorboard needs the tensorboard package, which cannot be imported ({error}): {INSTALL}"
    return None


def scalars(record: dict) -> dict[str, float]:
    """tag -> value of every numeric field of a metrics record but its epoch (the step)."""
    return {TAGS.get(key, key): float(value) for key, value in record.items()
            if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool)}


class TensorBoardLog:
    """The event log of one training process's epochs (a context manager: it closes the log).
    The event file is opened at the first epoch written, so a run that fails before finishing
    an epoch leaves none."""

    def __init__(self, folder: Path, log: Callable[[str], None]):
        self.folder, self.log = Path(folder), log
        self._writer = None
        self._failed = False

    def __enter__(self) -> "TensorBoardLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def write(self, record: dict) -> None:
        """An epoch's metrics record, flushed to the event file."""
        if self._failed:
            return
        try:
            if self._writer is None:
                from torch.utils.tensorboard import SummaryWriter
                # older files' events from this epoch on are orphans of a run resumed from an
                # older checkpoint: TensorBoard hides them
                self._writer = SummaryWriter(str(self.folder), purge_step=record["epoch"])
            for tag, value in scalars(record).items():
                self._writer.add_scalar(tag, value, global_step=record["epoch"])
            self._writer.flush()
        except OSError as error:         # a full disk, a folder made read-only under the run
            self._failed = True
            self.log(f"warning: cannot write the TensorBoard events of epoch {record['epoch']} in {self.folder}: "
                     f"{error.strerror or error}; TensorBoard logging stops for this run (metrics.jsonl has every "
                     "number; --resume --tensorboard logs the epochs it trains from then on)")
            self.close()

    def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is None:
            return
        try:
            writer.close()
        except OSError as error:
            if not self._failed:
                self._failed = True
                self.log(f"warning: cannot close the TensorBoard events in {self.folder}: {error.strerror or error}")
