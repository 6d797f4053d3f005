"""Cells whose real examples contradict their top class: found in the data, said in the article's words."""

import numpy as np

from generator.findings import contradiction
from generator.grid import Level


def _level(size, tops_counts):
    cells = [{"x": i % size, "y": i // size, "count": count, "top": [[top, score]]}
             for i, (top, score, count) in enumerate(tops_counts)]
    return Level(size, cells, np.zeros((len(cells), 2), np.float32), np.zeros((len(cells), 4), np.float16))


def _examples(folder, rows_by_size, predicted, image):
    used = np.arange(len(predicted))
    np.savez(folder / "examples.npz", used=used, predicted=np.array(predicted), image=np.array(image),
             confidence=np.ones(len(predicted), np.float32),
             **{f"rows-{n}": np.array(r, np.int64) for n, r in rows_by_size.items()})


def test_the_strongest_cell_none_of_whose_examples_is_its_top_class(tmp_path):
    # 16 cells of the only level: 0 contradicts (10 activations), 1 has its top class among its examples (20), 2 has too few
    # examples to say (30), 3 contradicts but holds fewer activations (5), the rest attribute nothing.
    tops = [(1, 0.5, 10), (0, 0.9, 20), (2, 0.9, 30), (1, 0.7, 5)] + [(0, 0.0, 1)] * 12
    rows = [[0, 1], [2, 3], [4, -1], [5, 6]] + [[7, -1]] * 12
    _examples(tmp_path, {4: rows}, predicted=[0, 2, 0, 3, 1, 3, 3, 0], image=[0, 1, 0, 1, 2, 2, 2, 0])
    found = contradiction([_level(4, tops)], tmp_path, ["a.jpg", "b/c.png", "d.jpg"])
    assert found == {"size": 4, "x": 0, "y": 0, "count": 10, "top": 1, "predicted": [[0, 1], [2, 1]],
                     "images": ["a.jpg", "b/c.png"], "k": 2}


def test_no_contradiction_is_none_and_coarse_levels_count_only_alone(tmp_path):
    coarse = _level(4, [(1, 0.5, 40)] + [(0, 0.5, 10)] * 15)
    fine = _level(8, [(0, 0.5, 10)] * 64)
    _examples(tmp_path, {4: [[0, 1]] * 16, 8: [[0, 1]] * 64}, predicted=[0, 0], image=[0, 0])
    # the 4 x 4 level's cell 0 contradicts, but its cells are too broad while an 8 x 8 level exists
    assert contradiction([coarse, fine], tmp_path, ["a.jpg"]) is None
    assert contradiction([coarse], tmp_path, ["a.jpg"])["count"] == 40
