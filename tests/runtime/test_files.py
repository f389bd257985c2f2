# ---------------------------------------------------------------------------------------------
# pcdsl.files: atomic_write and atomic_copy.
# Oracles: the bytes the test itself wrote or encoded, the folder listing (the target and nothing
# else), the temporary name the module promises (`.{name}.tmp-{pid}` beside the target), and the
# old content surviving any failure mid-write.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import os

import pytest

from pcdsl.files import atomic_copy, atomic_write


def listing(folder) -> list[str]:
    return sorted(os.listdir(folder))


def test_writes_bytes_exactly(tmp_path):
    target = tmp_path / "out.bin"
    data = bytes(range(256)) + b"\r\n\n"
    atomic_write(target, data)
    assert target.read_bytes() == data
    assert listing(tmp_path) == ["out.bin"]


def test_writes_str_as_utf8_without_newline_translation(tmp_path):
    target = tmp_path / "model.py"
    atomic_write(str(target), "σ(x) ≈ 1\nline two\n")          # a str path works too
    assert target.read_bytes() == b"\xcf\x83(x) \xe2\x89\x88 1\nline two\n"
    assert listing(tmp_path) == ["model.py"]


def test_callable_fills_a_binary_handle_beside_the_target(tmp_path):
    target = tmp_path / "weights.pt"
    target.write_bytes(b"old")
    seen = {}

    def fill(handle):
        seen["name"] = handle.name
        seen["target_during_write"] = target.read_bytes()
        handle.write(b"new ")
        handle.write(b"content")

    atomic_write(target, fill)
    assert seen["name"] == str(tmp_path / f".weights.pt.tmp-{os.getpid()}")
    assert seen["target_during_write"] == b"old"           # replaced only once complete
    assert target.read_bytes() == b"new content"
    assert listing(tmp_path) == ["weights.pt"]


@pytest.mark.parametrize("failure", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_a_failing_write_leaves_the_old_content_and_no_temporary(tmp_path, failure):
    target = tmp_path / "config.json"
    target.write_text('{"old": true}\n')

    def fill(handle):
        handle.write(b'{"new": tr')         # half of the new content, then the failure
        raise failure

    with pytest.raises(type(failure)):
        atomic_write(target, fill)
    assert target.read_text() == '{"old": true}\n'
    assert listing(tmp_path) == ["config.json"]


def test_a_failing_first_write_creates_nothing(tmp_path):
    def fill(handle):
        raise ValueError("refused")

    with pytest.raises(ValueError):
        atomic_write(tmp_path / "metrics.jsonl", fill)
    assert listing(tmp_path) == []


def test_missing_folder_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        atomic_write(tmp_path / "nope" / "out.txt", "text")
    assert listing(tmp_path) == []


def test_a_stale_temporary_of_the_same_process_is_replaced(tmp_path):
    stale = tmp_path / f".out.txt.tmp-{os.getpid()}"
    stale.write_bytes(b"left behind by a killed process, much longer than the new content")
    atomic_write(tmp_path / "out.txt", b"fresh")
    assert (tmp_path / "out.txt").read_bytes() == b"fresh"
    assert listing(tmp_path) == ["out.txt"]


def test_copy_replaces_the_target_with_its_own_copy_of_the_source_bytes(tmp_path):
    source, target = tmp_path / "epoch_002.pt", tmp_path / "last.pt"
    source.write_bytes(b"epoch two" * 1000)
    target.write_bytes(b"epoch one")
    atomic_copy(source, target)
    assert target.read_bytes() == b"epoch two" * 1000
    assert not os.path.samefile(source, target)     # not a hard link: damage to one spares the other
    with open(source, "r+b") as handle:
        handle.write(b"X")
    assert target.read_bytes() == b"epoch two" * 1000
    assert listing(tmp_path) == ["epoch_002.pt", "last.pt"]


def test_copy_of_a_missing_source_keeps_the_target(tmp_path):
    target = tmp_path / "last.pt"
    target.write_bytes(b"epoch one")
    with pytest.raises(FileNotFoundError):
        atomic_copy(tmp_path / "missing.pt", target)
    assert target.read_bytes() == b"epoch one"
    assert listing(tmp_path) == ["last.pt"]
