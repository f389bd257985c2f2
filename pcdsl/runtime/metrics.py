# ---------------------------------------------------------------------------------------------
# The run's metrics log: RUNDIR/metrics.jsonl, one JSON object per completed epoch.
#
# Each line is appended, flushed and fsynced as soon as its epoch's checkpoint is on disk, so the
# file can be tailed or plotted while a run goes on and survives a crash. The checkpoint also
# carries the history, and a resumed run rewrites the file from it (atomically): lines from an
# epoch whose checkpoint never landed can then not linger.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import json
import os
from pathlib import Path

from pcdsl.files import atomic_write

METRICS_FILE = "metrics.jsonl"


def _line(record: dict) -> str:
    # allow_nan=False: a non-finite number is a bug upstream (divergence stops a run before it is
    # logged) and would make the file unreadable to strict JSON tools
    return json.dumps(record, allow_nan=False, sort_keys=False) + "\n"


def append_metrics(path: Path, record: dict) -> None:
    line = _line(record)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


def write_metrics(path: Path, records: list[dict]) -> None:
    """Replace the whole file atomically with `records`."""
    atomic_write(path, "".join(_line(record) for record in records))


def read_metrics(path: Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
