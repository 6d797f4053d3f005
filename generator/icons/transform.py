"""Transformation robustness, fused into one resampling per step.

Lucid's atlas recipe pads the image by 16 px (at 80 px), jitters it five times, scales it
by 0.998^(20..39), rotates it by up to 20 degrees, jitters it again and crops it back to
its own size: ten tensor ops a step. The composition is one affine map, so here it is
one `grid_sample`, with each image of the batch drawing its own scale, angle and shift,
and the area outside the image reading as mid-grey, as the padding does. The output
has the icon's own size, so the layer's centre during optimization is the centre the
fidelity check reads.

The resample's backward pass is the resample of the gradient by the inverse map, as
TensorFlow computes the gradient of its image transform (which Lucid's rotation uses),
rather than the exact adjoint, a scatter: it is one more forward resample, several
times faster on the CPU, and reads the same fidelity (BENCHMARKS.md).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

# Lucid's sets: scales 0.998^n for n in 20..39; angles weighted toward small ones.
SCALES = torch.tensor([0.998 ** n for n in range(20, 40)])
ANGLES_DEG = torch.tensor(list(range(-20, 20)) + list(range(-10, 10)) + list(range(-5, 5)) + 5 * [0],
                          dtype=torch.float32)
JITTERS = (4, 4, 8, 8, 8, 2)  # px at 80 px, each a uniform shift in [0, d]
_REFERENCE_PX = 80.0


def _grids(maps: torch.Tensor, shifts: torch.Tensor, size: int) -> torch.Tensor:
    """Sampling grids (K, size, size, 2) for affine maps p -> maps[k] p + shifts[k] in grid_sample's units."""
    # Pixel centres in [-1, 1] (align_corners=False); the grid is separable in x and y. Built as
    # (K, 2, size, size) and handed over permuted: grid_sample reads it as fast, and the sum is
    # several times faster than with the pair of coordinates innermost.
    axis = (torch.arange(size, dtype=maps.dtype, device=maps.device) * 2 + 1) / size - 1
    along_x = axis[None, None, None, :] * maps[:, :, 0, None, None] + shifts[:, :, None, None]
    return (along_x + axis[None, None, :, None] * maps[:, :, 1, None, None]).permute(0, 2, 3, 1)


def random_views(count: int, size: int, generator: torch.Generator,
                 device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Grids for `count` random views of `size` px images (shifted, scaled, rotated), and for their inverse maps."""
    scale = SCALES[torch.randint(len(SCALES), (count,), generator=generator)]
    angle = ANGLES_DEG[torch.randint(len(ANGLES_DEG), (count,), generator=generator)] * (math.pi / 180)
    # Sum of the jitters' uniform shifts, centred, in units of half the image (grid_sample's units).
    spans = torch.tensor(JITTERS, dtype=torch.float32) / _REFERENCE_PX * 2
    shift = ((torch.rand(count, 2, len(JITTERS), generator=generator) - 0.5) * spans).sum(-1)
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotation = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)
    forward = rotation / scale[:, None, None]
    inverse = rotation.transpose(1, 2) * scale[:, None, None]
    back = -(inverse @ shift[:, :, None])[:, :, 0]
    grids = _grids(torch.cat([forward, inverse]).to(device), torch.cat([shift, back]).to(device), size)
    return grids[:count], grids[count:]


class _Resample(torch.autograd.Function):
    @staticmethod
    def forward(ctx, images, grid, inverse):
        ctx.inverse = inverse
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    @staticmethod
    def backward(ctx, grad):
        back = F.grid_sample(grad.contiguous(), ctx.inverse, mode="bilinear", padding_mode="zeros",
                             align_corners=False)
        return back, None, None


def resample(images: torch.Tensor, grid: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """`images` (N, C, S, S) seen through `grid`, zero outside; the gradient goes back through `inverse`."""
    return _Resample.apply(images, grid, inverse)


def robust_transform(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random view of each image in `images` (N, 3, S, S) in [0, 1]: shifted, scaled, rotated, same size."""
    n, _, size, _ = images.shape
    grid, inverse = random_views(n, size, generator, images.device)
    return resample(images - 0.5, grid.to(images.dtype), inverse.to(images.dtype)) + 0.5


def lucid_views(signed: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The render loop's transforms: a random view of each image in (-1, 1), one resample, gradient by the inverse."""
    n, _, size, _ = signed.shape
    grid, inverse = random_views(n, size, generator, signed.device)
    return resample(signed, grid.to(signed.dtype), inverse.to(signed.dtype))


# IconSpec.transforms -> (signed images, generator) -> signed views of them.
TRANSFORMS: dict[str, Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = {"lucid": lucid_views}
