"""Two-dimensional layout of activation vectors.

Artifact: `<cache>/layout/<layer>/layout.npy` (N, 2) float32 in [0, 1].
"""

from __future__ import annotations

import numpy as np

from .errors import AtlasError


def fit_layout(
    vectors: np.ndarray,
    method: str = "umap",
    n_neighbors: int = 20,
    min_dist: float = 0.05,
    seed: int = 0,
    clip_percentile: float = 1.0,
) -> np.ndarray:
    """Embed (N, C) vectors in 2-D by cosine similarity, then scale each axis to [0, 1].

    Each axis is clipped at `clip_percentile` and `100 - clip_percentile` first, so a
    few outliers do not squeeze the rest of the map into a corner.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    if len(vectors) < 4:
        raise AtlasError(f"only {len(vectors)} activations to lay out: give more images or positions")
    if method == "umap":
        import umap  # slow to import: numba compiles on first use

        reducer = umap.UMAP(
            n_components=2, metric="cosine", n_neighbors=min(n_neighbors, len(vectors) - 1),
            min_dist=min_dist, random_state=seed, n_jobs=1, init="spectral" if len(vectors) > 16 else "random",
        )  # a seed makes UMAP single-threaded anyway; n_jobs=1 says so and silences its warning
        xy = reducer.fit_transform(vectors)
    elif method == "tsne":
        from sklearn.manifold import TSNE

        tsne = TSNE(n_components=2, metric="cosine", init="pca", random_state=seed,
                    perplexity=float(min(30, max(2, (len(vectors) - 1) // 3))))
        xy = tsne.fit_transform(vectors)
    else:
        raise AtlasError(f"unknown layout method {method!r}: use umap or tsne")
    return normalize_layout(np.asarray(xy, dtype=np.float64), clip_percentile)


def normalize_layout(xy: np.ndarray, clip_percentile: float = 1.0) -> np.ndarray:
    lo = np.percentile(xy, clip_percentile, axis=0)
    hi = np.percentile(xy, 100 - clip_percentile, axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return np.clip((xy - lo) / span, 0.0, 1.0).astype(np.float32)
