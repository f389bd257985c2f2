# Tests of load_data's argument checks and shape fitting (every DataError a user can provoke
# without a broken file). Uses `digits` (8x8 grayscale) as the fixed-size source.
from __future__ import annotations

import pytest

from pcdsl.data import DataError, load_data


@pytest.mark.parametrize("shape, pad", [((64,), 0), ((1, 8, 8), 0), ((1, 12, 12), 2), ((144,), 2)])
def test_shapes_that_fit(shape, pad):
    data = load_data("digits", shape, pad=pad)
    x, y = next(data.train.batches(7, shuffle=True))
    assert x.shape == (7, *shape) and y.shape == (7,)


@pytest.mark.parametrize("shape, pad, message", [
    ((1, 12, 12), 0, r"\[1, 8, 8\] \(pad=0\) but the model input is \[1, 12, 12\]; use pad=2"),
    ((144,), 0, r"64 values flattened, but the model input is \[144\]; use pad=2"),
    ((63,), 0, r"64 values flattened, but the model input is \[63\]$"),
    ((3, 8, 8), 0, r"1 channel\(s\), but the model input \[3, 8, 8\] has 3"),
    ((1, 9, 8), 0, r"but the model input is \[1, 9, 8\]$"),
    ((8, 8), 0, r"\[1, 8, 8\].*the model input \[8, 8\] must be 1-D"),
    ((1, 1, 8, 8), 0, r"the model input \[1, 1, 8, 8\] must be 1-D"),
])
def test_shapes_that_do_not_fit(shape, pad, message):
    with pytest.raises(DataError, match=message):
        load_data("digits", shape, pad=pad)


@pytest.mark.parametrize("kwargs, message", [
    (dict(mean=[0.5, 0.5], std=[1.0, 1.0]), r"`mean` has 2 entries but the images have 1 channel"),
    (dict(mean=[0.5]), "needs both `mean` and `std`"),
    (dict(std=[0.5]), "needs both `mean` and `std`"),
    (dict(mean=[0.5], std=[0.0]), r"every `std` entry must be > 0"),
    (dict(pad=-1), r"`pad` must be >= 0"),
    (dict(crop_pad=-2), r"`crop_pad` must be >= 0"),
    (dict(workers=-1), r"`workers` must be >= 0"),
    (dict(limit_train=0), r"`limit_train` must be >= 1"),
    (dict(limit_test=-5), r"`limit_test` must be >= 1"),
])
def test_bad_options(kwargs, message):
    with pytest.raises(DataError, match=message):
        load_data("digits", (64,), **kwargs)


def test_bad_input_shape():
    with pytest.raises(DataError, match="must be positive integers"):
        load_data("digits", (0, 8, 8))


def test_missing_path(tmp_path):
    with pytest.raises(DataError, match="does not exist; expected `digits`, a folder with "
                                        r"train-images-idx3-ubyte\(\.gz\)"):
        load_data(str(tmp_path / "nope"), (64,))


def test_path_is_a_file(tmp_path):
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(DataError, match="is a file, not a folder"):
        load_data(str(tmp_path / "f.txt"), (64,))


def test_folder_of_unknown_format(tmp_path):
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(DataError, match=r"holds neither train-images-idx3-ubyte\(\.gz\) nor a "
                                        "train/ folder"):
        load_data(str(tmp_path), (64,))


def test_limits():
    full = load_data("digits", (64,))
    small = load_data("digits", (64,), limit_train=100, limit_test=30)
    assert (len(small.train), len(small.test)) == (100, 30)
    assert small.description.endswith("100 train / 30 test (limited, of 1437 / 360), 10 classes")
    assert small.train.labels.unique().numel() == 10      # a seeded shuffle, not the first 100
    again = load_data("digits", (64,), limit_train=100, limit_test=30)
    assert small.train.labels.tolist() == again.train.labels.tolist()
    # the chosen examples are examples of the full split
    full_rows = {tuple(r.tolist()) for r in full.train.source.images.flatten(1)}
    assert all(tuple(r.tolist()) in full_rows for r in small.train.source.images.flatten(1))
    bigger = load_data("digits", (64,), limit_train=5000)
    assert len(bigger.train) == 1437 and "limited" not in bigger.description
