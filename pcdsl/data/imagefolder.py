# ---------------------------------------------------------------------------------------------
# ImageNet-layout folders: root/train/<class>/*.jpg and root/test/<class>/* (or root/val/...).
#
# Built to scale to ImageNet (1.2M files): load_data only lists the files, and pixels are decoded
# lazily by a torch Dataset in DataLoader worker processes, one whole index batch per request.
# Only uint8 pixels cross the process boundary; shuffling and augmentation stay in the main
# process (split.py), so results do not depend on the number of workers.
#
# Small folders (the decoded split fits in CACHE_LIMIT_BYTES, e.g. CIFAR-10 at 150 MB) are kept
# in memory as the first pass streams through, so every later epoch is a tensor gather. File
# names live in one numpy bytes array rather than a list of str: a million Python objects would
# be copied into every forked worker as their reference counts are touched.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from pcdsl.data.errors import DataError
from pcdsl.data.shapes import DecodePlan

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".ppm", ".pgm", ".pbm",
                              ".tif", ".tiff", ".webp"})
CACHE_LIMIT_BYTES = 3 * 2**29          # 1.5 GiB of decoded uint8 pixels per split
MIN_REQUEST_IMAGES = 256               # images per worker request (see ImageFiles._decode)
GRAYSCALE_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})
TEST_FOLDER_NAMES = ("test", "val")    # the first that exists beside train/ is the test split


def is_image_file(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


@dataclass
class FileListing:
    """The image files of one split: file i is class_dirs[file_classes[i]] / file_names[i]."""

    class_dirs: list[str]          # indexed by the train class index; "" where this split lacks it
    file_names: np.ndarray         # dtype bytes (os.fsencode'd names)
    file_classes: np.ndarray       # int64 class index per file

    def __len__(self) -> int:
        return int(self.file_classes.shape[0])

    def path(self, i: int) -> str:
        return os.path.join(self.class_dirs[int(self.file_classes[i])],
                            os.fsdecode(bytes(self.file_names[i])))

    def subset(self, indices: np.ndarray) -> "FileListing":
        return FileListing(self.class_dirs, self.file_names[indices], self.file_classes[indices])


def find_split_folders(root: Path) -> tuple[Path, Path]:
    """(train folder, test folder) of an image-folder data set."""
    train = root / "train"
    if not train.is_dir():
        raise DataError(f"{root}: expected a train/<class>/ folder of images")
    for name in TEST_FOLDER_NAMES:
        if (root / name).is_dir():
            return train, root / name
    raise DataError(f"{root}: has train/ but no test/ or val/ folder; expected "
                    "test/<class>/ or val/<class>/ beside train/<class>/")


def _class_folders(split_dir: Path) -> list[str]:
    try:
        entries = list(os.scandir(split_dir))
    except OSError as exc:
        raise DataError(f"{split_dir}: could not list ({exc.strerror or exc})") from None
    folders = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
    if not folders:
        loose = sum(1 for e in entries if e.is_file() and is_image_file(e.name))
        found = f"found {loose} image file(s) directly in it" if loose else "found none"
        raise DataError(f"{split_dir}: expected one sub-folder per class "
                        f"({split_dir.name}/<class>/*.jpg), {found}")
    return folders


def scan_split(split_dir: Path, train_classes: list[str] | None) -> tuple[FileListing, list[str]]:
    """List the images of one split: (listing, class names).

    With train_classes None this is the train split and defines the classes (sorted folder
    names); otherwise every class folder must be one of train_classes."""
    folders = _class_folders(split_dir)
    classes = folders if train_classes is None else train_classes
    if train_classes is not None:
        unknown = [f for f in folders if f not in set(train_classes)]
        if unknown:
            raise DataError(f"{split_dir}: class folder(s) {', '.join(unknown[:5])} "
                            f"{'are' if len(unknown) > 1 else 'is'} not in "
                            f"{split_dir.parent / 'train'}; test classes must be train classes")
    class_index = {name: k for k, name in enumerate(classes)}
    class_dirs = [""] * len(classes)
    names: list[bytes] = []
    owners: list[np.ndarray] = []
    for folder in folders:
        directory = split_dir / folder
        try:
            files = sorted(e.name for e in os.scandir(directory)
                           if is_image_file(e.name) and e.is_file())
        except OSError as exc:
            raise DataError(f"{directory}: could not list ({exc.strerror or exc})") from None
        if not files:
            raise DataError(f"{directory}: class folder holds no image files (expected "
                            f"{', '.join(sorted(IMAGE_EXTENSIONS))})")
        class_dirs[class_index[folder]] = str(directory)
        names.extend(os.fsencode(f) for f in files)
        owners.append(np.full(len(files), class_index[folder], dtype=np.int64))
    return FileListing(class_dirs, np.array(names), np.concatenate(owners)), classes


def _header(path: str) -> tuple[str | None, str, tuple[int, int]]:
    """(detected format, mode, (width, height)) from the file's header alone."""
    try:
        with Image.open(path) as image:
            return image.format, image.mode, image.size
    except Exception as exc:      # Pillow raises many types; all mean "unreadable"
        raise DataError(f"{path}: could not read image ({type(exc).__name__}: {exc})") from None


def probe_image(path: str) -> tuple[int, int, int]:
    """[C, H, W] of an image as stored: C is 1 for grayscale modes, 3 otherwise."""
    _, mode, (width, height) = _header(path)
    return (1 if mode in GRAYSCALE_MODES else 3), height, width


# what a whole JPEG or PNG ends with: a file cut short in a copy does not
_ENDINGS = {"JPEG": b"\xff\xd9", "PNG": b"IEND\xaeB`\x82"}


def check_image_file(path: str) -> None:
    """Cheap, mostly without decoding: the header opens, and a JPEG or PNG (by its content, not
    its name) ends with its end marker within its last 4 KB; a file without one is decoded in
    full and refused only if that fails (a copy cut short in its pixels), so trailing data or a
    lost trailer after complete pixels pass."""
    kind, _, _ = _header(path)
    ending = _ENDINGS.get(kind)
    if ending is None:
        return
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 4096))
            tail = handle.read()
    except OSError as exc:
        raise DataError(f"{path}: could not read image ({exc.strerror or exc})") from None
    if ending in tail:
        return
    try:
        with Image.open(path) as image:
            image.load()
    except Exception as exc:
        raise DataError(f"{path}: the image file is truncated ({type(exc).__name__}: {exc})") from None


def decode_image(path: str, plan: DecodePlan) -> np.ndarray:
    """uint8 [C, H, W] of one file: converted to L or RGB, resized (bilinear) if needed."""
    size = (plan.width, plan.height)
    try:
        with Image.open(path) as image:
            if image.size[0] >= 2 * size[0] and image.size[1] >= 2 * size[1]:
                # JPEG: let the decoder downscale by 1/2..1/8 (never below `size`); big speed-up
                # on full-size ImageNet images, a no-op for other formats
                image.draft(None, size)
            mode = "L" if plan.channels == 1 else "RGB"
            converted = image if image.mode == mode else image.convert(mode)
            if converted.size != size:
                converted = converted.resize(size, Image.Resampling.BILINEAR)
            pixels = np.asarray(converted, dtype=np.uint8)
    except Exception as exc:      # Pillow raises many types; all mean "unreadable"
        raise DataError(f"{path}: could not read image ({type(exc).__name__}: {exc})") from None
    if plan.channels == 1:
        return pixels[None]
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


class ImageFileDataset(Dataset):
    """dataset[list of indices] -> (uint8 [b, C, H, W], None, []) or (None, error message, []);
    with `skip`, an unreadable file is left out instead: (the others' pixels, None, [(index,
    message), ...]), and so are the files already known to be (`known_bad`, not decoded again).

    Errors come back as a message rather than an exception, so the main process can raise a
    clean DataError instead of DataLoader's re-raised worker traceback."""

    def __init__(self, listing: FileListing, plan: DecodePlan, skip: bool = False,
                 known_bad: frozenset[int] = frozenset()):
        self.listing = listing
        self.plan = plan
        self.skip = skip
        self.known_bad = known_bad

    def __len__(self) -> int:
        return len(self.listing)

    def __getitem__(self, indices: list[int]) -> tuple[np.ndarray | None, str | None, list[tuple[int, str]]]:
        batch = np.empty((len(indices), self.plan.channels, self.plan.height, self.plan.width),
                         dtype=np.uint8)
        unreadable, row = [], 0
        for i in indices:
            if i in self.known_bad:
                continue
            try:
                batch[row] = decode_image(self.listing.path(i), self.plan)
            except DataError as exc:
                if not self.skip:
                    return None, str(exc), []
                unreadable.append((i, str(exc)))
                continue
            row += 1
        # numpy, not a tensor: a tensor would travel through a fresh shared-memory segment per
        # batch, which costs more than pickling the bytes for small images (measured: CIFAR-10)
        return batch[:row], None, unreadable


def _leave_stop_signals_to_the_trainer(worker_id: int) -> None:
    """A scheduler's SIGTERM (or Ctrl-C) reaches the whole process group: a decoding worker that
    died of it would make torch raise in the trainer before it could save its checkpoint. The
    workers ignore both; the trainer stops them when it is done."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _as_is(item):
    # batch_size=None DataLoader: each dataset item is already a batch, keep it untouched
    return item


class ImageFiles:
    """ExampleSource over image files; decodes in `workers` processes (0: in this process).

    `skip_unreadable`: a file that does not decode is left out of its batch (which is then
    shorter; Split.batches takes the labels of the files kept, `kept`) and remembered in
    `unreadable` (index -> message), instead of raising a DataError naming it."""

    def __init__(self, listing: FileListing, plan: DecodePlan, workers: int, skip_unreadable: bool = False):
        self.listing = listing
        self.plan = plan
        self.workers = workers
        self.skip_unreadable = skip_unreadable
        self.unreadable: dict[int, str] = {}
        self._bad = torch.zeros(len(listing), dtype=torch.bool)
        self.labels = torch.from_numpy(listing.file_classes)
        self.caches = len(listing) * plan.channels * plan.height * plan.width <= CACHE_LIMIT_BYTES
        self._cache: torch.Tensor | None = None
        self._filled: torch.Tensor | None = None
        self._missing = len(listing)

    def __len__(self) -> int:
        return len(self.listing)

    def subset(self, indices: torch.Tensor) -> "ImageFiles":
        return ImageFiles(self.listing.subset(indices.numpy()), self.plan, self.workers, self.skip_unreadable)

    def kept(self, indices: torch.Tensor) -> torch.Tensor:
        """bool per index: not a file found unreadable (and skipped)."""
        return ~self._bad[indices]

    def _found_unreadable(self, index: int, message: str) -> None:
        self.unreadable[index] = message
        self._bad[index] = True

    def check_readable(self, every_header: bool, sample: int, seed: int = 0) -> int:
        """Find unreadable files before training spends an epoch on them: every file's header
        and end marker (every_header), and `sample` files decoded in full; a bad one raises a
        DataError naming it (or, skipping unreadable files, is remembered in `unreadable`).
        Returns how many files were looked at."""
        count = len(self.listing)
        chosen = np.random.default_rng(seed).choice(count, size=min(sample, count), replace=False)
        decoded = set(int(i) for i in chosen)
        for i in (range(count) if every_header else sorted(decoded)):
            try:
                check_image_file(self.listing.path(i))
                if i in decoded:
                    decode_image(self.listing.path(i), self.plan)
            except DataError as error:
                if not self.skip_unreadable:
                    raise
                self._found_unreadable(i, str(error))
        return count if every_header else len(chosen)

    @property
    def fully_cached(self) -> bool:
        return self.caches and self._missing == 0

    def uint8_batches(self, index_batches: list[torch.Tensor]) -> Iterator[torch.Tensor]:
        if self.fully_cached:
            for indices in index_batches:
                yield self._cache[indices[self.kept(indices)]]
            return
        for indices, images in zip(index_batches, self._decode(index_batches)):
            if self.caches:
                self._remember(indices, images)
            yield images

    def _remember(self, indices: torch.Tensor, images: torch.Tensor) -> None:
        if self._cache is None:
            self._cache = torch.empty((len(self), *images.shape[1:]), dtype=torch.uint8)
            self._filled = torch.zeros(len(self), dtype=torch.bool)
        self._missing -= int((~self._filled[indices]).sum())
        self._cache[indices[self.kept(indices)]] = images
        self._filled[indices] = True      # an unreadable file is known too: it is not decoded again

    def _decode(self, index_batches: list[torch.Tensor]) -> Iterator[torch.Tensor]:
        """uint8 pixels per index batch, in order. Consecutive batches are merged into requests
        of at least MIN_REQUEST_IMAGES so that the per-request cost of a worker round trip is
        amortised even at small batch sizes."""
        requests: list[list[int]] = []
        sizes: list[list[int]] = []          # the batch sizes each request is cut back into
        for indices in index_batches:
            if not requests or len(requests[-1]) >= MIN_REQUEST_IMAGES:
                requests.append([])
                sizes.append([])
            requests[-1].extend(indices.tolist())
            sizes[-1].append(len(indices))
        dataset = ImageFileDataset(self.listing, self.plan, self.skip_unreadable, frozenset(self.unreadable))
        workers = min(self.workers, len(requests))
        if workers == 0:
            replies = (dataset[request] for request in requests)
        else:
            # its own generator: a loader's workers take their seed from it, and one drawn from
            # torch's global generator would shift the draws training makes there (the random EP
            # scheme) by how often the data were decoded rather than cached, which differs
            # between a run and its resumption, and between the processes of one run
            replies = iter(DataLoader(dataset, batch_size=None, sampler=requests,
                                      num_workers=workers, collate_fn=_as_is,
                                      worker_init_fn=_leave_stop_signals_to_the_trainer,
                                      generator=torch.Generator()))
        try:
            for (pixels, error, unreadable), request, request_sizes in zip(replies, requests, sizes):
                if error is not None:
                    raise DataError(error)
                for index, message in unreadable:
                    self._found_unreadable(index, message)
                if self.unreadable:       # each batch is short by its files left out
                    kept = self.kept(torch.tensor(request)).split(request_sizes)
                    request_sizes = [int(mask.sum()) for mask in kept]
                yield from torch.from_numpy(pixels).split(request_sizes)
        finally:
            # Stop the workers now (error or abandoned epoch). Left to a traceback that keeps
            # this frame alive, they would be shut down by a later cyclic GC, when their queues
            # may already be finalised, and each would wait out a 5 s timeout.
            replies = None
