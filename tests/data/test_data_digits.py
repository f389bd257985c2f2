# Tests of `--data digits` against scikit-learn's own copy of the data.
from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits

from pcdsl.data import load_data
from pcdsl.data.digits import stratified_split


def _all(split):
    xs, ys = zip(*split.batches(1000, shuffle=False))
    return torch.cat(xs), torch.cat(ys)


def test_split_sizes_classes_and_range():
    data = load_data("digits", (64,))
    assert (len(data.train), len(data.test)) == (1437, 360)
    assert data.num_classes == 10 and data.classes == [str(k) for k in range(10)]
    assert data.description == "digits (scikit-learn load_digits): 1437 train / 360 test, 10 classes"
    x, _ = _all(data.train)
    assert x.min() == 0 and x.max() == 1


def test_train_and_test_partition_sklearn_rows_scaled_by_16():
    data = load_data("digits", (64,))
    (x_train, y_train), (x_test, y_test) = _all(data.train), _all(data.test)
    ours = np.concatenate([torch.cat([x_train, x_test]).numpy() * 16,
                           torch.cat([y_train, y_test]).numpy()[:, None]], axis=1)
    bunch = load_digits()
    theirs = np.concatenate([bunch.data, bunch.target[:, None]], axis=1)
    # same multiset of (pixels, label) rows: sort both lexicographically and compare
    np.testing.assert_array_equal(ours[np.lexsort(ours.T[::-1])], theirs[np.lexsort(theirs.T[::-1])])


def test_split_is_stratified_and_fixed():
    first, second = load_data("digits", (64,)), load_data("digits", (64,))
    assert torch.equal(first.test.labels, second.test.labels)
    assert torch.equal(first.train.source.images, second.train.source.images)
    counts = torch.bincount(first.test.labels, minlength=10).double()
    totals = torch.bincount(torch.from_numpy(load_digits().target), minlength=10).double()
    assert torch.all((counts - totals * 360 / 1797).abs() < 1)


def test_stratified_split_largest_remainder():
    labels = torch.tensor([0] * 5 + [1] * 3 + [2] * 2)
    train, test = stratified_split(labels, 4, torch.Generator().manual_seed(0))
    assert sorted(train.tolist() + test.tolist()) == list(range(10))
    # exact shares 2.0, 1.2, 0.8 -> 2, 1, 1
    assert torch.bincount(labels[test], minlength=3).tolist() == [2, 1, 1]


def test_digits_as_image():
    data = load_data("digits", (1, 10, 10), pad=1)
    x, _ = next(data.test.batches(5, shuffle=False))
    assert x.shape == (5, 1, 10, 10)
    assert torch.all(x[:, :, 0, :] == 0) and torch.all(x[:, :, :, -1] == 0)
