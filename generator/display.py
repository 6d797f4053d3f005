"""How pixels of any channel count are shown: RGB as it is, anything else through a colour map.

An icon or an example of a 1-channel model (a spectrogram, a greyscale scan) is one value
a pixel; a model with 2 or 4+ channels has no colours of its own. Both are shown as the
mean of their channels through viridis, which reads dark to light in order and survives
colour blindness and greyscale printing. The icons cache keeps every channel; only the
published tiles and examples are mapped.
"""

from __future__ import annotations

import numpy as np

COLOUR_MAP = "viridis"
# Matplotlib's viridis at 17 even steps, as 8-bit RGB; between them, linear.
_VIRIDIS = np.array([
    (68, 1, 84), (72, 24, 106), (71, 45, 123), (66, 64, 134), (59, 82, 139), (51, 99, 141), (44, 114, 142),
    (38, 130, 142), (33, 145, 140), (31, 160, 136), (40, 174, 128), (63, 188, 115), (94, 201, 98), (132, 212, 75),
    (173, 220, 48), (216, 226, 25), (253, 231, 37)], np.float64)
_TABLE = np.stack([np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(_VIRIDIS)), _VIRIDIS[:, c])
                   for c in range(3)], 1).round().astype(np.uint8)  # (256, 3)


def colour_mapped(channels: int) -> bool:
    """Whether pixels of `channels` channels are shown through the colour map."""
    return channels != 3


def display_rgb(pixels: np.ndarray) -> np.ndarray:
    """(..., C) uint8 -> (..., 3) uint8 to show: RGB unchanged, other channel counts colour-mapped."""
    if pixels.shape[-1] == 3:
        return pixels
    value = pixels[..., 0] if pixels.shape[-1] == 1 else pixels.mean(-1).round().astype(np.uint8)
    return _TABLE[value]
