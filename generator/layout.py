"""Two-dimensional layout of activation vectors.

Artifact: `<cache>/layout/<layer>/layout.npy` (N, 2) float32 in [0, 1].

Up to `fit_sample` vectors are embedded whole by UMAP or t-SNE. Above that, the embedding
is fitted on a seeded sample of `fit_sample` rows, and every other row is placed at the
similarity-weighted mean of the 2-D positions of its `PLACE_NEIGHBORS` nearest fitted rows
(cosine similarity after a PCA projection fitted on the sample), read in chunks so that
an (N, C) float16 memmap is never held in memory as float32. `benchmarks/bench_layout.py`
measures the time, memory and trustworthiness of both routes.
"""

from __future__ import annotations

import numpy as np

from .errors import AtlasError

# 50k fitted rows: UMAP's fit stays near a minute on two cores, and the placed rows keep
# nearly the trustworthiness of a full fit (BENCHMARKS.md, "Layout at scale").
DEFAULT_FIT_SAMPLE = 50_000
PLACE_NEIGHBORS = 10
PLACE_TEMPERATURE = 0.05  # cosine similarity; a neighbour 0.05 less similar weighs 1/e as much
PCA_DIMS = 64  # neighbour search cost scales with this; 64 found the same neighbours as 512 on clustered data
SIMILARITY_BYTES = 1 << 27  # one chunk's (rows, fit_sample) float32 similarity matrix, at most
READ_ROWS = 16_384  # rows read from the memmap at once when only their norms or projections are needed


def fit_layout(
    vectors: np.ndarray,
    method: str = "umap",
    n_neighbors: int = 20,
    min_dist: float = 0.05,
    seed: int = 0,
    clip_percentile: float = 1.0,
    *,
    fit_sample: int = DEFAULT_FIT_SAMPLE,
) -> np.ndarray:
    """Embed (N, C) vectors in 2-D by cosine similarity, then scale each axis to [0, 1].

    `vectors` may be a read-only memmap of any float dtype; above `fit_sample` rows it is
    read in chunks. Each axis is clipped at `clip_percentile` and `100 - clip_percentile`
    first, so a few outliers do not squeeze the rest of the map into a corner.
    """
    if method not in ("umap", "tsne"):
        raise AtlasError(f"unknown layout method {method!r}: use umap or tsne")
    if isinstance(fit_sample, bool) or not isinstance(fit_sample, (int, np.integer)) or fit_sample < 4:
        raise AtlasError(f"layout.fit_sample is {fit_sample!r}: give a whole number of at least 4")
    n = len(vectors)
    if n < 4:
        raise AtlasError(f"only {n} activations to lay out: give more images or positions")
    if n <= fit_sample:
        xy = _embed(np.asarray(vectors, dtype=np.float32), method, n_neighbors, min_dist, seed)
    else:
        fitted = np.sort(np.random.default_rng([seed, 3]).choice(n, int(fit_sample), replace=False))
        sample = np.asarray(vectors[fitted], dtype=np.float32)
        xy_fitted = _embed(sample, method, n_neighbors, min_dist, seed)
        xy = place_rows(vectors, fitted, sample, xy_fitted)
    return normalize_layout(np.asarray(xy, dtype=np.float64), clip_percentile)


def _embed(vectors: np.ndarray, method: str, n_neighbors: int, min_dist: float, seed: int,
           dims: int = 2) -> np.ndarray:
    """(n, dims) raw embedding coordinates of (n, C) float32 vectors."""
    if method == "umap":
        import umap  # slow to import: numba compiles on first use

        reducer = umap.UMAP(
            n_components=dims, metric="cosine", n_neighbors=min(n_neighbors, len(vectors) - 1),
            min_dist=min_dist, random_state=seed, n_jobs=1, init="spectral" if len(vectors) > 16 else "random",
        )  # a seed makes UMAP single-threaded anyway; n_jobs=1 says so and silences its warning
        return reducer.fit_transform(vectors)
    from sklearn.manifold import TSNE

    tsne = TSNE(n_components=dims, metric="cosine", init="pca", random_state=seed,
                perplexity=float(min(30, max(2, (len(vectors) - 1) // 3))))
    return tsne.fit_transform(vectors)


def place_rows(vectors: np.ndarray, fitted: np.ndarray, sample: np.ndarray, xy_fitted: np.ndarray) -> np.ndarray:
    """(N, 2) float64 positions: the fitted rows' own, and every other row placed among its nearest fitted rows.

    `vectors` (N, C) any float dtype, memmap welcome; `fitted` (S,) sorted row indices;
    `sample` (S, C) float32 = vectors[fitted]; `xy_fitted` (S, 2) their embedding. A placed
    row goes to the weighted mean of its `PLACE_NEIGHBORS` most cosine-similar fitted rows,
    weights exp((similarity - best similarity) / PLACE_TEMPERATURE), so it lands beside its
    nearest neighbour and drifts only towards neighbours nearly as close.
    """
    import torch  # a matmul and top-k over (rows, S) chunks; numpy's argpartition is 40x slower here

    n, s = len(vectors), len(fitted)
    k = min(PLACE_NEIGHBORS, s)
    mean, basis = _pca(sample)
    reference = torch.from_numpy(_project(sample, mean, basis)).T.contiguous()  # (d, S)
    xy_ref = torch.from_numpy(np.asarray(xy_fitted, dtype=np.float64))
    xy = np.empty((n, 2), dtype=np.float64)
    xy[fitted] = xy_fitted
    is_fitted = np.zeros(n, dtype=bool)
    is_fitted[fitted] = True
    rows = max(64, SIMILARITY_BYTES // (4 * s))
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        todo = np.flatnonzero(~is_fitted[start:stop])
        if not len(todo):
            continue
        block = np.asarray(vectors[start:stop], dtype=np.float32)[todo]
        query = torch.from_numpy(_project(block, mean, basis))
        similarity, nearest = torch.topk(query @ reference, k, dim=1)  # sorted, best first
        weights = torch.exp((similarity - similarity[:, :1]).double() / PLACE_TEMPERATURE)
        placed = (xy_ref[nearest] * weights[..., None]).sum(1) / weights.sum(1, keepdim=True)
        xy[start + todo] = placed.numpy()
    return xy


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)  # an all-zero row (a dead ReLU everywhere) stays zero


def _pca(sample: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (C,) and basis (C, d) float32 of the unit-normalized sample, d = min(PCA_DIMS, C)."""
    unit = _unit_rows(sample)
    mean = unit.mean(0, dtype=np.float64)
    centred = unit - mean.astype(np.float32)
    if centred.shape[1] <= PCA_DIMS:
        return mean.astype(np.float32), np.eye(centred.shape[1], dtype=np.float32)
    covariance = np.zeros((centred.shape[1],) * 2, dtype=np.float64)
    for start in range(0, len(centred), READ_ROWS):
        part = centred[start:start + READ_ROWS].astype(np.float64)
        covariance += part.T @ part
    _, vecs = np.linalg.eigh(covariance)  # ascending eigenvalues
    basis = vecs[:, ::-1][:, :PCA_DIMS]
    return mean.astype(np.float32), np.ascontiguousarray(basis, dtype=np.float32)


def _project(x: np.ndarray, mean: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """(n, d) float32 unit rows: unit-normalized x, centred, projected, normalized again."""
    return _unit_rows((_unit_rows(x) - mean) @ basis)


def normalize_layout(xy: np.ndarray, clip_percentile: float = 1.0) -> np.ndarray:
    lo = np.percentile(xy, clip_percentile, axis=0)
    hi = np.percentile(xy, 100 - clip_percentile, axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return np.clip((xy - lo) / span, 0.0, 1.0).astype(np.float32)
