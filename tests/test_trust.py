"""Where the layout can be trusted: the share of neighbours kept, per activation, per cell and per layer."""

import numpy as np

from generator import trust
from generator.grid import bin_grid, row_cells


def _clusters(n=2000, seed=0):
    """Points of a patch of the sphere, turned into 32 dimensions, and their two angles: a layout that is the
    angles keeps the neighbourhoods of cosine similarity."""
    rng = np.random.default_rng(seed)
    sheet = rng.uniform(size=(n, 2))
    a, b = sheet[:, 0] * 0.6, sheet[:, 1] * 0.6
    sphere = np.stack([np.cos(a) * np.cos(b), np.sin(a) * np.cos(b), np.sin(b)], 1)
    turn = np.linalg.qr(rng.normal(size=(32, 32)))[0][:3]  # orthonormal rows: cosines unchanged
    return (sphere @ turn).astype(np.float32), sheet


def test_a_faithful_map_keeps_neighbours_and_a_shuffled_one_does_not():
    vectors, sheet = _clusters()
    sample = np.arange(0, 2000, 7)
    faithful = trust.neighbours_kept(vectors, sheet, sample)
    shuffled = trust.neighbours_kept(vectors, sheet[np.random.default_rng(1).permutation(2000)], sample)
    assert faithful.mean() > 0.8
    assert shuffled.mean() < 0.05  # by chance: 10 of 2,000 rows
    assert faithful.shape == (len(sample),) and ((0 <= faithful) & (faithful <= 1)).all()


def test_the_sample_takes_rows_from_every_cell_and_is_seeded():
    cells = np.random.default_rng(0).integers(-1, 30, 5000)
    picked = trust.pick_sample(cells, seed=3)
    assert np.array_equal(picked, trust.pick_sample(cells, seed=3))
    assert not np.array_equal(picked, trust.pick_sample(cells, seed=4))
    counts = np.bincount(cells[picked], minlength=30)
    assert (counts == np.minimum(trust.PER_CELL, np.bincount(cells[cells >= 0], minlength=30))).all()
    assert len(trust.pick_sample(cells, seed=3, per_cell=100, cap=50)) == 50


def test_cell_scores_average_their_rows_and_fall_back_on_their_parent():
    vectors, sheet = _clusters(800)
    levels = bin_grid(sheet, vectors, np.zeros((800, 3), np.float16), [2, 8], min_count=1, top=2)
    sample = np.flatnonzero(row_cells(sheet, levels[0]) == 0)[:40]  # rows of the coarse level's first cell only
    kept = np.linspace(0, 1, len(sample)).astype(np.float32)
    coarse, fine = trust.cell_scores(levels, sheet, sample, kept)
    assert coarse[0] == np.float32(kept.mean()) and np.isnan(coarse[1:]).all()
    fine_cells = row_cells(sheet[sample], levels[1])
    for i in range(len(levels[1].cells)):
        own = kept[fine_cells == i]
        parent_first = (levels[1].cells[i]["x"] < 4) and (levels[1].cells[i]["y"] < 4)
        if len(own):
            assert np.isclose(fine[i], own.mean())
        elif parent_first:
            assert fine[i] == coarse[0]  # no sampled row of its own: the parent's score
        else:
            assert np.isnan(fine[i])


def test_measure_gives_the_layer_s_trustworthiness_and_every_level_s_cells():
    vectors, sheet = _clusters(1500)
    levels = bin_grid(sheet, vectors, np.zeros((1500, 3), np.float16), [4, 16], min_count=1, top=2)
    arrays = trust.measure(vectors, sheet, levels, seed=0)
    assert 0.9 < float(arrays["trustworthiness"]) <= 1
    assert arrays["cell-4"].shape == (len(levels[0].cells),) and not np.isnan(arrays["cell-16"]).any()
    shuffled = trust.measure(vectors, sheet[::-1][np.random.default_rng(2).permutation(1500)], levels, seed=0)
    assert float(shuffled["trustworthiness"]) < 0.6 < float(arrays["trustworthiness"])
