# ---------------------------------------------------------------------------------------------
# Fixtures for the data-package tests: independent writers of the on-disk formats.
#
# The idx writer packs the header with struct by hand (not through the code under test), and
# the image folders are written with Pillow, so the loaders are checked against bytes and pixels
# the tests constructed themselves.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    """The idx encoding of `array`: 0, 0, type code, rank, big-endian uint32 dims, big-endian data."""
    big_endian = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(big_endian[type_code]).tobytes()


def write_idx(path: Path, array: np.ndarray, type_code: int = 0x08) -> Path:
    data = idx_bytes(array, type_code)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


@pytest.fixture
def idx_folder(tmp_path):
    """A tiny MNIST-like idx folder: 12 train / 6 test images of 5x4, 3 classes, mixed gz/raw.

    Returns (folder, dict of the arrays written)."""
    rng = np.random.default_rng(1234)
    arrays = {
        "train_images": rng.integers(0, 256, size=(12, 5, 4), dtype=np.uint8),
        "train_labels": np.array([0, 1, 2] * 4, dtype=np.uint8),
        "test_images": rng.integers(0, 256, size=(6, 5, 4), dtype=np.uint8),
        "test_labels": np.array([2, 1, 0, 0, 1, 2], dtype=np.uint8),
    }
    folder = tmp_path / "tinymnist"
    folder.mkdir()
    write_idx(folder / "train-images-idx3-ubyte.gz", arrays["train_images"])
    write_idx(folder / "train-labels-idx1-ubyte", arrays["train_labels"])
    write_idx(folder / "t10k-images-idx3-ubyte", arrays["test_images"])
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", arrays["test_labels"])
    return folder, arrays


def write_image(path: Path, pixels: np.ndarray) -> Path:
    """Save uint8 [H, W] or [H, W, 3] pixels; the format follows the file name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture
def image_folder(tmp_path):
    """root/train/{a_dog,b_cat}/ and root/test/{a_dog,b_cat}/ with 6x8 RGB PNGs (lossless).

    Returns (root, {relative path: pixels [H, W, 3]}). Each image is distinct, and the class
    folders are created in the order b_cat, a_dog so that sorting, not creation, must decide."""
    root = tmp_path / "imgs"
    rng = np.random.default_rng(99)
    written = {}
    for split, per_class in (("train", 3), ("test", 2)):
        for cls in ("b_cat", "a_dog"):
            for k in range(per_class):
                pixels = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
                rel = f"{split}/{cls}/{k:03d}.png"
                write_image(root / rel, pixels)
                written[rel] = pixels
    return root, written


@pytest.fixture
def shared_data() -> Path:
    """The real data sets folder, or skip the test when this checkout has none beside it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data sets not found at {SHARED_DATA} (../shared/data beside the checkout)")
    return SHARED_DATA


@pytest.fixture
def make_idx():
    """write_idx(path, array, type_code=0x08): gzipped when the name ends in .gz."""
    return write_idx


@pytest.fixture
def encode_idx():
    """idx_bytes(array, type_code=0x08): the raw idx encoding."""
    return idx_bytes


@pytest.fixture
def make_image():
    """write_image(path, pixels): save uint8 pixels with Pillow, format from the suffix."""
    return write_image
