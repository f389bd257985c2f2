# ---------------------------------------------------------------------------------------------
# Reading a run's TensorBoard event log back with TensorBoard's own readers, and what it must
# hold according to metrics.jsonl (the tags written out here, not taken from pcdsl).
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

# metrics.jsonl key -> the tag its numbers must have; a key not listed (relax/...) is its own tag
TAGS = {"train_loss": "loss/train", "test_loss": "loss/test", "train_acc": "accuracy/top1_train",
        "test_acc": "accuracy/top1_test", "test_top5": "accuracy/top5_test", "lr": "lr",
        "step": "progress/optimizer_steps", "seconds": "time/epoch_seconds",
        "train_seconds": "time/train_seconds", "eval_seconds": "time/eval_seconds",
        "train_examples_per_s": "time/train_examples_per_s",
        "skipped_train_examples": "data/skipped_train_examples",
        "skipped_test_examples": "data/skipped_test_examples"}
NOT_NUMBERS = {"epoch", "algorithm", "scheme"}        # the step, and strings


def scalars_in(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] as TensorBoard's EventAccumulator reads the folder."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    accumulator.Reload()
    return {tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
            for tag in accumulator.Tags()["scalars"]}


def raw_steps(folder: Path) -> Counter:
    """(tag, step) -> how many scalar events of every event file of the folder hold it (what a
    reader that purges nothing sees)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    found = Counter()
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                found[value.tag, event.step] += 1
    return found


def expected_scalars(records: list[dict]) -> dict[str, list[tuple[int, float]]]:
    expected: dict[str, list] = {}
    for record in records:
        for key, value in record.items():
            if key in NOT_NUMBERS or value is None:
                continue
            assert isinstance(value, (int, float)) and not isinstance(value, bool), (key, value)
            expected.setdefault(TAGS.get(key, key), []).append((record["epoch"], float(value)))
    return expected


def assert_log_holds(folder: Path, records: list[dict]) -> None:
    """The event log holds exactly the records' numbers: every numeric field of every epoch, at
    step = epoch, equal to float32 precision, and nothing else."""
    found, expected = scalars_in(folder), expected_scalars(records)
    assert set(found) == set(expected)
    for tag, points in expected.items():
        assert [step for step, _ in found[tag]] == [step for step, _ in points], tag
        for (_, value), (_, wanted) in zip(found[tag], points):
            assert value == pytest.approx(wanted, rel=1e-6, abs=1e-30), tag
