"""A straightforward PyTorch port of Lucid's activation-atlas icon recipe: the baseline to beat.

What a typical port does: the whole network runs forward at every step (a hook reads
the layer, the rest of the network runs anyway), each of Lucid's transforms is its own
tensor op with one random draw per step for the whole batch, and everything stays in
the default memory format. The image parameterization, objective and optimizer are the
same as the library's, so the comparison isolates how the step is computed.

Lucid's transform list for atlas icons: pad 16, jitter 4, 4, 8, 8, 8, random scale in
0.998^(20..39), random rotation in [-20, 20] degrees (weighted toward 0), jitter 2, and
a crop back to the icon's size.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from generator.icons.objectives import direction_objective
from generator.icons.param import FourierImage
from generator.models import LoadedModel

SCALES = [0.998 ** n for n in range(20, 40)]
ANGLES = list(range(-20, 20)) + list(range(-10, 10)) + list(range(-5, 5)) + 5 * [0]


def _jitter(x: torch.Tensor, d: int, g: torch.Generator) -> torch.Tensor:
    dx, dy = (int(v) for v in torch.randint(0, d + 1, (2,), generator=g))
    h, w = x.shape[-2:]
    return x[..., dy:h - d + dy, dx:w - d + dx]


def _scale(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    s = SCALES[int(torch.randint(len(SCALES), (1,), generator=g))]
    size = max(1, round(x.shape[-1] * s))
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def _rotate(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    a = math.radians(ANGLES[int(torch.randint(len(ANGLES), (1,), generator=g))])
    theta = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]])
    grid = F.affine_grid(theta.expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _crop_or_pad_to(x: torch.Tensor, size: int) -> torch.Tensor:
    h = x.shape[-1]
    if h > size:
        o = (h - size) // 2
        return x[..., o:o + size, o:o + size]
    p = size - h
    return F.pad(x, (p // 2, p - p // 2, p // 2, p - p // 2), value=0.5)


def lucid_transforms(x: torch.Tensor, size: int, g: torch.Generator) -> torch.Tensor:
    x = F.pad(x, (16, 16, 16, 16), value=0.5)
    for d in (4, 4, 8, 8, 8):
        x = _jitter(x, d, g)
    x = _rotate(_scale(x, g), g)
    return _crop_or_pad_to(_jitter(x, 2, g), size)


def baseline_render(model: LoadedModel, layer: str, directions: torch.Tensor, size: int, steps: int,
                    seed: int = 0, learning_rate: float = 0.05, power: float = 2.0,
                    observe: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
    """Icons (N, 3, size, size) for directions (N, C). `observe(step, images)` sees the images after each step."""
    g = torch.Generator().manual_seed(seed)
    targets = F.normalize(directions.float(), dim=1)
    image = FourierImage(len(directions), size, g)
    optimizer = torch.optim.Adam(image.parameters(), lr=learning_rate)
    captured = {}
    handle = model.layer(layer).register_forward_hook(lambda _m, _i, out: captured.__setitem__("a", out))
    try:
        for step in range(1, steps + 1):
            optimizer.zero_grad()
            model.net(model.normalize(lucid_transforms(image(), size, g)))  # the whole network, every step
            (-direction_objective(captured["a"], targets, power).sum()).backward()
            optimizer.step()
            if observe is not None:
                with torch.no_grad():
                    observe(step, image())
    finally:
        handle.remove()
    with torch.no_grad():
        return image()
