# Tests of the idx parser and idx folders, against bytes built by hand in conftest.py.
from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

from pcdsl.data import DataError, load_data
from pcdsl.data.idx import parse_idx, read_idx


def test_parse_ubyte_images_exactly(encode_idx):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    data = encode_idx(images)
    assert data[:4] == b"\x00\x00\x08\x03"
    assert data[4:16] == b"\x00\x00\x00\x02\x00\x00\x00\x03\x00\x00\x00\x04"
    parsed = parse_idx(data, "x")
    assert parsed.dtype == np.uint8 and parsed.shape == (2, 3, 4)
    np.testing.assert_array_equal(parsed, images)


@pytest.mark.parametrize("type_code, values", [
    (0x09, np.array([-128, -1, 0, 127], dtype=np.int8)),
    (0x0B, np.array([-30000, 258, 0, 7], dtype=np.int16)),
    (0x0C, np.array([-(2**31), 2**31 - 1, 65536, 1], dtype=np.int32)),
    (0x0D, np.array([1.5, -2.25, 0.0, 3e38], dtype=np.float32)),
    (0x0E, np.array([1e-300, -2.5, 0.0, 1e300], dtype=np.float64)),
])
def test_parse_big_endian_types(encode_idx, type_code, values):
    parsed = parse_idx(encode_idx(values, type_code), "x")
    np.testing.assert_array_equal(parsed, values)
    assert parsed.dtype.isnative


def test_hand_written_bytes_without_the_helper():
    # a 1-D label file typed out byte by byte: 3 labels 7, 0, 255
    data = bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 0, 255])
    np.testing.assert_array_equal(parse_idx(data, "x"), [7, 0, 255])


@pytest.mark.parametrize("data, message", [
    (b"\x00\x00", "only 2 bytes"),
    (b"\x01\x00\x08\x01\x00\x00\x00\x01\x05", "magic number"),
    (b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", "magic number"),
    (b"\x00\x00\x08\x00", "0 dimensions"),
    (b"\x00\x00\x08\x03\x00\x00\x00\x02", "truncated idx header"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x04\x01\x02\x03", "truncated"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x02\x01\x02\x03", "trailing bytes"),
])
def test_parse_rejects_corrupt_bytes(data, message):
    with pytest.raises(DataError, match=message) as info:
        parse_idx(data, "some/file-idx1-ubyte")
    assert "some/file-idx1-ubyte" in str(info.value)


def test_read_gz_and_raw_agree(tmp_path, make_idx):
    images = np.random.default_rng(0).integers(0, 256, size=(3, 4, 5), dtype=np.uint8)
    raw = make_idx(tmp_path / "a-idx3-ubyte", images)
    gz = make_idx(tmp_path / "a-idx3-ubyte.gz", images)
    np.testing.assert_array_equal(read_idx(raw), read_idx(gz))


def test_truncated_gzip_is_a_data_error(tmp_path, encode_idx):
    whole = gzip.compress(encode_idx(np.zeros((50, 28, 28), dtype=np.uint8)))
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match="decompress") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_not_gzip_named_gz_is_a_data_error(tmp_path):
    path = tmp_path / "x-idx1-ubyte.gz"
    path.write_bytes(b"this is not gzip")
    with pytest.raises(DataError, match="decompress"):
        read_idx(path)


def test_load_idx_folder_pixels_and_labels(idx_folder):
    folder, arrays = idx_folder
    data = load_data(str(folder), (1, 5, 4))
    assert (len(data.train), len(data.test)) == (12, 6)
    assert data.num_classes == 3 and data.classes == ["0", "1", "2"]
    assert data.description == f"MNIST idx ({folder}): 12 train / 6 test, 3 classes"
    for split, stem in ((data.train, "train"), (data.test, "test")):
        (x, y), = list(split.batches(100, shuffle=False))
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        expected = torch.from_numpy(arrays[f"{stem}_images"]).float().unsqueeze(1) / 255
        torch.testing.assert_close(x, expected, rtol=0, atol=0)
        assert y.tolist() == arrays[f"{stem}_labels"].tolist()


def test_idx_flattened_and_padded(idx_folder):
    folder, arrays = idx_folder
    flat = load_data(str(folder), (20,))
    (x, _), = list(flat.test.batches(6, shuffle=False))
    expected = torch.from_numpy(arrays["test_images"]).float().reshape(6, 20) / 255
    assert torch.equal(x, expected)
    padded = load_data(str(folder), (1, 9, 8), pad=2)
    (x, _), = list(padded.test.batches(6, shuffle=False))
    assert x.shape == (6, 1, 9, 8)
    assert torch.equal(x[:, :, 2:7, 2:6], expected.reshape(6, 1, 5, 4))
    interior = torch.zeros(9, 8, dtype=torch.bool)
    interior[2:7, 2:6] = True
    assert torch.all(x[:, :, ~interior] == 0)


def test_missing_idx_file_names_it(idx_folder):
    folder, _ = idx_folder
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"missing t10k-labels-idx1-ubyte\(\.gz\)"):
        load_data(str(folder), (20,))


def test_label_count_mismatch(idx_folder, make_idx):
    folder, _ = idx_folder
    make_idx(folder / "train-labels-idx1-ubyte", np.zeros(11, dtype=np.uint8))
    with pytest.raises(DataError, match="11 labels for 12 images"):
        load_data(str(folder), (20,))


def test_images_need_three_dimensions(idx_folder, make_idx):
    folder, _ = idx_folder
    (folder / "train-images-idx3-ubyte.gz").unlink()
    make_idx(folder / "train-images-idx3-ubyte", np.zeros((12, 20), dtype=np.uint8))
    with pytest.raises(DataError, match="expected 3 dimensions"):
        load_data(str(folder), (20,))


def test_images_must_be_unsigned_bytes(idx_folder, make_idx):
    folder, _ = idx_folder
    (folder / "train-images-idx3-ubyte.gz").unlink()
    make_idx(folder / "train-images-idx3-ubyte", np.zeros((12, 5, 4), dtype=np.float32), 0x0D)
    with pytest.raises(DataError, match="expected unsigned bytes"):
        load_data(str(folder), (20,))


def test_test_label_outside_train_classes(idx_folder, make_idx):
    folder, _ = idx_folder
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    make_idx(folder / "t10k-labels-idx1-ubyte", np.array([0, 1, 2, 3, 0, 1], dtype=np.uint8))
    with pytest.raises(DataError, match="test label 3 does not occur in train"):
        load_data(str(folder), (20,))


def test_train_and_test_sizes_must_agree(idx_folder, make_idx):
    folder, _ = idx_folder
    make_idx(folder / "t10k-images-idx3-ubyte", np.zeros((6, 4, 5), dtype=np.uint8))
    with pytest.raises(DataError, match="both must have one size"):
        load_data(str(folder), (20,))


def test_truncated_file_in_folder(idx_folder):
    folder, _ = idx_folder
    path = folder / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(DataError, match="truncated") as info:
        load_data(str(folder), (20,))
    assert str(path) in str(info.value)
