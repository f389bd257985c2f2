# ---------------------------------------------------------------------------------------------
# Fitting a data set's images to the model's per-example input shape.
#
# Images are [C, H, W] after `pad`. A 1-D model input takes them flattened (its size must be
# C*H*W); a 3-D input [C', H', W'] takes them as they are. Fixed-size sources (idx, digits) never
# resample: a size mismatch is an error that suggests the `pad` that would fix it. Image folders
# are decoded to whatever the model wants: grayscale or RGB, resized to H' x W' (minus the pad).
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from pcdsl.data.errors import DataError


@dataclass(frozen=True)
class DecodePlan:
    """How to decode images so that, after `pad`, they fit the model input."""

    channels: int
    height: int     # before pad
    width: int


def _shape(dims: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(d) for d in dims) + "]"


def _pad_hint(height: int, width: int, want_h: int, want_w: int) -> str:
    """", use pad=N to ..." when a symmetric zero pad turns H x W into want_h x want_w."""
    grow = want_h - height
    if grow > 0 and grow % 2 == 0 and want_w - width == grow:
        return f"; use pad={grow // 2} to zero-pad {height}x{width} to {want_h}x{want_w}"
    return ""


def plan_fixed_size(native: tuple[int, int, int], input_shape: tuple[int, ...], pad: int,
                    what: str) -> DecodePlan:
    """Check that native [C, H, W] images, padded by `pad`, fit `input_shape` without resampling."""
    channels, height, width = native
    padded = (channels, height + 2 * pad, width + 2 * pad)
    size = padded[0] * padded[1] * padded[2]
    if len(input_shape) == 1:
        if input_shape[0] == size:
            return DecodePlan(channels, height, width)
        hint = ""
        for extra in range(0, 64):       # the pad, if any, that gives the flat size wanted
            if channels * (height + 2 * extra) * (width + 2 * extra) == input_shape[0]:
                hint = f"; use pad={extra} to zero-pad {height}x{width} to " \
                       f"{height + 2 * extra}x{width + 2 * extra}"
                break
        raise DataError(f"{what} gives images of shape {_shape(padded)} (pad={pad}), "
                        f"{size} values flattened, but the model input is "
                        f"{_shape(input_shape)}{hint}")
    if len(input_shape) == 3:
        if tuple(input_shape) == padded:
            return DecodePlan(channels, height, width)
        if input_shape[0] != channels:
            raise DataError(f"{what} gives images of shape {_shape(padded)} (pad={pad}) with "
                            f"{channels} channel(s), but the model input {_shape(input_shape)} "
                            f"has {input_shape[0]}")
        hint = _pad_hint(height, width, input_shape[1], input_shape[2])
        raise DataError(f"{what} gives images of shape {_shape(padded)} (pad={pad}) but the "
                        f"model input is {_shape(input_shape)}{hint}")
    raise DataError(f"{what} gives images of shape {_shape(padded)} (pad={pad}); the model input "
                    f"{_shape(input_shape)} must be 1-D (flattened, {size} values) or "
                    f"3-D [channels, height, width]")


def plan_resizable(input_shape: tuple[int, ...], pad: int,
                   probe_native: Callable[[], tuple[int, int, int]], what: str) -> DecodePlan:
    """Decode plan for an image folder: any channel count of 1 or 3, any size.

    `probe_native` (only called for 1-D inputs) returns [C, H, W] of a representative image:
    a flat input keeps the images' own size, and only the channel count may change."""
    if len(input_shape) == 3:
        channels, height, width = input_shape[0], input_shape[1] - 2 * pad, input_shape[2] - 2 * pad
        if channels not in (1, 3):
            raise DataError(f"{what}: the model input {_shape(input_shape)} has {channels} "
                            "channels; image folders decode to 1 (grayscale) or 3 (RGB)")
        if height < 1 or width < 1:
            raise DataError(f"{what}: pad={pad} leaves no room for the image in the model input "
                            f"{_shape(input_shape)}")
        return DecodePlan(channels, height, width)
    if len(input_shape) == 1:
        native_c, height, width = probe_native()
        for channels in (native_c, 4 - native_c):    # own channel count first, then RGB<->L
            if channels * (height + 2 * pad) * (width + 2 * pad) == input_shape[0]:
                return DecodePlan(channels, height, width)
        padded = (native_c, height + 2 * pad, width + 2 * pad)
        raise DataError(f"{what} gives images of shape {_shape(padded)} (pad={pad}), "
                        f"{padded[0] * padded[1] * padded[2]} values flattened, but the model "
                        f"input is {_shape(input_shape)}; a flat input must match the images' "
                        "own size (declare a 3-D input [C, H, W] to have them resized)")
    raise DataError(f"{what}: the model input {_shape(input_shape)} must be 1-D (flattened) or "
                    "3-D [channels, height, width]")
