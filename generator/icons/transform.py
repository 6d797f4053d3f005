"""Transformation robustness, fused into one resampling per step.

Lucid's standard list (pad, jitter, random scale, random rotate, jitter) would cost
five tensor ops per step; the same family of transforms is one affine resample:
each image in the batch gets its own random scale, rotation and shift, and the
area outside the image reads as mid-grey, as padding with 0.5 does.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def robust_transform(images: torch.Tensor, generator: torch.Generator, pad_frac: float = 0.1,
                     jitter_frac: float = 0.06, scale_range: float = 0.1,
                     rotate_deg: float = 10.0) -> torch.Tensor:
    """A random view of each image in `images` (N, 3, S, S): padded, shifted, scaled, rotated.

    The output is (N, 3, S', S') with S' = S * (1 + 2 * pad_frac - jitter_frac), the
    size that Lucid's pad-then-crop pipeline ends at.
    """
    n, _, size, _ = images.shape
    out_size = max(8, round(size * (1 + 2 * pad_frac - jitter_frac)))
    u = torch.rand(n, 4, generator=generator)
    scale = 1 + (u[:, 0] * 2 - 1) * scale_range
    angle = (u[:, 1] * 2 - 1) * math.radians(rotate_deg)
    shift = (u[:, 2:] * 2 - 1) * jitter_frac  # in units of half the image
    # affine_grid maps output coordinates in [-1, 1] to input coordinates; the output
    # window spans out_size / size of the input, so coordinates are scaled by that ratio.
    ratio = out_size / size / scale
    cos, sin = torch.cos(angle) * ratio, torch.sin(angle) * ratio
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    theta = theta.to(images.device, images.dtype)
    grid = F.affine_grid(theta, [n, 3, out_size, out_size], align_corners=False)
    return F.grid_sample(images - 0.5, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + 0.5
