"""What the icon renderer maximizes, and which part of the layer it reads.

An objective scores each image (N,) from the layer's activations (N, C, H, W) and each
image's target (N, C). It declares what it reads: "centre" (the activation at the spatial
centre only) or "all". The engine computes only the centre's activations where an
objective reads no more (speedups/tape.py), so an objective that reads more must say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch


@dataclass(frozen=True)
class Objective:
    description: str
    score: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (acts, targets) -> (N,)
    reads: str = "all"  # "centre" or "all" (speedups.READS)

    def __call__(self, acts: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.score(acts, targets)


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


def direction(power: float) -> Objective:
    """The atlas's objective: each image toward its cell's direction at the layer's centre."""
    return Objective(f"dot * cossim^{power:g} with the direction at the centre",
                     lambda acts, targets: direction_objective(acts, targets, power), reads="centre")


def mean_direction(power: float) -> Objective:
    """The same score averaged over every position of the layer (a pattern that tiles the image)."""
    def score(acts: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        n, c, h, w = acts.shape
        flat = acts.permute(0, 2, 3, 1).reshape(n * h * w, c)
        return direction_objective(flat[:, :, None, None], targets.repeat_interleave(h * w, 0),
                                   power).view(n, h * w).mean(1)
    return Objective(f"dot * cossim^{power:g} with the direction, mean over positions", score, reads="all")


# IconSpec.objective -> its objective, given the spec's cosine power.
OBJECTIVES: dict[str, Callable[[float], Objective]] = {"direction": direction, "mean_direction": mean_direction}


def cosine_at_centre(acts: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    a = centre(acts)
    return torch.nn.functional.cosine_similarity(a, directions, dim=1)


def whitening(vectors: np.ndarray, ridge: float = 0.1, chunk: int = 8192) -> np.ndarray:
    """(C, C) inverse of the activations' second-moment matrix, with a ridge of `ridge` times its mean eigenvalue.

    Lucid's atlas recipe can aim each icon at S v instead of v: directions the layer
    rarely takes count for more, so common, high-variance directions do not crowd out
    the rest. The ridge keeps S finite when there are few activations for many channels.
    """
    count, channels = vectors.shape
    moment = np.zeros((channels, channels), np.float64)
    for start in range(0, count, chunk):
        part = np.asarray(vectors[start:start + chunk], np.float64)
        moment += part.T @ part
    moment /= max(count, 1)
    moment += ridge * np.trace(moment) / channels * np.eye(channels)
    return np.linalg.inv(moment).astype(np.float32)
