"""Transformation robustness, fused into one resampling per step.

Lucid's atlas recipe pads the image by 16 px (at 80 px), jitters it five times, scales it
by 0.998^(20..39), rotates it by up to 20 degrees, jitters it again and crops it back to
its own size: ten tensor ops a step. The composition is one affine map, so here it is
one `grid_sample`, with each image of the batch drawing its own scale, angle and shift,
and the area outside the image reading as mid-grey, as the padding does. The output
has the icon's own size, so the layer's centre during optimization is the centre the
fidelity check reads.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Lucid's sets: scales 0.998^n for n in 20..39; angles weighted toward small ones.
SCALES = torch.tensor([0.998 ** n for n in range(20, 40)])
ANGLES_DEG = torch.tensor(list(range(-20, 20)) + list(range(-10, 10)) + list(range(-5, 5)) + 5 * [0],
                          dtype=torch.float32)
JITTERS = (4, 4, 8, 8, 8, 2)  # px at 80 px, each a uniform shift in [0, d]
_REFERENCE_PX = 80.0


def robust_transform(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random view of each image in `images` (N, 3, S, S): shifted, scaled, rotated, same size."""
    n, _, size, _ = images.shape
    scale = SCALES[torch.randint(len(SCALES), (n,), generator=generator)]
    angle = ANGLES_DEG[torch.randint(len(ANGLES_DEG), (n,), generator=generator)] * (math.pi / 180)
    # Sum of the jitters' uniform shifts, centred, in units of half the image (affine_grid's units).
    spans = torch.tensor(JITTERS, dtype=torch.float32) / _REFERENCE_PX * 2
    shift = ((torch.rand(n, 2, len(JITTERS), generator=generator) - 0.5) * spans).sum(-1)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    theta = theta.to(images.device, images.dtype)
    grid = F.affine_grid(theta, [n, 3, size, size], align_corners=False)
    return F.grid_sample(images - 0.5, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + 0.5
