# ---------------------------------------------------------------------------------------------
# `--data digits`: scikit-learn's bundled 8x8 handwritten digits (1797 images, values 0..16).
#
# It ships inside scikit-learn, so it needs no download: the smallest real data set for smoke
# tests and CI. scikit-learn has no train/test split for it, so we make one ourselves: stratified
# (each class gives its share of the 360 test images, rounded by largest remainder) and seeded
# with a fixed torch generator, so the split is the same on every machine and every run.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import torch
from sklearn.datasets import load_digits

from pcdsl.data.split import InMemoryImages, derived_generator

DIGITS_TEST_SIZE = 360
DIGITS_MAX_VALUE = 16      # pixel values are 0..16, so x / 16 lies in [0, 1]


def stratified_split(labels: torch.Tensor, test_size: int,
                     generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, test indices), both sorted; each class contributes to the test set in
    proportion to its size, and exactly `test_size` indices go to test in total."""
    classes, counts = labels.unique(return_counts=True)
    exact = counts.double() * test_size / labels.numel()
    share = exact.floor().long()
    # hand the rounding remainder to the classes with the largest fractional parts
    leftover = test_size - int(share.sum())
    share[(exact - share).argsort(descending=True, stable=True)[:leftover]] += 1
    test_parts = []
    for cls, take in zip(classes.tolist(), share.tolist()):
        members = (labels == cls).nonzero().squeeze(1)
        test_parts.append(members[torch.randperm(members.numel(), generator=generator)[:take]])
    is_test = torch.zeros(labels.numel(), dtype=torch.bool)
    is_test[torch.cat(test_parts)] = True
    return (~is_test).nonzero().squeeze(1), is_test.nonzero().squeeze(1)


def load_digits_splits() -> tuple[InMemoryImages, InMemoryImages, list[str]]:
    """(train 1437, test 360, class names "0".."9"); images uint8 [N, 1, 8, 8] in 0..16."""
    bunch = load_digits()
    images = torch.from_numpy(bunch.images.round()).to(torch.uint8).unsqueeze(1)
    labels = torch.from_numpy(bunch.target).to(torch.int64)
    everything = InMemoryImages(images, labels)
    train_idx, test_idx = stratified_split(labels, DIGITS_TEST_SIZE,
                                           derived_generator("digits-split"))
    classes = [str(int(k)) for k in bunch.target_names]
    return everything.subset(train_idx), everything.subset(test_idx), classes
