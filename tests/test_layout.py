"""Layouts above `fit_sample` rows: fitted on a seeded sample, the rest placed among their neighbours."""

import numpy as np
import pytest

from generator.errors import AtlasError
from generator.layout import fit_layout

N, FIT_SAMPLE, CLUSTERS = 1200, 300, 4


@pytest.fixture(scope="module")
def clustered(tmp_path_factory):
    """A float16 .npy memmap of four well-separated nonnegative clusters, as collect writes activations."""
    rng = np.random.default_rng(0)
    centres = np.maximum(rng.normal(size=(CLUSTERS, 32)), 0) * 6
    labels = rng.integers(0, CLUSTERS, N)
    vectors = np.maximum(centres[labels] + rng.normal(size=(N, 32)), 0)
    path = tmp_path_factory.mktemp("layout") / "activations.npy"
    out = np.lib.format.open_memmap(path, "w+", np.float16, vectors.shape)
    out[:] = vectors
    out.flush()
    return np.load(path, mmap_mode="r"), labels


@pytest.fixture(scope="module")
def runs(clustered):
    """Two seed-1 layouts per method, fitted on demand once for the whole module (each fit costs seconds)."""
    vectors, _ = clustered
    cache = {}

    def get(method):
        if method not in cache:
            cache[method] = [fit_layout(vectors, method, n_neighbors=15, seed=1, fit_sample=FIT_SAMPLE)
                             for _ in range(2)]
        return cache[method]
    return get


@pytest.fixture(params=["umap", "tsne"])
def placed(request, clustered, runs):
    return request.param, runs(request.param), clustered[1]


def test_sample_then_place_gives_identical_bytes_for_a_seed(placed):
    _, (a, b), _ = placed
    assert a.shape == (N, 2) and a.dtype == np.float32
    assert a.min() >= 0 and a.max() <= 1
    assert a.tobytes() == b.tobytes()


def test_placed_points_land_in_their_own_clusters_region(placed):
    _, (xy, _), labels = placed
    fitted = np.sort(np.random.default_rng([1, 3]).choice(N, FIT_SAMPLE, replace=False))
    rest = np.setdiff1d(np.arange(N), fitted)
    # The nearest fitted point on the map belongs to the placed point's own cluster.
    d = np.linalg.norm(xy[rest, None] - xy[None, fitted], axis=-1)
    assert (labels[fitted][d.argmin(1)] == labels[rest]).mean() > 0.99
    # And the placed point sits nearer its own cluster's fitted centre than any other cluster's.
    centres = np.stack([xy[fitted][labels[fitted] == c].mean(0) for c in range(CLUSTERS)])
    to_centres = np.linalg.norm(xy[rest, None] - centres[None], axis=-1)
    assert (to_centres.argmin(1) == labels[rest]).mean() > 0.99


def test_a_different_seed_samples_and_places_differently(clustered, runs):
    vectors, _ = clustered
    other = fit_layout(vectors, "umap", n_neighbors=15, seed=2, fit_sample=FIT_SAMPLE)
    assert not np.array_equal(runs("umap")[0], other)


def test_up_to_fit_sample_rows_are_fitted_whole(clustered):
    vectors, _ = clustered
    small = np.asarray(vectors[:200], dtype=np.float32)
    np.testing.assert_array_equal(fit_layout(small, "umap", seed=1, fit_sample=200), fit_layout(small, "umap", seed=1))


@pytest.mark.parametrize("bad", [0, 3, 2.5, True, "50k"])
def test_a_bad_fit_sample_is_a_one_line_error(bad):
    with pytest.raises(AtlasError, match="layout.fit_sample"):
        fit_layout(np.ones((10, 3), np.float32), fit_sample=bad)
