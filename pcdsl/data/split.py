# ---------------------------------------------------------------------------------------------
# Splits: a source of uint8 images plus the transform that turns them into model inputs.
#
# A source only knows how to hand out uint8 [b, C, H, W] batches for given index lists (from a
# tensor in memory, or decoded from files by worker processes). Everything random lives here and
# in the transform, and is drawn from generators derived from (seed, epoch) alone: the batch
# order from one stream, the augmentations from another. So the same (seed, epoch) gives the
# same batches bit for bit, whichever source served the pixels and however many workers it used.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import hashlib
import math
import numbers
from dataclasses import dataclass, field
from typing import Iterator, Protocol

import torch

from pcdsl.data.transforms import BatchTransform


def derived_generator(*parts: object) -> torch.Generator:
    """A CPU generator seeded from a hash of `parts` (e.g. ("order", seed, epoch)).

    Hashing, rather than seed + epoch, keeps (seed=1, epoch=0) and (seed=0, epoch=1) apart and
    gives independent streams for different purposes; blake2b is stable across Python versions.
    Integers are normalised first: repr(numpy.int64(3)) is not repr(3)."""
    canonical = tuple(int(p) if isinstance(p, numbers.Integral) else p for p in parts)
    digest = hashlib.blake2b(repr(canonical).encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little"))


def batch_indices(count: int, batch_size: int, shuffle: bool,
                  generator: torch.Generator) -> list[torch.Tensor]:
    """0..count-1 (permuted if `shuffle`) in consecutive batches; the last may be short."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = torch.randperm(count, generator=generator) if shuffle else torch.arange(count)
    return list(order.split(batch_size))


def shard_rows(shard: tuple[int, int] | None) -> slice:
    """The rows of every batch that process `rank` of `size` takes (shard = (rank, size)): every
    size-th from its rank, so the shards of a batch differ in size by at most one example."""
    return slice(None) if shard is None else slice(shard[0], None, shard[1])


def limited_indices(count: int, limit: int | None, purpose: str) -> torch.Tensor | None:
    """The first `limit` of a fixed seeded shuffle of 0..count-1, in ascending order.

    Shuffling first makes a small limit cover all classes even when the files are stored class by
    class; sorting afterwards keeps file access sequential. None: no limit needed."""
    if limit is None or limit >= count:
        return None
    chosen = torch.randperm(count, generator=derived_generator("limit", purpose))[:limit]
    return chosen.sort().values


class ExampleSource(Protocol):
    """Where a split's pixels come from."""

    labels: torch.Tensor   # int64 [N]

    def __len__(self) -> int: ...

    def uint8_batches(self, index_batches: list[torch.Tensor]) -> Iterator[torch.Tensor]:
        """One uint8 [b, C, H, W] tensor per index batch, in order."""
        ...


@dataclass
class InMemoryImages:
    """A whole split decoded up-front: uint8 images [N, C, H, W] and int64 labels [N]."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, indices: torch.Tensor) -> "InMemoryImages":
        return InMemoryImages(self.images[indices], self.labels[indices])

    def uint8_batches(self, index_batches: list[torch.Tensor]) -> Iterator[torch.Tensor]:
        for indices in index_batches:
            yield self.images.index_select(0, indices)


# An in-memory split whose transform is deterministic (no augmentation) is transformed once and
# kept as float32, up to this size; each batch is then one gather.
TRANSFORMED_CACHE_BYTES = 1 << 30


@dataclass
class Split:
    """One split of a data set (train or test), iterated as transformed mini-batches."""

    source: ExampleSource
    transform: BatchTransform
    augment: bool          # True for the train split: random crop / flip per the transform
    _transformed: torch.Tensor | None = field(default=None, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.source)

    @property
    def labels(self) -> torch.Tensor:
        """int64 [N]: every label of the split, in storage order."""
        return self.source.labels

    def batches(self, batch_size: int, *, shuffle: bool, seed: int = 0, epoch: int = 0,
                augment: bool | None = None, start: int = 0,
                shard: tuple[int, int] | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (x float32 [B, *input_shape], y int64 [B]); the last batch may be short.

        Order and augmentation are functions of (seed, epoch) only, each batch's augmentation of
        (seed, epoch, batch number), so `start` (batches to skip, as a resumed run does) yields
        exactly the rest of the epoch without decoding what it skips. `augment=False` turns the
        train split's augmentation off (e.g. to measure train accuracy on clean images).
        `shard=(rank, size)`: this process's rows of each batch (shard_rows), transformed
        exactly as they are in the whole batch; a shard may be empty ([0, ...])."""
        rows = shard_rows(shard)
        whole = batch_indices(len(self), batch_size, shuffle, derived_generator("order", seed, epoch))[start:]
        sizes = [len(indices) for indices in whole]
        index_batches = [indices[rows] for indices in whole]
        augmenting = (self.augment if augment is None else (augment and self.augment)) and self.transform.augments
        transformed = self._transformed_images() if not augmenting else None
        if transformed is not None:
            for indices in index_batches:
                # index_select: the same gather as transformed[indices], several times faster
                yield transformed.index_select(0, indices), self.source.labels.index_select(0, indices)
            return
        pixels = self.source.uint8_batches([indices for indices in index_batches if len(indices)])
        for number, (indices, size) in enumerate(zip(index_batches, sizes), start=start):
            if not len(indices):
                yield torch.zeros(0, *self.transform.output_shape), self.source.labels[:0]
                continue
            images = next(pixels)
            mine = rows
            if images.shape[0] != len(indices):      # the source left out unreadable files
                kept = self.source.kept(indices)
                mine, indices = torch.arange(size)[rows][kept], indices[kept]
            augment_with = derived_generator("augment", seed, epoch, number) if augmenting else None
            yield (self.transform(images, augment_with, within=(mine, size)),
                   self.source.labels.index_select(0, indices))


    def _transformed_images(self) -> torch.Tensor | None:
        """The whole split transformed once (in-memory sources that fit the cache), else None.
        The transform works batch by batch, so the cached tensor equals every batch's result."""
        if not isinstance(self.source, InMemoryImages):
            return None
        if self._transformed is None:
            size = len(self.source) * 4 * math.prod(self.transform.output_shape)
            if size > TRANSFORMED_CACHE_BYTES:
                return None
            self._transformed = self.transform(self.source.images, None)
        return self._transformed


@dataclass
class DataSplits:
    """A loaded data set: both splits and what the labels mean."""

    train: Split
    test: Split
    num_classes: int
    classes: list[str]
    description: str       # one line for logs: "MNIST idx (path): 60000 train / 10000 test, ..."

    def check_readable(self, sample: int = 64) -> str | None:
        """Before training: every test file's header and end marker, and `sample` files of each
        split decoded in full, so that a corrupt image is an error naming it before an epoch is
        spent (a corrupt *training* image is then found at its batch, named, with the run's
        last checkpoint kept); when the data skip unreadable files, those found are counted
        instead. None when the data are in memory (nothing to check), else a line for the log."""
        checked = []
        for name, split, every_header in (("test", self.test, True), ("train", self.train, False)):
            check = getattr(split.source, "check_readable", None)
            if check is not None:
                checked.append(f"{check(every_header, sample)} {name}")
        if not checked:
            return None
        found = self.unreadable_files()
        return (f"checked {' and '.join(checked)} image files before training"
                + (f"; {len(found)} unreadable, left out of their batches (first: {found[0]})" if found else ""))

    def unreadable_files(self) -> list[str]:
        """'path: reason' of every file found unreadable and skipped so far, test split first."""
        return [message for split in (self.test, self.train)
                for message in getattr(split.source, "unreadable", {}).values()]
