# Tests of ImageNet-layout folders, against images written with Pillow in tmp_path.
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from pcdsl.data import DataError, load_data
from pcdsl.data.split import batch_indices, derived_generator, shard_rows


def _all(split, **kwargs):
    xs, ys = zip(*split.batches(4, **kwargs))
    return torch.cat(xs), torch.cat(ys)


def _expected(written, split, classes):
    """Images in the loader's storage order: classes sorted, files sorted within a class."""
    keys = sorted((k for k in written if k.startswith(split + "/")),
                  key=lambda k: (classes.index(k.split("/")[1]), k))
    return keys, [classes.index(k.split("/")[1]) for k in keys]


def test_classes_labels_and_exact_pixels(image_folder):
    root, written = image_folder
    data = load_data(str(root), (3, 6, 8), workers=0)
    assert data.classes == ["a_dog", "b_cat"] and data.num_classes == 2
    assert (len(data.train), len(data.test)) == (6, 4)
    assert data.description == (f"image folder ({root}): 6 train / 4 test, 2 classes, "
                                "decoded as RGB 6x8, cached in memory on first pass")
    for split_name, split in (("train", data.train), ("test", data.test)):
        keys, labels = _expected(written, split_name, data.classes)
        x, y = _all(split, shuffle=False)
        assert y.tolist() == labels
        expected = torch.stack([torch.from_numpy(written[k]).permute(2, 0, 1) for k in keys])
        assert torch.equal(x, expected.float() / 255)


def test_resize_matches_pillow_bilinear(image_folder):
    root, written = image_folder
    data = load_data(str(root), (3, 4, 5), workers=0)
    keys, _ = _expected(written, "test", data.classes)
    x, _ = _all(data.test, shuffle=False)
    assert x.shape == (4, 3, 4, 5)
    for got, key in zip(x, keys):
        oracle = Image.fromarray(written[key]).resize((5, 4), Image.Resampling.BILINEAR)
        assert torch.equal(got, torch.from_numpy(np.array(oracle)).permute(2, 0, 1).float() / 255)


def test_grayscale_model_gets_pillow_luma(image_folder):
    root, written = image_folder
    data = load_data(str(root), (1, 6, 8), workers=0)
    keys, _ = _expected(written, "train", data.classes)
    x, _ = _all(data.train, shuffle=False)
    for got, key in zip(x, keys):
        luma = np.array(Image.fromarray(written[key]).convert("L"))
        assert torch.equal(got[0], torch.from_numpy(luma).float() / 255)


def test_pad_then_resize_to_the_rest(image_folder):
    root, _ = image_folder
    data = load_data(str(root), (3, 10, 10), pad=1, workers=0)
    assert "decoded as RGB 8x8" in data.description
    x, _ = _all(data.test, shuffle=False)
    assert x.shape == (4, 3, 10, 10) and torch.all(x[:, :, 0] == 0)


def test_flat_input_keeps_native_size(image_folder):
    root, written = image_folder
    rgb = load_data(str(root), (3 * 6 * 8,), workers=0)
    keys, _ = _expected(written, "test", rgb.classes)
    x, _ = _all(rgb.test, shuffle=False)
    assert torch.equal(x[0], torch.from_numpy(written[keys[0]]).permute(2, 0, 1).flatten() / 255)
    gray = load_data(str(root), (6 * 8,), workers=0)           # RGB -> L to match the flat size
    assert "grayscale 6x8" in gray.description
    with pytest.raises(DataError, match=r"\[3, 6, 8\] \(pad=0\), 144 values flattened, but the "
                                        r"model input is \[100\]"):
        load_data(str(root), (100,), workers=0)


def test_four_channel_model_is_an_error(image_folder):
    root, _ = image_folder
    with pytest.raises(DataError, match=r"\[4, 6, 8\] has 4 channels; image folders decode to 1"):
        load_data(str(root), (4, 6, 8))


def test_grayscale_png_and_jpeg_files(tmp_path, make_image):
    gray = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (16, 1))            # 16x16 ramp
    for split in ("train", "test"):
        make_image(tmp_path / split / "ramp" / "a.png", gray)
        make_image(tmp_path / split / "ramp" / "b.JPG", gray)
    data = load_data(str(tmp_path), (3, 16, 16), workers=0)
    x, _ = _all(data.train, shuffle=False)
    assert torch.equal(x[0], torch.from_numpy(gray).float().expand(3, 16, 16) / 255)   # L -> RGB
    assert (x[1] - x[0]).abs().max() < 0.1                                      # lossy JPEG
    flat = load_data(str(tmp_path), (256,), workers=0)          # native channel count first
    assert "grayscale 16x16" in flat.description


def test_val_folder_and_partial_test_classes(image_folder):
    root, _ = image_folder
    (root / "test").rename(root / "val")
    for f in (root / "val" / "b_cat").iterdir():
        f.unlink()
    (root / "val" / "b_cat").rmdir()
    data = load_data(str(root), (3, 6, 8), workers=0)
    assert "test split from val/" in data.description
    assert data.classes == ["a_dog", "b_cat"] and data.test.labels.tolist() == [0, 0]


def test_other_files_are_ignored(image_folder):
    root, _ = image_folder
    (root / "train" / "a_dog" / "notes.txt").write_text("not an image")
    (root / "train" / "a_dog" / ".hidden.png").write_bytes(b"junk")
    (root / "train" / ".cache").mkdir()
    assert len(load_data(str(root), (3, 6, 8), workers=0).train) == 6


def test_streamed_cached_and_worker_batches_are_identical(image_folder):
    root, _ = image_folder
    kwargs = dict(crop_pad=1, hflip=True, mean=[0.5, 0.4, 0.3], std=[0.2, 0.3, 0.4])
    in_process = load_data(str(root), (3, 6, 8), workers=0, **kwargs)
    with_workers = load_data(str(root), (3, 6, 8), workers=2, **kwargs)
    assert not in_process.train.source.fully_cached
    epochs = []
    for data in (in_process, with_workers):
        for _ in range(2):          # first pass streams and fills the cache, second reads it
            epochs.append(_all(data.train, shuffle=True, seed=4, epoch=1))
        assert data.train.source.fully_cached
    assert all(torch.equal(x, epochs[0][0]) and torch.equal(y, epochs[0][1]) for x, y in epochs)


def test_partial_pass_then_full_pass(image_folder):
    root, _ = image_folder
    data = load_data(str(root), (3, 6, 8), workers=0)
    reference = _all(load_data(str(root), (3, 6, 8), workers=0).train, shuffle=True, seed=9)
    next(data.train.batches(4, shuffle=True, seed=1))        # abandoned after one batch
    assert not data.train.source.fully_cached
    for _ in range(2):
        x, y = _all(data.train, shuffle=True, seed=9)
        assert torch.equal(x, reference[0]) and torch.equal(y, reference[1])


def test_limit_on_image_folder(image_folder):
    root, _ = image_folder
    data = load_data(str(root), (3, 6, 8), limit_train=4, limit_test=1, workers=0)
    assert (len(data.train), len(data.test)) == (4, 1)
    x, y = _all(data.train, shuffle=False)
    assert x.shape == (4, 3, 6, 8) and y.tolist() == sorted(y.tolist())


@pytest.mark.parametrize("workers", [0, 1])
def test_unreadable_image_names_its_path(image_folder, workers):
    root, _ = image_folder
    broken = root / "train" / "b_cat" / "001.png"
    broken.write_bytes(b"\x89PNG this is not really a png")
    data = load_data(str(root), (3, 6, 8), workers=workers)
    with pytest.raises(DataError, match="could not read image") as info:
        _all(data.train, shuffle=False)
    assert str(broken) in str(info.value)
    assert "Traceback" not in str(info.value)


def test_unreadable_first_image_when_probing(image_folder):
    root, _ = image_folder
    (root / "train" / "a_dog" / "000.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"000\.png: could not read image"):
        load_data(str(root), (144,), workers=0)       # a flat input probes the first image


@pytest.mark.parametrize("arrange, message", [
    ("no_test", r"has train/ but no test/ or val/ folder"),
    ("loose_train", r"expected one sub-folder per class \(train/<class>/\*\.jpg\), found 1 image"),
    ("empty_train", r"expected one sub-folder per class .*found none"),
    ("empty_class", r"b_cat: class folder holds no image files"),
    ("unknown_test_class", r"class folder\(s\) zebra is not in .*train; test classes must be train"),
])
def test_layout_errors(image_folder, make_image, arrange, message):
    root, _ = image_folder
    if arrange == "no_test":
        for f in sorted((root / "test").rglob("*"), reverse=True):
            f.rmdir() if f.is_dir() else f.unlink()
        (root / "test").rmdir()
    elif arrange in ("loose_train", "empty_train"):
        for f in sorted((root / "train").rglob("*"), reverse=True):
            f.rmdir() if f.is_dir() else f.unlink()
        if arrange == "loose_train":
            make_image(root / "train" / "x.png", np.zeros((2, 2), dtype=np.uint8))
    elif arrange == "empty_class":
        for f in (root / "test" / "b_cat").iterdir():
            f.unlink()
    elif arrange == "unknown_test_class":
        make_image(root / "test" / "zebra" / "z.png", np.zeros((2, 2), dtype=np.uint8))
    with pytest.raises(DataError, match=message):
        load_data(str(root), (3, 6, 8), workers=0)


def test_large_jpeg_is_downscaled_close_to_a_full_decode(tmp_path, make_image):
    # a smooth 256x192 gradient: the decoder's draft downscaling must agree with a full decode
    # followed by Pillow's bilinear resize up to JPEG noise
    rows, cols = np.mgrid[0:192, 0:256]
    pixels = np.stack([rows, cols, (rows + cols) // 2], axis=-1).astype(np.uint8)
    for split in ("train", "test"):
        make_image(tmp_path / split / "g" / "big.jpg", pixels)
    data = load_data(str(tmp_path), (3, 24, 32), workers=0)
    x, _ = next(data.test.batches(1, shuffle=False))
    with Image.open(tmp_path / "test" / "g" / "big.jpg") as full:
        oracle = np.array(full.convert("RGB").resize((32, 24), Image.Resampling.BILINEAR))
    diff = (x[0] * 255 - torch.from_numpy(oracle).permute(2, 0, 1).float()).abs()
    assert x.shape == (1, 3, 24, 32) and float(diff.mean()) < 3


# -- unreadable files found before training (issue #7) ----------------------------------------
def _truncate(path):
    """Cut the file short as an interrupted copy does: the header stays, pixels and end go."""
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * 0.6)])


@pytest.mark.parametrize("damage,name,message", [
    (_truncate, "a_dog/001.png", r"001\.png: the image file is truncated"),
    (lambda path: path.write_bytes(b"not an image at all"), "b_cat/000.png", r"000\.png: could not read image"),
], ids=["truncated", "not_an_image"])
def test_a_bad_test_image_is_named_before_training(image_folder, damage, name, message):
    root, _ = image_folder
    damage(root / "test" / name)
    data = load_data(str(root), (3, 6, 8), workers=0)
    with pytest.raises(DataError, match=message):
        data.check_readable()


def test_a_corrupt_training_image_in_the_sample_is_named(image_folder):
    root, _ = image_folder
    for path in (root / "train").rglob("*.png"):      # every one: the sample must meet one
        _truncate(path)
    data = load_data(str(root), (3, 6, 8), workers=0)
    with pytest.raises(DataError, match=r"train/.*\.png: (the image file is truncated|could not read image)"):
        data.check_readable()


def test_readable_folders_pass_and_say_what_was_checked(image_folder):
    root, _ = image_folder
    data = load_data(str(root), (3, 6, 8), workers=0)
    assert data.check_readable() == "checked 4 test and 6 train image files before training"


def test_readable_files_without_the_usual_ending_pass(image_folder, make_image):
    """A PNG named .jpg (web-scraped sets, ImageNet's n02105855_2933.JPEG), a JPEG with data
    after its end marker, a PNG whose trailer was lost after complete pixels: all decode."""
    root, _ = image_folder
    pixels = np.random.default_rng(1).integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    png = make_image(root / "test" / "a_dog" / "900.png", pixels)
    png.rename(root / "test" / "a_dog" / "900.jpg")
    jpeg = make_image(root / "test" / "b_cat" / "901.jpg", pixels)
    jpeg.write_bytes(jpeg.read_bytes() + b"\0" * 8192)
    lost = make_image(root / "test" / "b_cat" / "902.png", pixels)
    lost.write_bytes(lost.read_bytes()[:-12])
    data = load_data(str(root), (3, 6, 8), workers=0)
    assert data.check_readable().startswith("checked 7 test")


# -- skipping unreadable files (issue #7, opt-in) ---------------------------------------------
# Oracle: the same folder before the damage, whose batches (same seed and epoch) must be the
# skipping loader's with the damaged file's row taken out, every other row augmented alike.
def _damage_copy(root, tmp_path, names):
    import shutil
    damaged = tmp_path / "damaged"
    shutil.copytree(root, damaged)
    for name in names:
        (damaged / name).write_bytes(b"not an image at all")
    return damaged


@pytest.mark.parametrize("workers", [0, 1])
@pytest.mark.parametrize("shard", [None, (0, 2), (1, 2)])
def test_skipping_leaves_only_the_unreadable_rows_out(image_folder, tmp_path, workers, shard):
    root, _ = image_folder
    damaged = _damage_copy(root, tmp_path, ["train/a_dog/001.png"])
    options = dict(crop_pad=1, hflip=True, workers=workers)
    clean = load_data(str(root), (3, 6, 8), **options)
    skipping = load_data(str(damaged), (3, 6, 8), skip_unreadable=True, **options)
    bad = skipping.train.source.listing.path(1)           # a_dog/001.png, second in storage order
    assert bad.endswith("a_dog/001.png")
    sharding = {"shard": shard} if shard else {}
    met = False             # whether this shard met the damaged file
    for epoch in (0, 1):     # the second epoch: the file is known bad (and, with workers, not decoded again)
        order = batch_indices(6, 4, True, derived_generator("order", 2, epoch))
        whole = list(clean.train.batches(4, shuffle=True, seed=2, epoch=epoch, **sharding))
        left = list(skipping.train.batches(4, shuffle=True, seed=2, epoch=epoch, **sharding))
        for indices, (x, y), (x_skip, y_skip) in zip(order, whole, left, strict=True):
            keep = indices[shard_rows(shard)] != 1
            assert torch.equal(x_skip, x[keep]) and torch.equal(y_skip, y[keep])
            met = met or not keep.all()
    assert list(skipping.train.source.unreadable) == ([1] if met else [])
    if met:
        assert skipping.unreadable_files()[0].startswith(str(damaged / "train" / "a_dog" / "001.png"))


def test_skipping_check_counts_instead_of_refusing(image_folder, tmp_path):
    root, _ = image_folder
    damaged = _damage_copy(root, tmp_path, ["test/b_cat/000.png"])
    with pytest.raises(DataError, match=r"000\.png: could not read image"):
        load_data(str(damaged), (3, 6, 8), workers=0).check_readable()
    data = load_data(str(damaged), (3, 6, 8), workers=0, skip_unreadable=True)
    line = data.check_readable()
    assert line.startswith("checked 4 test and 6 train image files before training; 1 unreadable, left out")
    assert "b_cat/000.png" in line
    x, y = _all(data.test, shuffle=False)
    clean_x, clean_y = _all(load_data(str(root), (3, 6, 8), workers=0).test, shuffle=False)
    # storage order a_dog 000, 001, b_cat 000, 001: the third is gone
    assert torch.equal(x, clean_x[[0, 1, 3]]) and torch.equal(y, clean_y[[0, 1, 3]])


def test_a_first_training_image_that_does_not_read_is_skipped_when_probing(image_folder, tmp_path):
    root, _ = image_folder
    damaged = _damage_copy(root, tmp_path, ["train/a_dog/000.png"])
    data = load_data(str(damaged), (144,), workers=0, skip_unreadable=True)    # a flat input probes
    assert len(data.train) == 6 and data.train.source.plan.height == 6


def test_decoding_workers_leave_the_global_random_generator_alone(image_folder):
    """Training draws from torch's global generator (the random EP scheme): how often the data
    are decoded rather than cached must not shift those draws."""
    root, _ = image_folder
    data = load_data(str(root), (3, 6, 8), workers=1)
    torch.manual_seed(5)
    before = torch.get_rng_state()
    _all(data.train, shuffle=True, seed=1)
    assert torch.equal(torch.get_rng_state(), before)
