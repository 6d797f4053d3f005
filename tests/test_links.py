"""Layers tied together: the same places of the same crops, and the cells of one atlas that hold them."""

import json

import numpy as np
import pytest

from generator import links


def test_positions_tie_to_the_nearest_place_of_the_same_crop_on_another_grid():
    # layer A: a 14 x 14 grid; layer B: 7 x 7. (crop, row, column)
    a = np.array([[0, 2, 2], [0, 12, 12], [1, 7, 0], [2, 0, 0]], np.int32)
    b = np.array([[0, 1, 1], [0, 6, 6], [1, 0, 6], [1, 3, 1], [3, 0, 0]], np.int32)
    ties = links.tie_rows(a, (8, 14, 14), b, (16, 7, 7))
    # A (2, 2) of 14 is at 0.18 of the crop, B (1, 1) of 7 at 0.21; A (7, 0) is at (0.54, 0.04), B (3, 1) at
    # (0.5, 0.21); crop 2 has no row in B
    assert ties.tolist() == [0, 1, 3, -1]
    far = links.tie_rows(np.array([[1, 13, 13]]), (8, 14, 14), b, (16, 7, 7))  # (0.96, 0.96): 0.48 from B's nearest
    assert far.tolist() == [-1]


def test_ties_are_read_in_chunks_alike(monkeypatch):
    rng = np.random.default_rng(0)
    crops = np.repeat(np.arange(50), 4)
    a = np.stack([crops, rng.integers(0, 14, 200), rng.integers(0, 14, 200)], 1)
    b = np.stack([np.repeat(np.arange(50), 3), rng.integers(0, 7, 150), rng.integers(0, 7, 150)], 1)
    whole = links.tie_rows(a, (1, 14, 14), b, (1, 7, 7))
    monkeypatch.setattr(links, "READ_ROWS", 7)
    assert np.array_equal(links.tie_rows(a, (1, 14, 14), b, (1, 7, 7)), whole)
    assert (b[whole[whole >= 0], 0] == a[whole >= 0, 0]).all()  # always the same crop
    with pytest.raises(ValueError, match="crop order"):
        links.tie_rows(a, (1, 14, 14), b[::-1], (1, 7, 7))


def test_each_cell_lists_the_other_layer_s_cells_most_first():
    cells_a = np.array([0, 0, 0, 0, 1, 1, -1, 2])
    cells_b = np.array([3, 1, 3, -1, 2, 2, 0, 1])
    assert links.cell_links(cells_a, cells_b, 4, 5) == [[(3, 2), (1, 1)], [(2, 2)], [(1, 1)], []]
    assert links.cell_links(cells_a, cells_b, 4, 5, top=1)[0] == [(3, 2)]


def test_a_build_links_every_pair_of_layers_at_the_levels_they_share(tiny_config):
    from generator import pipeline

    result = pipeline.build(tiny_config())
    out, (a, b) = result.out_dir, result.manifest["atlases"]
    assert a["links"] == {b["id"]: {"2": f"{a['id']}/links-2-{b['id']}.js", "4": f"{a['id']}/links-4-{b['id']}.js"}}
    assert set(b["links"]) == {a["id"]}
    for size in ("2", "4"):
        text = (out / "data" / a["links"][b["id"]][size]).read_text()
        cells = json.loads(text.splitlines()[-1].split(" = ", 1)[1].rstrip(";"))["cells"]
        level = next(lv for lv in a["level_data"] if lv["size"] == int(size))
        from generator.regions import read_cells

        counts = {(c["x"], c["y"]): c["count"] for c in read_cells(out / "data", level)}
        assert cells and all((x, y) in counts for x, y, _ in cells)
        for x, y, listed in cells:
            # every activation of the cell is tied to at most one place of the other layer
            assert 0 < sum(listed[2::3]) <= counts[(x, y)]
            assert all(0 <= v < int(size) for v in listed[0::3] + listed[1::3])
