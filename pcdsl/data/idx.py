# ---------------------------------------------------------------------------------------------
# MNIST-style idx files, parsed with numpy.
#
# The idx format (yann.lecun.com/exdb/mnist): two zero bytes, a type code, the number of
# dimensions n, then n big-endian uint32 sizes, then the values in C order, big-endian.
# We check every part of that promise (magic, type, rank, and that the payload is exactly as long
# as the sizes say), because a truncated download otherwise turns into silently wrong images.
# A folder is an idx data set when it holds the four standard files, raw or gzipped (MNIST,
# Fashion-MNIST, KMNIST all use these names).
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from pcdsl.data.errors import DataError
from pcdsl.data.split import InMemoryImages

# type code -> numpy dtype (big-endian, as the format stores it)
IDX_DTYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}

IDX_STEMS = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def parse_idx(data: bytes, source: str) -> np.ndarray:
    """Decode the bytes of one idx file into an array in native byte order.

    `source` names the file in error messages."""
    if len(data) < 4:
        raise DataError(f"{source}: not an idx file: only {len(data)} bytes, "
                        "expected at least the 4-byte magic number")
    zero0, zero1, type_code, ndim = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0 or type_code not in IDX_DTYPES:
        raise DataError(f"{source}: not an idx file: magic number {data[:4].hex()}, expected "
                        "0000 followed by a type code (08 = unsigned byte) and the rank")
    if ndim == 0:
        raise DataError(f"{source}: idx header declares 0 dimensions")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DataError(f"{source}: truncated idx header: {len(data)} bytes, the {ndim} "
                        f"dimension sizes need {header_len}")
    dims = struct.unpack(f">{ndim}I", data[4:header_len])
    dtype = IDX_DTYPES[type_code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    actual = len(data) - header_len
    if actual != expected:
        problem = "truncated" if actual < expected else "has trailing bytes"
        raise DataError(f"{source}: idx file {problem}: header declares shape "
                        f"{list(dims)} ({expected} bytes of data) but the file holds {actual}")
    values = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(dims)
    return values.astype(dtype.newbyteorder("="), copy=True)  # writable, native order


def read_idx(path: Path) -> np.ndarray:
    """Read and parse one idx file, gunzipping it when its name ends in .gz."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as stream:
                data = stream.read()
        else:
            data = path.read_bytes()
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{path}: could not decompress ({exc}); the gzip file is truncated or "
                        "corrupt, re-download it") from None
    except OSError as exc:
        raise DataError(f"{path}: could not read ({exc.strerror or exc})") from None
    return parse_idx(data, str(path))


def find_idx_file(folder: Path, stem: str) -> Path | None:
    """`stem` or `stem.gz` in `folder`; the raw file wins when both exist (no decompression)."""
    for name in (stem, stem + ".gz"):
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None


def is_idx_folder(folder: Path) -> bool:
    """True when any of the four standard idx files is present (the rest are then required)."""
    return any(find_idx_file(folder, stem) for stem in IDX_STEMS.values())


def _images_and_labels(folder: Path, images_stem: str, labels_stem: str) -> InMemoryImages:
    paths = {}
    for stem in (images_stem, labels_stem):
        found = find_idx_file(folder, stem)
        if found is None:
            raise DataError(f"{folder}: missing {stem}(.gz); an idx data folder needs "
                            + ", ".join(f"{s}(.gz)" for s in IDX_STEMS.values()))
        paths[stem] = found
    images = read_idx(paths[images_stem])
    labels = read_idx(paths[labels_stem])
    if images.ndim != 3:
        raise DataError(f"{paths[images_stem]}: images have shape {list(images.shape)}, "
                        "expected 3 dimensions [count, rows, cols]")
    if images.dtype != np.uint8:
        raise DataError(f"{paths[images_stem]}: images are {images.dtype}, expected unsigned "
                        "bytes (idx type code 08)")
    if images.shape[0] == 0:
        raise DataError(f"{paths[images_stem]}: holds no images")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{paths[labels_stem]}: labels have shape {list(labels.shape)} and type "
                        f"{labels.dtype}, expected one integer per image")
    if labels.shape[0] != images.shape[0]:
        raise DataError(f"{paths[labels_stem]}: {labels.shape[0]} labels for "
                        f"{images.shape[0]} images in {paths[images_stem].name}")
    if labels.min() < 0:
        raise DataError(f"{paths[labels_stem]}: negative label {int(labels.min())}")
    return InMemoryImages(images=torch.from_numpy(images).unsqueeze(1),   # [N, 1, H, W]
                          labels=torch.from_numpy(labels.astype(np.int64)))


def load_idx_folder(folder: Path) -> tuple[InMemoryImages, InMemoryImages, list[str]]:
    """(train, test, class names) of an idx folder; class names are "0".."K-1"."""
    train = _images_and_labels(folder, IDX_STEMS["train_images"], IDX_STEMS["train_labels"])
    test = _images_and_labels(folder, IDX_STEMS["test_images"], IDX_STEMS["test_labels"])
    if train.images.shape[2:] != test.images.shape[2:]:
        raise DataError(f"{folder}: train images are {tuple(train.images.shape[2:])} but test "
                        f"images are {tuple(test.images.shape[2:])}; both must have one size")
    num_classes = int(train.labels.max()) + 1
    if int(test.labels.max()) >= num_classes:
        raise DataError(f"{folder}: test label {int(test.labels.max())} does not occur in "
                        f"train (train labels are 0..{num_classes - 1})")
    return train, test, [str(k) for k in range(num_classes)]
