import numpy as np
import pytest

from generator.grid import Level, bin_level, parent_cells
from generator.layout import fit_layout, normalize_layout


def _clusters(n=300, dims=16, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, dims)) * 4
    labels = rng.integers(0, 3, n)
    return (centres[labels] + rng.normal(size=(n, dims))).astype(np.float32), labels


@pytest.mark.parametrize("method", ["umap", "tsne"])
def test_layout_is_seeded_normalized_and_keeps_clusters(method):
    vectors, labels = _clusters()
    a = fit_layout(vectors, method, n_neighbors=15, seed=1)
    b = fit_layout(vectors, method, n_neighbors=15, seed=1)
    assert a.shape == (300, 2) and a.dtype == np.float32
    assert a.min() >= 0 and a.max() <= 1
    np.testing.assert_array_equal(a, b)
    # Points of one cluster sit nearer each other than points of different clusters.
    d = np.linalg.norm(a[:, None] - a[None], axis=-1)
    same = labels[:, None] == labels[None]
    assert d[same].mean() < 0.5 * d[~same].mean()


def test_percentile_clipping_keeps_outliers_from_squeezing_the_map():
    xy = np.concatenate([np.random.default_rng(0).uniform(0, 1, (200, 2)), [[1000, 1000]]])
    out = normalize_layout(xy, 1.0)
    assert out.max() == 1.0 and np.median(out[:, 0]) > 0.3


def test_grid_cells_hold_means_counts_and_top_classes():
    xy = np.array([[0.1, 0.9], [0.2, 0.8], [0.15, 0.95], [0.9, 0.1], [0.6, 0.6]], np.float32)
    vectors = np.arange(15, dtype=np.float32).reshape(5, 3)
    attributions = np.array([[1, 0, 0], [3, 0, 1], [2, 0, 0], [0, 5, 0], [0, 0, 9]], np.float32)
    level = bin_level(xy, vectors, attributions, size=2, min_count=1, top=2)
    cells = {(c["x"], c["y"]): c for c in level.cells}
    top_left = cells[(0, 0)]  # y up in the layout: high y is the top row
    assert top_left["count"] == 3
    assert top_left["top"][0] == [0, 2.0]
    i = level.cells.index(top_left)
    np.testing.assert_allclose(level.directions[i], vectors[:3].mean(0))
    assert sum(c["count"] for c in level.cells) == 5
    sparse = bin_level(xy, vectors, attributions, size=2, min_count=2, top=2)
    assert [c["count"] for c in sparse.cells] == [3]
    assert len(sparse.directions) == 1


def test_each_cell_finds_the_coarser_cell_holding_its_centre():
    coarse = Level(2, [{"x": 0, "y": 0}, {"x": 1, "y": 1}], np.zeros((2, 1)), np.zeros((2, 1)))
    fine = Level(4, [{"x": 0, "y": 1}, {"x": 3, "y": 2}, {"x": 3, "y": 0}], np.zeros((3, 1)), np.zeros((3, 1)))
    assert parent_cells(fine, coarse).tolist() == [0, 1, -1]  # (3, 0) lies in the dropped cell (1, 0)
