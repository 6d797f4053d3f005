"""What the icon renderer maximizes."""

from __future__ import annotations

import torch


def centre(acts: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C): the activation at the spatial centre."""
    _, _, height, width = acts.shape
    return acts[:, :, height // 2, width // 2]


def direction_objective(acts: torch.Tensor, directions: torch.Tensor, power: float,
                        floor: float = 0.1) -> torch.Tensor:
    """dot(a, v) * max(floor, cossim(a, v)) ** power at the centre, per image: (N,).

    The dot product alone rewards any large activation; the cosine term keeps it
    pointing along v (Carter et al. 2019). `directions` are unit vectors (N, C).
    """
    a = centre(acts)
    dot = (a * directions).sum(1)
    cos = dot / a.norm(dim=1).clamp_min(1e-8)
    return dot * cos.clamp_min(floor) ** power


def cosine_at_centre(acts: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    a = centre(acts)
    return torch.nn.functional.cosine_similarity(a, directions, dim=1)
