"""Layers tied together: where the image positions of one layer's cell fall in another layer's atlas.

Each layer's activations are read at positions of its own grid (collect.py), so two layers see
the same crops at different places. An activation of layer A is tied to the activation of layer
B from the same crop whose position is nearest its own, both taken as the centre of their grid
square relative to the crop (a 14 x 14 layer's position (3, 5) and a 7 x 7 layer's (1, 2) are
the same place). A tie farther than MAX_GAP of the crop's side is no tie: B saw nothing there.

For each grid level the two atlases share, each cell of A lists the cells of B its tied
activations fall in, with how many, the most first; the viewer highlights them in B's atlas
when the cell is hovered or pinned in A's. Levels finer than MAX_SIZE cells across are left
out: their cells hold a few activations each, and the lists would outweigh the atlas.
"""

from __future__ import annotations

import numpy as np

MAX_GAP = 0.25  # of the crop's side
MAX_SIZE = 32
TOP = 24  # cells of B listed per cell of A
READ_ROWS = 65_536


def relative_centres(positions: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """(N, 2) float64: each position's (row, column) square centre as a share of the layer's grid."""
    height, width = shape[-2], shape[-1]
    return np.stack([(positions[:, 1] + 0.5) / height, (positions[:, 2] + 0.5) / width], axis=1)


def tie_rows(positions_a: np.ndarray, shape_a: tuple[int, ...], positions_b: np.ndarray,
             shape_b: tuple[int, ...]) -> np.ndarray:
    """(N_a,) int64: for each row of A, the row of B of the same crop at the nearest place; -1 for none.

    Rows of both come in crop order, as collection writes them; ties go to B's earlier row."""
    positions_a, positions_b = np.asarray(positions_a), np.asarray(positions_b)
    crops_b = positions_b[:, 0].astype(np.int64)
    if len(crops_b) and np.any(np.diff(crops_b) < 0):
        raise ValueError("positions of layer B are not in crop order")
    centres_a, centres_b = relative_centres(positions_a, shape_a), relative_centres(positions_b, shape_b)
    crops_a = positions_a[:, 0].astype(np.int64)
    start = np.searchsorted(crops_b, crops_a, "left")
    end = np.searchsorted(crops_b, crops_a, "right")
    widest = int((end - start).max()) if len(start) else 0
    ties = np.full(len(positions_a), -1, np.int64)
    if widest == 0:
        return ties
    for at in range(0, len(positions_a), READ_ROWS):
        s, e = start[at:at + READ_ROWS], end[at:at + READ_ROWS]
        candidates = s[:, None] + np.arange(widest)[None, :]  # (n, widest) rows of B, past `e` masked
        valid = candidates < e[:, None]
        gaps = np.linalg.norm(centres_b[np.minimum(candidates, len(crops_b) - 1)] -
                              centres_a[at:at + READ_ROWS, None, :], axis=2)
        gaps[~valid] = np.inf
        best = gaps.argmin(axis=1)  # the first of equal gaps: B's earlier row
        near = gaps[np.arange(len(best)), best] <= MAX_GAP
        ties[at:at + READ_ROWS] = np.where(near, candidates[np.arange(len(best)), best], -1)
    return ties


def cell_links(cells_a: np.ndarray, cells_b_of_a: np.ndarray, count_a: int, count_b: int,
               top: int = TOP) -> list[list[tuple[int, int]]]:
    """For each of A's `count_a` cells, [(cell of B, activations), ...], most first (then by cell).

    `cells_a` (N_a,) is each row of A's cell, `cells_b_of_a` (N_a,) the cell of its tie in B; -1 for none."""
    keep = (cells_a >= 0) & (cells_b_of_a >= 0)
    pairs, counts = np.unique(cells_a[keep] * count_b + cells_b_of_a[keep], return_counts=True)
    links: list[list[tuple[int, int]]] = [[] for _ in range(count_a)]
    order = np.lexsort((pairs % count_b, -counts, pairs // count_b))  # by A's cell, then most, then B's cell
    for pair, count in zip(pairs[order], counts[order]):
        listed = links[int(pair // count_b)]
        if len(listed) < top:
            listed.append((int(pair % count_b), int(count)))
    return links
