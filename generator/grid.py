"""Binning a layout into grids at several zoom levels.

Artifact per layer, in `<cache>/grid/<layer>/`:
  cells.json       {"levels": [{"size": n, "cells": [{"x", "y", "count", "top": [[class, score], ...]}]}]}
  directions.npy   (M, C) float32, the mean activation of every cell of every level, in cell order
  scores.npy       (M, K) float16, every cell's mean attribution to each of the K classes (the
                   viewer's class filter fades icons by it)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Level:
    size: int  # cells across
    cells: list[dict]  # x, y (column, row from the top left), count, top
    directions: np.ndarray  # (len(cells), C) float32
    scores: np.ndarray  # (len(cells), classes) float16: mean attribution to every class


def bin_level(
    xy: np.ndarray, vectors: np.ndarray, attributions: np.ndarray, size: int, min_count: int, top: int,
    chunk: int = 4096,
) -> Level:
    """Cells of an n x n grid over `xy` in [0, 1]: mean vector, count and top attributed classes.

    Cells holding fewer than `min_count` points are dropped. A cell's class scores
    are the mean attribution of its activations.
    """
    col = np.minimum((xy[:, 0] * size).astype(np.int64), size - 1)
    row = np.minimum(((1.0 - xy[:, 1]) * size).astype(np.int64), size - 1)  # y up in the layout, rows down
    cell_of = row * size + col
    counts = np.bincount(cell_of, minlength=size * size)
    kept = np.flatnonzero(counts >= min_count)
    slot = np.full(size * size, -1)
    slot[kept] = np.arange(len(kept))
    sums = np.zeros((len(kept), vectors.shape[1]), np.float64)
    scores = np.zeros((len(kept), attributions.shape[1]), np.float64)
    for start in range(0, len(xy), chunk):
        part = slice(start, start + chunk)
        s = slot[cell_of[part]]
        keep = s >= 0
        np.add.at(sums, s[keep], np.asarray(vectors[part], np.float64)[keep])
        np.add.at(scores, s[keep], np.asarray(attributions[part], np.float64)[keep])
    n = counts[kept][:, None]
    sums /= n
    scores /= n
    cells = []
    for i, cell in enumerate(kept):
        best = np.argsort(-scores[i], kind="stable")[:top]
        cells.append({
            "x": int(cell % size), "y": int(cell // size), "count": int(counts[cell]),
            "top": [[int(k), round(float(scores[i, k]), 4)] for k in best],
        })
    return Level(size, cells, sums.astype(np.float32), scores.astype(np.float16))


def bin_grid(xy, vectors, attributions, levels, min_count: int, top: int) -> list[Level]:
    return [bin_level(xy, vectors, attributions, n, min_count, top) for n in levels]


def parent_cells(fine: Level, coarse: Level) -> np.ndarray:
    """For each cell of `fine`, the index of the `coarse` cell holding its centre, or -1 if that cell was dropped."""
    index = {(c["x"], c["y"]): i for i, c in enumerate(coarse.cells)}
    ratio = coarse.size / fine.size
    return np.array([index.get((int((c["x"] + 0.5) * ratio), int((c["y"] + 0.5) * ratio)), -1)
                     for c in fine.cells], dtype=np.int64)
