# ---------------------------------------------------------------------------------------------
# Atomic file replacement: every file pcdsl writes whole (compiled modules, run files, metrics
# rewrites, checkpoints) goes through here.
#
# The new content goes to a temporary file beside the target (same folder, so same filesystem),
# is flushed and fsynced, then os.replace()d over the target, and the folder is fsynced so that
# the rename itself survives a power cut. A crash, an exception or Ctrl-C mid-write therefore
# leaves either the old file or the new one under the real name, never a half-written one, and
# the temporary file is removed on every failure. Errors are plain OSErrors: callers turn them
# into their own user-facing messages. It lives outside pcdsl.runtime, and imports nothing
# heavy, so that `pcdsl compile -o` can use it without loading torch.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

Content = bytes | str | Callable[[BinaryIO], object]


TEMPORARY_PATTERN = ".*.tmp-*"     # what _temporary_beside names; a killed writer leaves one


def _temporary_beside(path: Path) -> Path:
    """The temporary name used while `path` is written: hidden, and unique per process."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def atomic_write(path: Path | str, data: Content) -> None:
    """Replace `path` with `data` atomically.

    `data` is bytes, a str (written as UTF-8, newlines untranslated), or a callable that writes
    the content to the binary handle it is given (e.g. `lambda handle: torch.save(obj, handle)`).
    The folder must exist. If anything fails, the old file (if any) is left as it was."""
    path = Path(path)
    with _replacing(path) as temporary:
        if callable(data):
            _write_synced(temporary, data)
        else:
            content = data.encode("utf-8") if isinstance(data, str) else data
            _write_synced(temporary, lambda handle: handle.write(content))


def atomic_copy(source: Path | str, target: Path | str) -> None:
    """Make `target` an atomic byte copy of `source` (its own bytes: damage to one is not
    damage to the other)."""
    with _replacing(Path(target)) as temporary:
        with open(source, "rb") as original:
            _write_synced(temporary, lambda handle: shutil.copyfileobj(original, handle))


@contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """Yield the temporary path to fill; on success it replaces `path`, on any failure it goes."""
    temporary = _temporary_beside(path)
    temporary.unlink(missing_ok=True)     # a leftover of a killed process with the same pid
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    _fsync_directory(path.parent)


def _write_synced(path: Path, fill: Callable[[BinaryIO], object]) -> None:
    with open(path, "wb") as handle:
        fill(handle)
        handle.flush()
        os.fsync(handle.fileno())     # the bytes are on disk before the rename can be


def _fsync_directory(folder: Path) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:        # some platforms cannot open folders; the rename is still atomic
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def write_generated(default: Path, text: str, argv: list[str]) -> None:
    """The `python -m` entry of a file written from the code and pinned by a test (docs/cli.md,
    the TextMate grammar): write `text` to the path named in argv, else to `default` in the
    checkout; refuse when its folder is missing (an installed package has no docs/ or editors/)."""
    import sys
    target = Path(argv[0]) if argv else default
    if not target.parent.is_dir():
        sys.exit(f"error: {target.parent} does not exist: run this in a pcdsl checkout, or name the file to write")
    atomic_write(target, text)
    print(f"wrote {target}")
