# Tests of Split.batches: coverage, determinism in (seed, epoch), train-only augmentation.
from __future__ import annotations

import numpy as np
import pytest
import torch

from pcdsl.data import load_data


def _epoch(split, **kwargs):
    xs, ys = zip(*split.batches(64, **kwargs))
    return torch.cat(xs), torch.cat(ys), [len(y) for y in ys]


def test_every_example_once_in_batches_of_the_requested_size():
    data = load_data("digits", (64,))
    x, y, sizes = _epoch(data.train, shuffle=True, seed=5)
    assert sizes == [64] * 22 + [1437 - 22 * 64]
    clean, clean_y, _ = _epoch(data.train, shuffle=False)
    # same multiset of (image, label) rows as storage order
    rows = lambda a, b: sorted(map(tuple, torch.cat([a, b[:, None].float()], 1).tolist()))
    assert rows(x, y) == rows(clean, clean_y)


def test_unshuffled_is_storage_order():
    data = load_data("digits", (1, 8, 8))
    x, y, _ = _epoch(data.test, shuffle=False)
    assert torch.equal(y, data.test.labels)
    assert torch.equal(x, data.test.source.images.float() / 16)


def test_same_seed_same_batches_with_augmentation():
    def run():
        data = load_data("digits", (1, 12, 12), pad=2, crop_pad=2, hflip=True, mean=[0.3], std=[0.4])
        return [(x.clone(), y.clone()) for x, y in data.train.batches(50, shuffle=True, seed=11, epoch=3)]
    first, second = run(), run()
    assert len(first) == len(second)
    assert all(torch.equal(a, c) and torch.equal(b, d) for (a, b), (c, d) in zip(first, second))


def test_epoch_and_seed_change_the_order():
    data = load_data("digits", (64,))
    orders = {(seed, epoch): _epoch(data.train, shuffle=True, seed=seed, epoch=epoch)[1]
              for seed, epoch in ((0, 0), (0, 1), (1, 0))}
    assert not torch.equal(orders[0, 0], orders[0, 1])
    assert not torch.equal(orders[0, 0], orders[1, 0])
    assert not torch.equal(orders[0, 1], orders[1, 0])     # (seed, epoch) is not seed + epoch


def test_numpy_integer_seed_is_the_same_seed():
    data = load_data("digits", (64,), hflip=True)
    plain = _epoch(data.train, shuffle=True, seed=7, epoch=2)
    numpy_ints = _epoch(data.train, shuffle=True, seed=np.int64(7), epoch=np.int32(2))
    assert torch.equal(plain[0], numpy_ints[0]) and torch.equal(plain[1], numpy_ints[1])


def test_augmentation_on_train_only():
    augmented = load_data("digits", (1, 8, 8), crop_pad=2, hflip=True)
    plain = load_data("digits", (1, 8, 8))
    assert torch.equal(_epoch(augmented.test, shuffle=True, seed=1)[0],
                       _epoch(plain.test, shuffle=True, seed=1)[0])
    assert not torch.equal(_epoch(augmented.train, shuffle=True, seed=1)[0],
                           _epoch(plain.train, shuffle=True, seed=1)[0])
    # augment=False gives the clean train images, in the same order
    assert torch.equal(_epoch(augmented.train, shuffle=True, seed=1, augment=False)[0],
                       _epoch(plain.train, shuffle=True, seed=1)[0])


def test_flip_through_the_split_is_torch_flip_of_the_clean_image():
    flipping = load_data("digits", (1, 8, 8), hflip=True)
    clean, _, _ = _epoch(flipping.train, shuffle=True, seed=2, augment=False)
    out, _, _ = _epoch(flipping.train, shuffle=True, seed=2)
    flipped = torch.tensor([torch.equal(o, c.flip(-1)) and not torch.equal(o, c)
                            for o, c in zip(out, clean)])
    kept = torch.tensor([torch.equal(o, c) for o, c in zip(out, clean)])
    assert torch.all(flipped | kept)
    assert 0.4 < flipped.float().mean() < 0.6


def test_normalisation_closed_form_through_the_split():
    data = load_data("digits", (64,), mean=[0.25], std=[0.5])
    x, _, _ = _epoch(data.test, shuffle=False)
    expected = (data.test.source.images.float().flatten(1) / 16 - 0.25) / 0.5
    torch.testing.assert_close(x, expected)


def test_batch_size_must_be_positive():
    data = load_data("digits", (64,))
    with pytest.raises(ValueError, match="batch_size"):
        next(data.train.batches(0, shuffle=False))


@pytest.mark.parametrize("processes", [2, 3])
def test_shards_are_the_rows_of_the_whole_batches_augmented_alike(processes):
    """Several processes (distributed.py): each rank's batches are every `processes`-th row of
    the batch one process gets, cropped and flipped as that row is there; an epoch's last batch
    smaller than the number of processes leaves a rank an empty batch."""
    data = load_data("digits", (1, 8, 8), crop_pad=2, hflip=True, limit_train=129)
    whole = list(data.train.batches(64, shuffle=True, seed=3, epoch=1))
    shards = [list(data.train.batches(64, shuffle=True, seed=3, epoch=1, shard=(rank, processes)))
              for rank in range(processes)]
    for number, (x, y) in enumerate(whole):
        for rank in range(processes):
            part_x, part_y = shards[rank][number]
            assert torch.equal(part_x, x[rank::processes]) and torch.equal(part_y, y[rank::processes])
    assert [len(shard[-1][1]) for shard in shards] == [1] + [0] * (processes - 1)
    resumed = list(data.train.batches(64, shuffle=True, seed=3, epoch=1, start=1, shard=(1, processes)))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(resumed, shards[1][1:]))
