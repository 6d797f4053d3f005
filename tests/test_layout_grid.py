import numpy as np
import pytest

from generator.grid import Level, bin_grid, bin_level, cells_to_arrays, levels_from_arrays, parent_cells, top_classes
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


def _bin_level_by_adding_points(xy, vectors, attributions, size, min_count, top):
    """The binning this project used before bin_grid's single pass: each point added into its cell, level by level."""
    col = np.minimum((xy[:, 0] * size).astype(np.int64), size - 1)
    row = np.minimum(((1.0 - xy[:, 1]) * size).astype(np.int64), size - 1)
    cell_of = row * size + col
    counts = np.bincount(cell_of, minlength=size * size)
    kept = np.flatnonzero(counts >= min_count)
    slot = np.full(size * size, -1)
    slot[kept] = np.arange(len(kept))
    sums = np.zeros((len(kept), vectors.shape[1]), np.float64)
    scores = np.zeros((len(kept), attributions.shape[1]), np.float64)
    s = slot[cell_of]
    np.add.at(sums, s[s >= 0], np.asarray(vectors, np.float64)[s >= 0])
    np.add.at(scores, s[s >= 0], np.asarray(attributions, np.float64)[s >= 0])
    sums /= counts[kept][:, None]
    scores /= counts[kept][:, None]
    cells = []
    for i, cell in enumerate(kept):
        best = np.argsort(-scores[i], kind="stable")[:top]
        cells.append({"x": int(cell % size), "y": int(cell // size), "count": int(counts[cell]),
                      "top": [[int(k), round(float(scores[i, k]), 4)] for k in best]})
    return Level(size, cells, sums.astype(np.float32), scores.astype(np.float16))


def _random_atlas_data(n, channels, classes, dtype, seed=0):
    rng = np.random.default_rng(seed)
    xy = rng.beta(2, 3, (n, 2)).astype(np.float32)
    xy[:40] = rng.integers(0, 33, (40, 2)) / 32  # on the edges of cells, and on the atlas's border
    vectors = np.abs(rng.normal(size=(n, channels))).astype(dtype)
    attributions = (rng.normal(size=(n, classes)) * 0.02).astype(dtype)
    if classes > 9:  # ties between classes, which keep the lower class first
        attributions[::7, 3] = attributions[::7, 5]
        attributions[:, 9] = attributions[:, 2]
    return xy, vectors, attributions


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_one_pass_binning_gives_what_adding_point_by_point_gave(tmp_path, dtype):
    xy, vectors, attributions = _random_atlas_data(3000, 24, 40, dtype)
    # Read from disk as the pipeline does, in chunks that end inside the data.
    np.save(tmp_path / "v.npy", vectors)
    np.save(tmp_path / "a.npy", attributions)
    on_disk = [np.load(tmp_path / f"{n}.npy", mmap_mode="r") for n in ("v", "a")]
    levels = bin_grid(xy, *on_disk, [3, 8, 16, 32, 40], min_count=2, top=5, chunk=700)
    assert [lv.size for lv in levels] == [3, 8, 16, 32, 40]
    for level in levels:
        old = _bin_level_by_adding_points(xy, vectors, attributions, level.size, 2, 5)
        assert level.directions.dtype == np.float32 and level.scores.dtype == np.float16
        if dtype == np.float16:  # float64 sums of float16 values are exact: the same bits in any order
            assert level.cells == old.cells
            np.testing.assert_array_equal(level.directions, old.directions)
            np.testing.assert_array_equal(level.scores, old.scores)
        else:
            assert [(c["x"], c["y"], c["count"]) for c in level.cells] == \
                [(c["x"], c["y"], c["count"]) for c in old.cells]
            np.testing.assert_allclose(level.directions, old.directions, rtol=1e-6)
            np.testing.assert_allclose(level.scores.astype(np.float32), old.scores.astype(np.float32), rtol=1e-3)
    again = bin_grid(xy, vectors, attributions, [3, 8, 16, 32, 40], min_count=2, top=5)
    for a, b in zip(levels, again):
        assert a.cells == b.cells and a.directions.tobytes() == b.directions.tobytes() \
            and a.scores.tobytes() == b.scores.tobytes()


def test_top_classes_match_a_stable_sort_with_ties_and_nan():
    rng = np.random.default_rng(3)
    scores = rng.integers(-3, 4, (500, 30)).astype(np.float64)  # few values: ties everywhere
    scores[7, :] = 1.0
    scores[8, 4] = np.nan
    scores[9, :25] = np.nan  # fewer numbers than places
    for top in (1, 5, 29, 30, 40):
        best, values = top_classes(scores, top, rows=64)
        expected = np.argsort(-scores, axis=1, kind="stable")[:, :top]
        np.testing.assert_array_equal(best, expected)
        np.testing.assert_array_equal(values, np.take_along_axis(scores, expected, 1))


def test_cells_round_trip_through_their_arrays():
    xy, vectors, attributions = _random_atlas_data(400, 4, 3, np.float16)
    levels = bin_grid(xy, vectors, attributions, [2, 8, 64], min_count=1, top=5)  # 3 classes: top holds 3
    levels.append(Level(4, [], np.zeros((0, 4), np.float32), np.zeros((0, 3), np.float16)))  # every cell dropped
    directions = np.concatenate([lv.directions for lv in levels])
    scores = np.concatenate([lv.scores for lv in levels])
    back = levels_from_arrays(cells_to_arrays(levels), directions, scores)
    assert [(lv.size, lv.cells) for lv in back] == [(lv.size, lv.cells) for lv in levels]
    assert all(np.array_equal(a.directions, b.directions) for a, b in zip(back, levels))
