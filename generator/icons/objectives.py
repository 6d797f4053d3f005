"""What the icon renderer maximizes."""

from __future__ import annotations

import numpy as np
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
