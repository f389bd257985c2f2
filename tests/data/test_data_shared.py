# Tests against the real data sets in ../shared/data (skipped where the checkout has none).
from __future__ import annotations

import pytest
import torch

from pcdsl.data import load_data

pytestmark = pytest.mark.shared_data

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck"]


def test_mnist(shared_data):
    data = load_data(str(shared_data / "mnist"), (1, 32, 32), pad=2)
    assert (len(data.train), len(data.test), data.num_classes) == (60000, 10000, 10)
    # the well-known first labels of the MNIST files
    assert data.train.labels[:8].tolist() == [5, 0, 4, 1, 9, 2, 1, 3]
    assert data.test.labels[:5].tolist() == [7, 2, 1, 0, 4]
    assert torch.bincount(data.train.labels).tolist() == [5923, 6742, 5958, 6131, 5842,
                                                           5421, 5918, 6265, 5851, 5949]
    x, _ = next(data.test.batches(16, shuffle=False))
    assert x.shape == (16, 1, 32, 32) and x.min() == 0 and x.max() == 1
    assert torch.all(x[:, :, :2] == 0) and torch.all(x[:, :, :, -2:] == 0)


def test_fashion_mnist(shared_data):
    data = load_data(str(shared_data / "fashion-mnist"), (784,), limit_test=100)
    assert (len(data.train), len(data.test)) == (60000, 100)
    assert data.train.labels[:3].tolist() == [9, 0, 0]     # ankle boot, t-shirt, t-shirt
    assert torch.bincount(data.train.labels).tolist() == [6000] * 10


def test_cifar10_jpeg(shared_data):
    data = load_data(str(shared_data / "cifar10-jpeg"), (3, 32, 32), crop_pad=4, hflip=True,
                     mean=[0.49, 0.48, 0.45], std=[0.25, 0.24, 0.26],
                     limit_train=1000, limit_test=200, workers=2)
    assert data.classes == CIFAR10_CLASSES
    assert "50000 / 10000" in data.description
    assert data.train.labels.unique().numel() == 10
    first = [(x, y) for x, y in data.train.batches(128, shuffle=True, seed=3)]
    second = [(x, y) for x, y in data.train.batches(128, shuffle=True, seed=3)]   # from cache
    assert data.train.source.fully_cached
    assert all(torch.equal(a, c) and torch.equal(b, d) for (a, b), (c, d) in zip(first, second))
    assert first[0][0].shape == (128, 3, 32, 32)
    x, _ = next(data.test.batches(200, shuffle=False))
    assert x.shape == (200, 3, 32, 32) and -2.5 < float(x.mean()) < 2.5
