"""What a reader can check in an atlas without looking: cells whose real examples contradict their top class.

A cell's top class is where its activations' attribution goes most: the class the feature pushes
the network toward. Its examples (examples.py) are the crops its activations come from, each with
the model's prediction for the whole crop. When none of a full cell's examples is predicted as its
top class, the feature leans toward that class in images of something else: a cue the class has
picked up besides the object, such as water for "fireboat" in the article. The packaged article
shows the strongest such cell of each build (the `contradiction` shortcode), so that its text
states what this build's data shows, not what a build is expected to show.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from .grid import Level

MIN_SIZE = 8  # a 4 x 4 level's cells average a sixteenth of the map: too broad to stand for one feature


def contradiction(levels: list[Level], examples_folder: Path, image_names: list[str]) -> dict | None:
    """The strongest cell whose full set of examples holds no crop predicted as the cell's top class.

    Strongest: most activations, then the largest top attribution, among the levels of at least
    MIN_SIZE cells across (the finest where there are none). Returns {"size", "x", "y", "count",
    "top", "predicted" ([[class, examples], ...], most first), "images" (its examples' image names,
    each once, in order), "k"}; None where no cell qualifies.
    """
    with np.load(examples_folder / "examples.npz") as saved:
        arrays = {name: saved[name] for name in saved.files}
    used, predicted, image = arrays["used"], arrays["predicted"], arrays["image"]
    fine = [lv for lv in levels if lv.size >= MIN_SIZE] or levels[-1:]
    best, best_key = None, None
    for level in fine:
        rows = arrays[f"rows-{level.size}"]
        k = rows.shape[1]
        for cell, meta in enumerate(level.cells):
            mine = rows[cell][rows[cell] >= 0]
            if len(mine) < k or not meta["top"]:
                continue  # a cell of fewer activations than examples shows too little to contradict
            top, score = meta["top"][0][0], meta["top"][0][1]
            at = np.searchsorted(used, mine)
            if top in predicted[at] or not score > 0:
                continue
            key = (meta["count"], score, -level.size, -meta["y"], -meta["x"])
            if best_key is None or key > best_key:
                counts = Counter(int(c) for c in predicted[at]).most_common()
                names = list(dict.fromkeys(image_names[int(i)] for i in image[at]))
                best_key = key
                best = {"size": level.size, "x": meta["x"], "y": meta["y"], "count": meta["count"], "top": top,
                        "predicted": [[c, n] for c, n in counts], "images": names, "k": k}
    return best
