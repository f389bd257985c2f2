# Tests of the batch transforms: padding, crop and flip properties, normalisation in closed form.
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pcdsl.data.transforms import BatchTransform, normalise, random_crop, random_hflip, zero_pad


def _distinct_images(batch, channels, height, width):
    # every pixel different and non-zero, so a window position is identified by its values
    return torch.arange(1, batch * channels * height * width + 1, dtype=torch.float32).reshape(
        batch, channels, height, width)


def test_zero_pad():
    x = _distinct_images(2, 3, 4, 5)
    padded = zero_pad(x, 2)
    assert padded.shape == (2, 3, 8, 9)
    assert torch.equal(padded[:, :, 2:6, 2:7], x)
    assert padded.sum() == x.sum()


@settings(max_examples=40, deadline=None)
@given(batch=st.integers(1, 6), channels=st.integers(1, 3), height=st.integers(1, 7),
       width=st.integers(1, 7), crop_pad=st.integers(1, 4), seed=st.integers(0, 2**31))
def test_crop_is_a_window_of_the_zero_padded_image(batch, channels, height, width, crop_pad, seed):
    x = _distinct_images(batch, channels, height, width)
    out = random_crop(x, crop_pad, torch.Generator().manual_seed(seed))
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (crop_pad,) * 4)
    for b in range(batch):
        windows = [(top, left) for top in range(2 * crop_pad + 1) for left in range(2 * crop_pad + 1)
                   if torch.equal(out[b], padded[b, :, top:top + height, left:left + width])]
        assert windows, f"image {b} is no window of its padded original"


def test_crop_offsets_cover_the_range():
    x = _distinct_images(400, 1, 3, 3)
    out = random_crop(x, 1, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    seen = set()
    for b in range(400):
        for top in range(3):
            for left in range(3):
                if torch.equal(out[b], padded[b, :, top:top + 3, left:left + 3]):
                    seen.add((top, left))
    assert seen == {(t, l) for t in range(3) for l in range(3)}


def test_flip_is_torch_flip_or_identity_about_half_the_time():
    x = _distinct_images(1000, 2, 3, 4)
    out = random_hflip(x, torch.Generator().manual_seed(3))
    flipped = torch.tensor([torch.equal(o, i.flip(-1)) for o, i in zip(out, x)])
    kept = torch.tensor([torch.equal(o, i) for o, i in zip(out, x)])
    assert torch.all(flipped ^ kept)
    assert 430 < int(flipped.sum()) < 570      # Binomial(1000, 1/2): about 4.4 sigma either side


def test_normalise_closed_form():
    x = torch.rand(4, 3, 2, 2)
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.3, 0.4)
    out = normalise(x, mean, std)
    for c in range(3):
        torch.testing.assert_close(out[:, c], (x[:, c] - mean[c]) / std[c])


def test_batch_transform_pipeline_order():
    images = torch.tensor([[[[0, 51], [102, 255]]]], dtype=torch.uint8)          # [1, 1, 2, 2]
    transform = BatchTransform(max_value=255, output_shape=(16,), pad=1, mean=(0.2,), std=(0.5,))
    out = transform(images, None)
    assert out.shape == (1, 16)
    grid = out.reshape(4, 4)
    # padding happens in [0, 1] space, before normalisation: border = (0 - 0.2) / 0.5
    torch.testing.assert_close(grid[0], torch.full((4,), -0.4))
    torch.testing.assert_close(grid[1:3, 1:3], (torch.tensor([[0, 51], [102, 255]]) / 255 - 0.2) / 0.5)


def test_no_generator_means_no_augmentation():
    images = torch.randint(0, 256, (5, 3, 4, 4), dtype=torch.uint8)
    augmenting = BatchTransform(max_value=255, output_shape=(3, 4, 4), crop_pad=2, hflip=True)
    plain = BatchTransform(max_value=255, output_shape=(3, 4, 4))
    assert torch.equal(augmenting(images, None), plain(images, None))
    assert not torch.equal(augmenting(images, torch.Generator().manual_seed(0)), plain(images, None))


@pytest.mark.parametrize("max_value", [255, 16])
def test_scaling(max_value):
    images = torch.arange(0, max_value + 1, dtype=torch.uint8).reshape(1, 1, 1, -1)
    out = BatchTransform(max_value=max_value, output_shape=(1, 1, max_value + 1))(images, None)
    torch.testing.assert_close(out, images.float() / max_value, rtol=0, atol=0)
