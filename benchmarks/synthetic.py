"""Stand-in activations at any N, for the benchmarks of the stages after collection.

A seeded mixture of `clusters` anisotropic clusters in `channels` dimensions, clipped at
zero as a ReLU layer's outputs are, written in chunks to float16 .npy memmaps as
collect.py writes real ones; each cluster has its own profile of class attributions.
Collecting a million real activations takes hours on a 2-core CPU, and the layout, grid
and tile stages depend on N, C and K, not on where the vectors came from.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

CHUNK = 65536


def write_synthetic(folder: Path, n: int, channels: int = 512, classes: int = 1000, clusters: int = 200,
                    seed: int = 0) -> tuple[Path, Path]:
    """activations.npy (n, channels) float16, attributions.npy (n, classes) float16 and positions.npy
    (n, 3) int32 in `folder`, the positions four a crop on a 7 x 7 grid, as collect.py writes them.

    Skipped when all are there at that shape already (the files are seeded: the same each time).
    """
    folder.mkdir(parents=True, exist_ok=True)
    acts_path, attr_path = folder / "activations.npy", folder / "attributions.npy"
    if not _has(folder / "positions.npy", (n, 3)):
        np.save(folder / "positions.npy", synthetic_positions(n, 7, seed))
    if _has(acts_path, (n, channels)) and _has(attr_path, (n, classes)):
        return acts_path, attr_path
    rng = np.random.default_rng(seed)
    centres = rng.gamma(0.6, 1.0, (clusters, channels)).astype(np.float32)
    # Each cluster stretched along a few directions of its own, as real activations are.
    axes = rng.normal(0, 0.6, (clusters, 4, channels)).astype(np.float32)
    profiles = np.zeros((clusters, classes), np.float32)
    for c in range(clusters):
        picked = rng.choice(classes, 5, replace=False)
        profiles[c, picked] = rng.gamma(2.0, 0.5, 5)
    weights = rng.dirichlet(np.full(clusters, 2.0))
    acts = np.lib.format.open_memmap(acts_path, "w+", np.float16, (n, channels))
    attrs = np.lib.format.open_memmap(attr_path, "w+", np.float16, (n, classes))
    for start in range(0, n, CHUNK):
        m = min(CHUNK, n - start)
        part = np.random.default_rng([seed, start])
        label = part.choice(clusters, m, p=weights)
        coeffs = part.normal(0, 1, (m, 4, 1)).astype(np.float32)
        x = centres[label] + (coeffs * axes[label]).sum(1) + part.normal(0, 0.3, (m, channels)).astype(np.float32)
        acts[start:start + m] = np.maximum(x, 0)
        attrs[start:start + m] = profiles[label] + part.normal(0, 0.05, (m, classes)).astype(np.float32)
    acts.flush()
    attrs.flush()
    del acts, attrs
    return acts_path, attr_path


def synthetic_positions(n: int, side: int, seed: int = 0, per_crop: int = 4) -> np.ndarray:
    """(n, 3) int32: crop, row and column, `per_crop` seeded places a crop on a `side` x `side` grid."""
    rng = np.random.default_rng([seed, side])
    return np.stack([np.arange(n) // per_crop, rng.integers(0, side, n), rng.integers(0, side, n)], 1).astype(np.int32)


def _has(path: Path, shape: tuple[int, int]) -> bool:
    try:
        return np.load(path, mmap_mode="r").shape == shape
    except (OSError, ValueError):
        return False
