# ---------------------------------------------------------------------------------------------
# load_data_for: a train config's data settings reach the loader, augmentation only when asked.
# Oracles: the bundled digits pixels transformed by hand with numpy (scale by 1/16, zero-pad,
# normalise), and load_data called with the same settings spelled out.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from pcdsl.data import load_data, load_data_for

# only the five data settings: shows that nothing else of a TrainConfig is read
CONFIG = SimpleNamespace(pad=1, crop_pad=2, hflip=True, mean=[0.25], std=[0.5])
SHAPE = (1, 10, 10)


def by_hand(split) -> np.ndarray:
    """The split's stored 8x8 uint8 digits as the model should see them under CONFIG."""
    pixels = split.source.images.numpy().astype(np.float64) / 16           # digits max out at 16
    padded = np.pad(pixels, ((0, 0), (0, 0), (1, 1), (1, 1)))               # pad=1 with zeros
    return (padded - 0.25) / 0.5


def in_order(split) -> torch.Tensor:
    return torch.cat([x for x, _ in split.batches(100, shuffle=False)])


def test_pad_mean_and_std_come_from_the_config():
    data = load_data_for("digits", SHAPE, CONFIG, augment=False)
    for split in (data.train, data.test):
        np.testing.assert_allclose(in_order(split).numpy(), by_hand(split), rtol=0, atol=1e-6)


def test_without_augment_the_train_split_is_not_augmented():
    data = load_data_for("digits", SHAPE, CONFIG, augment=False)
    explicit = load_data("digits", SHAPE, pad=1, mean=[0.25], std=[0.5])
    mine = list(data.train.batches(64, shuffle=True, seed=3, epoch=1))
    theirs = list(explicit.train.batches(64, shuffle=True, seed=3, epoch=1))
    assert all(torch.equal(a, c) and torch.equal(b, d) for (a, b), (c, d) in zip(mine, theirs))


def test_with_augment_the_train_split_crops_and_flips_as_configured():
    data = load_data_for("digits", SHAPE, CONFIG, augment=True)
    explicit = load_data("digits", SHAPE, pad=1, crop_pad=2, hflip=True, mean=[0.25], std=[0.5])
    mine = list(data.train.batches(64, shuffle=True, seed=3, epoch=1))
    theirs = list(explicit.train.batches(64, shuffle=True, seed=3, epoch=1))
    assert len(mine) == len(theirs)
    assert all(torch.equal(a, c) and torch.equal(b, d) for (a, b), (c, d) in zip(mine, theirs))
    # the augmentation is really on for training, and the test split stays clean
    assert not np.allclose(in_order(data.train).numpy(), by_hand(data.train))
    np.testing.assert_allclose(in_order(data.test).numpy(), by_hand(data.test), rtol=0, atol=1e-6)


def test_limits_are_passed_on():
    data = load_data_for("digits", SHAPE, CONFIG, augment=False, limit_train=100, limit_test=30,
                         workers=0)
    assert (len(data.train), len(data.test)) == (100, 30)
