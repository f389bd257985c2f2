# ---------------------------------------------------------------------------------------------
# Batch transforms: uint8 images -> the float tensor a model consumes.
#
# Every step works on a whole batch [B, C, H, W] at once (no per-image Python loop), so the
# in-memory data sets stay fast. The random steps (crop, flip) draw only from the generator they
# are handed, in a fixed order, which is what makes two runs with the same seed see identical
# augmentations regardless of how the images were loaded (memory, worker processes, cache).
#
# Order: scale to [0, 1] -> zero `pad` -> random crop -> random flip -> normalise -> reshape.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def zero_pad(images: torch.Tensor, pad: int) -> torch.Tensor:
    """Zero-pad the two spatial dims of [B, C, H, W] by `pad` pixels on every side."""
    if pad == 0:
        return images
    return F.pad(images, (pad, pad, pad, pad))


# the images are these rows (a slice, or row numbers) of a batch of that many examples
Within = tuple[slice | torch.Tensor, int]


def _rows_of(within: Within | None, batch: int) -> tuple[slice | torch.Tensor, int]:
    return within if within is not None else (slice(None), batch)


def random_crop(images: torch.Tensor, crop_pad: int, generator: torch.Generator,
                within: Within | None = None) -> torch.Tensor:
    """Each image: zero-pad by `crop_pad`, then take an H x W window at a random offset.

    Offsets are uniform in [0, 2 * crop_pad] per axis and per image (the torchvision RandomCrop
    convention). The windows are gathered with one advanced-indexing op for the whole batch.
    `within`: the images are some rows of a larger batch (a process's shard): the offsets are
    drawn for the whole batch and these rows' taken, so each image is cropped as it is there."""
    if crop_pad == 0:
        return images
    batch, _, height, width = images.shape
    mine, drawn = _rows_of(within, batch)
    padded = zero_pad(images, crop_pad)
    top = torch.randint(0, 2 * crop_pad + 1, (drawn,), generator=generator)[mine]
    left = torch.randint(0, 2 * crop_pad + 1, (drawn,), generator=generator)[mine]
    rows = top[:, None] + torch.arange(height)          # [B, H]
    cols = left[:, None] + torch.arange(width)          # [B, W]
    which = torch.arange(batch)[:, None, None]
    # channels-last so that the three index tensors broadcast to [B, H, W] and C rides along
    windows = padded.permute(0, 2, 3, 1)[which, rows[:, :, None], cols[:, None, :]]
    return windows.permute(0, 3, 1, 2).contiguous()


def random_hflip(images: torch.Tensor, generator: torch.Generator, within: Within | None = None) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2 (`within`: as random_crop)."""
    mine, drawn = _rows_of(within, images.shape[0])
    flip = (torch.rand(drawn, generator=generator) < 0.5)[mine]
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def normalise(images: torch.Tensor, mean: tuple[float, ...],
              std: tuple[float, ...]) -> torch.Tensor:
    """Per-channel (x - mean[c]) / std[c]."""
    shape = (1, len(mean), 1, 1)
    mean_t = torch.tensor(mean, dtype=images.dtype).view(shape)
    std_t = torch.tensor(std, dtype=images.dtype).view(shape)
    return (images - mean_t) / std_t


@dataclass(frozen=True)
class BatchTransform:
    """The whole input pipeline of one data set, applied per batch."""

    max_value: float                      # the uint8 value that means 1.0 (255; 16 for digits)
    output_shape: tuple[int, ...]         # the model's per-example input shape
    pad: int = 0
    crop_pad: int = 0
    hflip: bool = False
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    @property
    def augments(self) -> bool:
        return self.crop_pad > 0 or self.hflip

    def __call__(self, images: torch.Tensor, augment_with: torch.Generator | None,
                 within: Within | None = None) -> torch.Tensor:
        """uint8 [B, C, H, W] -> float32 [B, *output_shape]; augments only given a generator.
        `within`: the images are these rows of a larger batch, augmented as they are there."""
        x = images.to(torch.float32).div_(self.max_value)
        x = zero_pad(x, self.pad)
        if augment_with is not None:
            # crop before flip, each always drawing its numbers: the stream stays aligned
            x = random_crop(x, self.crop_pad, augment_with, within)
            if self.hflip:
                x = random_hflip(x, augment_with, within)
        if self.mean is not None and self.std is not None:
            x = normalise(x, self.mean, self.std)
        return x.reshape(x.shape[0], *self.output_shape)
