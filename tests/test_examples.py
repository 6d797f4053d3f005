"""The real examples behind each cell: which activations, which patch of which image, and what the model saw."""

import numpy as np
import pytest

from generator import examples
from generator.grid import bin_grid
from generator.images import SamplePlan


@pytest.mark.parametrize("layer, theoretical, centre", [("features.0", 3, 0.5), ("features.2", 7, 1.5),
                                                        ("features.4", 15, 3.5)])
def test_the_field_is_measured_from_the_model_s_gradient(tiny_model, layer, theoretical, centre):
    # Convolutions of 3 x 3, stride 2, padding 1: fields of 3, 7 and 15 pixels, each centred half a
    # stride before its cell's centre (output i sees input 2i - 1 .. 2i + 1).
    field = examples.receptive_field(tiny_model, layer)
    assert 1 < field.side <= theoretical
    assert field.grid == tiny_model.layer_shapes()[layer][1:]
    assert field.offset == pytest.approx((-centre, -centre), abs=0.6)
    whole = examples.receptive_field(tiny_model, layer, mass=1.0)
    assert theoretical <= whole.side <= theoretical + 1  # all of the gradient: the theoretical field
    assert examples.receptive_field(tiny_model, layer, mass=0.3).side <= field.side


def test_boxes_sit_on_their_position_and_stay_inside_the_input():
    field = examples.Field(size=48, grid=(6, 6), side=20.0)
    boxes = field.boxes(np.array([2.0, 0.0, 5.0]), np.array([3.0, 0.0, 5.0]))
    np.testing.assert_allclose(boxes[0], [28 - 10, 20 - 10, 28 + 10, 20 + 10])  # centre of cell (2, 3): (28, 20)
    np.testing.assert_allclose(boxes[1], [0, 0, 20, 20])  # the corner's square moved inside, not shrunk
    np.testing.assert_allclose(boxes[2], [28, 28, 48, 48])


def test_patches_map_through_the_crop_box_to_the_source_image():
    plan = SamplePlan(["a.png", "b.png"], [(200, 100), (50, 50)], [(0, 100, 0, 196, 96), (1, 0, 0, 48, 48)], 0)
    field = examples.Field(size=48, grid=(6, 6), side=12.0)
    images, boxes = examples.patch_boxes(np.array([[0, 0, 0], [1, 2, 3]]), plan, field)
    assert images.tolist() == [0, 1]
    np.testing.assert_allclose(boxes[0], [100, 0, 124, 24])  # crop of 96 px shown at 48: twice the size
    np.testing.assert_allclose(boxes[1], [22, 14, 34, 26])


def test_each_cell_gets_its_own_rows_nearest_its_mean_best_first():
    rng = np.random.default_rng(0)
    n, c = 400, 6
    vectors = np.maximum(rng.normal(size=(n, c)), 0).astype(np.float16)
    vectors[7] = 0  # a dead row: cosine 0, never a division by zero
    xy = rng.uniform(size=(n, 2))
    attributions = rng.normal(size=(n, 3)).astype(np.float16)
    levels = bin_grid(xy, vectors, attributions, [2, 5], min_count=3, top=2)
    cells = examples.level_cells(xy, levels)
    chosen = examples.nearest_rows(vectors, cells, levels, k=4)
    v = vectors.astype(np.float64)
    for level, cell, rows in zip(levels, cells, chosen):
        assert rows.shape == (len(level.cells), 4)
        d = level.directions.astype(np.float64)
        for i in range(len(level.cells)):
            members = np.flatnonzero(cell == i)
            assert len(members) == level.cells[i]["count"]
            cos = v[members] @ d[i] / np.maximum(np.linalg.norm(v[members], axis=1), 1e-12) / np.linalg.norm(d[i])
            expected = members[np.lexsort((members, -cos))][:4]
            got = rows[i][rows[i] >= 0]
            assert got.tolist() == expected.tolist()
            assert (rows[i] < 0).sum() == max(0, 4 - len(members))
