# ---------------------------------------------------------------------------------------------
# `--data SPEC` -> DataSplits.
#
# SPEC is the word `digits`, a folder of MNIST-style idx files, or an ImageNet-layout image
# folder; the folder's contents decide which. This module validates the user's knobs, finds the
# format, plans the decode for the model's input shape, applies the quick-run limits and wires
# both splits to one BatchTransform (augmenting only the train split). load_data_for reads the
# data settings of a train block, so that training, evaluation and gradcheck map them alike.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from pcdsl.data.digits import DIGITS_MAX_VALUE, load_digits_splits
from pcdsl.data.errors import DataError
from pcdsl.data.idx import IDX_STEMS, is_idx_folder, load_idx_folder
from pcdsl.data.imagefolder import ImageFiles, find_split_folders, probe_image, scan_split
from pcdsl.data.shapes import plan_fixed_size, plan_resizable
from pcdsl.data.split import DataSplits, InMemoryImages, Split, limited_indices
from pcdsl.data.transforms import BatchTransform

if TYPE_CHECKING:
    from pcdsl.ir.config import TrainConfig

EXPECTED_FORMATS = ("expected `digits`, a folder with train-images-idx3-ubyte(.gz) and the other "
                    "MNIST idx files, or a folder with train/<class>/ and test/<class>/ "
                    "(or val/<class>/) image folders")


def default_workers() -> int:
    return min(4, os.cpu_count() or 1)


def _check_options(input_shape, pad, crop_pad, mean, std, limit_train, limit_test, workers):
    shape = tuple(input_shape)
    if not shape or not all(isinstance(d, int) and d > 0 for d in shape):
        raise DataError(f"model input shape {list(shape)} must be positive integers")
    for name, value in (("pad", pad), ("crop_pad", crop_pad), ("workers", workers)):
        if value < 0:
            raise DataError(f"`{name}` must be >= 0, got {value}")
    for name, value in (("limit_train", limit_train), ("limit_test", limit_test)):
        if value is not None and value < 1:
            raise DataError(f"`{name}` must be >= 1, got {value}")
    if (mean is None) != (std is None):
        raise DataError("normalisation needs both `mean` and `std`")
    if std is not None and any(s <= 0 for s in std):
        raise DataError(f"every `std` entry must be > 0, got {list(std)}")
    return shape


def _check_normalisation(mean, std, channels: int) -> None:
    if mean is None:
        return
    for name, values in (("mean", mean), ("std", std)):
        if len(values) != channels:
            raise DataError(f"`{name}` has {len(values)} entries but the images have "
                            f"{channels} channel(s); give one per channel")


def _limit(source, limit: int | None, purpose: str):
    chosen = limited_indices(len(source), limit, purpose)
    return source if chosen is None else source.subset(chosen)


def _counts(train, test, full_train: int, full_test: int) -> str:
    text = f"{len(train)} train / {len(test)} test"
    if (len(train), len(test)) != (full_train, full_test):
        text += f" (limited, of {full_train} / {full_test})"
    return text


def load_data(spec: str, input_shape: tuple[int, ...], *, pad: int = 0, crop_pad: int = 0,
              hflip: bool = False, mean: list[float] | None = None, std: list[float] | None = None,
              limit_train: int | None = None, limit_test: int | None = None,
              workers: int | None = None, skip_unreadable: bool = False) -> DataSplits:
    """Load the data set named by `spec`, shaped for a model with per-example `input_shape`.

    `skip_unreadable`: an image file that does not decode is left out of its batch and counted
    rather than stopping the run with an error naming it (image folders; digits and idx files
    are read whole, and a damaged one is refused)."""
    workers = default_workers() if workers is None else workers
    shape = _check_options(input_shape, pad, crop_pad, mean, std, limit_train, limit_test, workers)

    if spec == "digits":
        train, test, classes = load_digits_splits()
        kind, max_value, decode_note = "digits (scikit-learn load_digits)", DIGITS_MAX_VALUE, ""
    else:
        root = Path(spec).expanduser()
        if not root.exists():
            raise DataError(f"data path {spec!r} does not exist; {EXPECTED_FORMATS}")
        if not root.is_dir():
            raise DataError(f"data path {spec!r} is a file, not a folder; {EXPECTED_FORMATS}")
        if is_idx_folder(root):
            train, test, classes = load_idx_folder(root)
            kind, max_value, decode_note = f"MNIST idx ({spec})", 255, ""
        elif (root / "train").is_dir():
            train, test, classes, decode_note = _image_folder(root, shape, pad, workers, skip_unreadable)
            kind, max_value = f"image folder ({spec})", 255
        else:
            raise DataError(f"{spec!r} holds neither {IDX_STEMS['train_images']}(.gz) nor a "
                            f"train/ folder; {EXPECTED_FORMATS}")

    if isinstance(train, InMemoryImages):
        what = "digits" if spec == "digits" else f"the idx data in {spec}"
        channels = plan_fixed_size(tuple(train.images.shape[1:]), shape, pad, what).channels
    else:
        channels = train.plan.channels
    _check_normalisation(mean, std, channels)

    full_train, full_test = len(train), len(test)
    train = _limit(train, limit_train, "train")
    test = _limit(test, limit_test, "test")
    if isinstance(train, ImageFiles) and train.caches:
        decode_note += ", cached in memory on first pass"
    transform = BatchTransform(max_value=max_value, output_shape=shape, pad=pad,
                               crop_pad=crop_pad, hflip=hflip,
                               mean=None if mean is None else tuple(float(m) for m in mean),
                               std=None if std is None else tuple(float(s) for s in std))
    description = (f"{kind}: {_counts(train, test, full_train, full_test)}, "
                   f"{len(classes)} classes{decode_note}")
    return DataSplits(train=Split(train, transform, augment=True),
                      test=Split(test, transform, augment=False),
                      num_classes=len(classes), classes=list(classes), description=description)


def load_data_for(spec: str, input_shape: tuple[int, ...], config: "TrainConfig", *,
                  augment: bool, limit_train: int | None = None, limit_test: int | None = None,
                  workers: int | None = None, skip_unreadable: bool = False) -> DataSplits:
    """load_data with the data settings of `config`, a train block.

    `pad`, `mean` and `std` always apply: they define what the model sees. The train-time
    augmentation (`crop_pad`, `hflip`) applies only with `augment=True`, i.e. when training;
    evaluation and gradient checks load the data without it."""
    augmentation = {"crop_pad": config.crop_pad, "hflip": config.hflip} if augment else {}
    return load_data(spec, input_shape, pad=config.pad, mean=config.mean, std=config.std,
                     limit_train=limit_train, limit_test=limit_test, workers=workers,
                     skip_unreadable=skip_unreadable, **augmentation)


def _probe_first_readable(listing, skip_unreadable: bool, tries: int = 16) -> tuple[int, int, int]:
    """The stored [C, H, W] of the first training image (skipping unreadable files: of the
    first that reads among the first `tries`)."""
    problem = None
    for i in range(min(tries, len(listing)) if skip_unreadable else 1):
        try:
            return probe_image(listing.path(i))
        except DataError as error:
            problem = error
    raise problem


def _image_folder(root: Path, shape: tuple[int, ...], pad: int, workers: int, skip_unreadable: bool):
    """(train ImageFiles, test ImageFiles, classes, description note) of an image folder."""
    train_dir, test_dir = find_split_folders(root)
    train_listing, classes = scan_split(train_dir, None)
    test_listing, _ = scan_split(test_dir, classes)
    plan = plan_resizable(shape, pad, lambda: _probe_first_readable(train_listing, skip_unreadable),
                          f"the image folder {root}")
    train = ImageFiles(train_listing, plan, workers, skip_unreadable)
    test = ImageFiles(test_listing, plan, workers, skip_unreadable)
    mode = "grayscale" if plan.channels == 1 else "RGB"
    note = f", decoded as {mode} {plan.height}x{plan.width}"
    if test_dir.name != "test":
        note += f", test split from {test_dir.name}/"
    return train, test, classes, note
