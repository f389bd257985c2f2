# ---------------------------------------------------------------------------------------------
# A run folder belongs to one run at a time, and to nothing else.
#
# `held_run_folder` takes an exclusive advisory lock (flock) on RUNDIR/.pcdsl-lock for as long as
# a run writes there; a second trainer on the same folder is refused with the holder's pid, host
# and start time. The kernel drops the lock when its process dies (and its forked data workers,
# which share the open file and notice their parent's death within seconds), so a killed run
# never leaves the folder locked. A folder the run itself created is removed again when the run fails before
# writing anything into it; half-written files a killed run left are removed once the run may
# write there.
#
# `check_output_folder` refuses targets that are not a run's own folder: the filesystem root, the
# home folder, the current folder or one of its parents (where model.py, config.json and
# checkpoints/ would land among the user's files), and paths that are files.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import datetime
import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from pcdsl.files import TEMPORARY_PATTERN

try:
    import fcntl
except ImportError:      # Windows: no flock; runs are then not protected from each other
    fcntl = None

LOCK_FILE = ".pcdsl-lock"


class RunFolderError(Exception):
    """The output folder cannot hold this run; the message is meant for the user."""


def check_output_folder(root: Path) -> None:
    resolved = root.expanduser().resolve()
    if resolved.exists() and not resolved.is_dir():
        raise RunFolderError(f"--out {root} is a file, not a folder")
    here = Path.cwd().resolve()
    reserved = {Path(resolved.anchor): "the filesystem root", Path.home().resolve(): "your home folder"}
    what = reserved.get(resolved) or ("the current folder" if resolved == here else
                                      "a parent of the current folder" if here.is_relative_to(resolved) else None)
    if what:
        raise RunFolderError(f"--out {root} is {what}: a run writes model.py, config.json, metrics.jsonl and "
                             "checkpoints/ into a folder of its own; name a new one (e.g. --out runs/mine)")


@contextmanager
def held_run_folder(root: Path) -> Iterator[None]:
    """Create `root` if needed and hold its lock for the duration; refuse if another run holds it."""
    created = not root.exists()
    try:
        root.mkdir(parents=True, exist_ok=True)
        handle = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise RunFolderError(f"cannot use {root} for the run: {error.strerror or error}") from None
    if fcntl is not None:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(handle, 512).decode("utf-8", errors="replace").strip() or "holder unknown"
            os.close(handle)      # not ours: neither the lock file nor the folder is touched
            raise RunFolderError(f"{root} is in use by another run ({holder}); wait for it to end, or "
                                 "choose another output folder. Nothing was changed.") from None
    try:
        os.ftruncate(handle, 0)
        since = datetime.datetime.now().isoformat(timespec="seconds")
        os.write(handle, f"pcdsl train, pid {os.getpid()} on {socket.gethostname()}, since {since}\n".encode())
        yield
    finally:
        if created:
            _remove_if_unused(root)       # while the lock is still held
        os.close(handle)                  # releases the lock


def remove_stale_temporaries(root: Path) -> None:
    """Half-written files of a run killed mid-write (half a gigabyte for a VGG10 checkpoint);
    call it holding the folder, once the run may write there: no other writer can be filling
    them."""
    for folder in (root, root / "checkpoints"):
        for leftover in folder.glob(TEMPORARY_PATTERN) if folder.is_dir() else ():
            try:
                leftover.unlink()
            except OSError:
                pass


def _remove_if_unused(root: Path) -> None:
    """The folder this run created, when the run left nothing in it but its lock file."""
    try:
        if {p.name for p in root.iterdir()} <= {LOCK_FILE}:
            (root / LOCK_FILE).unlink(missing_ok=True)
            root.rmdir()
    except OSError:
        pass
