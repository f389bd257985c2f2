# ---------------------------------------------------------------------------------------------
# A tiny in-memory data set with the interface of pcdsl.data (Split, DataSplits).
#
# The runtime only duck-types the data: `len(split)`, `split.batches(batch_size, shuffle=, seed=,
# epoch=)` deterministic in (seed, epoch), and DataSplits' fields. The synthetic task is Gaussian
# clusters, one per class: learnable by a small MLP within a couple of epochs.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import torch

from pcdsl.data.split import shard_rows


@dataclass
class ArraySplit:
    x: torch.Tensor          # float32 [N, *input_shape]
    y: torch.Tensor          # int64 [N]
    served: list = field(default_factory=list)   # (seed, epoch, first batch) per batches() call

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def batches(self, batch_size: int, *, shuffle: bool, seed: int = 0, epoch: int = 0, start: int = 0,
                shard: tuple[int, int] | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        generator = torch.Generator().manual_seed(1_000_003 * seed + epoch)
        order = torch.randperm(len(self), generator=generator) if shuffle else torch.arange(len(self))
        for number, indices in enumerate(order.split(batch_size)):
            if number < start:
                continue
            indices = indices[shard_rows(shard)]
            x, y = self.x[indices], self.y[indices]
            if number == 0:
                self.served.append((seed, epoch, x.clone(), y.clone()))
            yield x, y


@dataclass
class FakeSplits:
    train: ArraySplit
    test: ArraySplit
    num_classes: int
    classes: list[str]
    description: str


def gaussian_clusters(n_train: int = 256, n_test: int = 128, dim: int = 16, num_classes: int = 10,
                      spread: float = 0.5, seed: int = 0) -> FakeSplits:
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(num_classes, dim, generator=generator)

    def draw(n: int) -> ArraySplit:
        y = torch.randint(0, num_classes, (n,), generator=generator)
        x = centres[y] + spread * torch.randn(n, dim, generator=generator)
        return ArraySplit(x.float(), y)

    return FakeSplits(train=draw(n_train), test=draw(n_test), num_classes=num_classes,
                      classes=[str(c) for c in range(num_classes)],
                      description=f"gaussian clusters: {n_train} train / {n_test} test, "
                                  f"{num_classes} classes, dim {dim}, seed {seed}")
