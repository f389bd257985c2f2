# ---------------------------------------------------------------------------------------------
# Checkpoints: a round trip, and every way loading refuses (with the weights left untouched).
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import io
import os
import struct
import zipfile

import pytest
import torch

from pcdsl.runtime.checkpoint import (FORMAT_TAG, CheckpointError, load_checkpoint,
                                      load_weights, parameter_shapes, save_checkpoint)
from pcdsl.files import atomic_copy
from tests.support.handwritten_pcn import Model


def payload_for(model: Model, epoch: int = 3) -> dict:
    return {"epoch": epoch, "model": model.state_dict(), "param_shapes": parameter_shapes(model),
            "source_sha256": "0" * 64, "metrics": [{"epoch": epoch, "test_acc": 0.5}]}


def snapshot(model: Model) -> dict:
    return {name: value.clone() for name, value in model.state_dict().items()}


@pytest.fixture
def saved(tmp_path):
    model = Model(sizes=(6, 5, 4))
    path = tmp_path / "checkpoints" / "epoch_003.pt"
    save_checkpoint(path, payload_for(model))
    return model, path


def test_round_trip(saved):
    model, path = saved
    checkpoint = load_checkpoint(path)
    assert checkpoint["format"] == FORMAT_TAG and checkpoint["epoch"] == 3
    assert checkpoint["metrics"] == [{"epoch": 3, "test_acc": 0.5}]
    other = Model(sizes=(6, 5, 4))
    other.reset_parameters(torch.Generator().manual_seed(99))
    load_weights(other, checkpoint, path)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))


def test_save_leaves_no_temporary_files(saved):
    _, path = saved
    assert sorted(os.listdir(path.parent)) == ["epoch_003.pt"]


def test_copy_is_an_identical_file(saved, tmp_path):
    _, path = saved
    target = path.parent / "last.pt"
    atomic_copy(path, target)
    atomic_copy(path, target)            # replacing an existing last.pt works too
    assert target.read_bytes() == path.read_bytes()


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_checkpoint(tmp_path / "nope.pt")


def test_folder_instead_of_file(saved):
    _, path = saved
    with pytest.raises(CheckpointError, match="is a folder"):
        load_checkpoint(path.parent)


def test_corrupt_bytes(tmp_path):
    path = tmp_path / "junk.pt"
    path.write_bytes(os.urandom(2048))
    with pytest.raises(CheckpointError, match="not a torch file"):
        load_checkpoint(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pt"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="it is empty"):
        load_checkpoint(path)


def member_data_ranges(archive: bytes) -> dict[str, range]:
    """Where each member's bytes lie in a (stored, uncompressed) zip archive."""
    ranges = {}
    with zipfile.ZipFile(io.BytesIO(archive)) as listing:
        for info in listing.infolist():
            name_length, extra_length = struct.unpack("<HH", archive[info.header_offset + 26:
                                                                     info.header_offset + 30])
            start = info.header_offset + 30 + name_length + extra_length
            ranges[info.filename] = range(start, start + info.file_size)
    return ranges


def test_damage_to_any_stored_content_is_detected(tmp_path):
    # torch's reader does not verify tensor bytes; the checkpoint's own checksum does
    path = tmp_path / "big.pt"
    save_checkpoint(path, payload_for(Model(sizes=(40, 30, 10))))
    original = path.read_bytes()
    damaged = tmp_path / "damaged.pt"
    ranges = member_data_ranges(original)
    contents = [where for name, where in ranges.items()
                if name.endswith("/data.pkl") or "/data/" in name]   # the pickle and the tensors
    assert len(contents) == 5
    for where in contents:
        data = bytearray(original)
        middle = where.start + len(where) // 2
        data[middle] ^= 0x5A
        damaged.write_bytes(bytes(data))
        with pytest.raises(CheckpointError, match="corrupt"):
            load_checkpoint(damaged)


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "object.pt"
    torch.save({"format": FORMAT_TAG, "thing": Model(sizes=(2, 2))}, path)
    with pytest.raises(CheckpointError, match="never contains.*Unsupported global"):
        load_checkpoint(path)


def test_truncated_file(saved, tmp_path):
    _, path = saved
    cut = tmp_path / "cut.pt"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt: PytorchStreamReader"):
        load_checkpoint(cut)


def test_wrong_format_tag(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"format": "someone-else", "epoch": 1}, path)
    with pytest.raises(CheckpointError, match="not a pcdsl checkpoint.*'someone-else'"):
        load_checkpoint(path)


def test_plain_state_dict_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(Model(sizes=(6, 5, 4)).state_dict(), path)
    with pytest.raises(CheckpointError, match="not a pcdsl checkpoint"):
        load_checkpoint(path)


def test_newer_version_is_refused(tmp_path):
    path = tmp_path / "future.pt"
    torch.save({"format": FORMAT_TAG, "version": 99}, path)
    with pytest.raises(CheckpointError, match="version 99"):
        load_checkpoint(path)


def test_incomplete_checkpoint(tmp_path):
    path = tmp_path / "partial.pt"
    save_checkpoint(path, {"epoch": 1})
    with pytest.raises(CheckpointError, match="lacks model, param_shapes, source_sha256"):
        load_checkpoint(path)


def test_mismatched_shapes_list_every_difference_and_load_nothing(saved):
    _, path = saved
    checkpoint = load_checkpoint(path)
    wider = Model(sizes=(6, 7, 4))
    before = snapshot(wider)
    with pytest.raises(CheckpointError) as caught:
        load_weights(wider, checkpoint, path)
    message = str(caught.value)
    assert "nothing was loaded" in message
    for line in ("W1: checkpoint [5, 6], model [7, 6]", "b1: checkpoint [5], model [7]",
                 "W2: checkpoint [4, 5], model [4, 7]"):
        assert line in message
    assert "b2" not in message
    assert all(torch.equal(before[k], v) for k, v in wider.state_dict().items())


def test_missing_and_unexpected_names(saved):
    _, path = saved
    checkpoint = load_checkpoint(path)
    deeper = Model(sizes=(6, 5, 4, 4))
    before = snapshot(deeper)
    with pytest.raises(CheckpointError) as caught:
        load_weights(deeper, checkpoint, path)
    message = str(caught.value)
    assert "W3: in the model [4, 4], missing from the checkpoint" in message
    assert "W2: checkpoint [4, 5], model [4, 5]" not in message
    shallower = Model(sizes=(6, 4))
    with pytest.raises(CheckpointError, match="W2: in the checkpoint \\[4, 5\\], not in the model"):
        load_weights(shallower, checkpoint, path)
    assert all(torch.equal(before[k], v) for k, v in deeper.state_dict().items())
