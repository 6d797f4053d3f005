"""Binning a layout into grids at several zoom levels.

Artifact per layer, in `<cache>/grid/<key>/`:
  cells.npz        every level's cells, as arrays in cell order (see `cells_to_arrays`):
                   size (L,) int64, cell_count (L,) int64; x, y, count (M,) int64;
                   top_class (M, T) int64 and top_score (M, T) float64, padded with -1 and 0
                   where a level has fewer than T classes
  directions.npy   (M, C) float32, the mean activation of every cell of every level, in cell order
  scores.npy       (M, K) float16, every cell's mean attribution to each of the K classes (the
                   viewer's class filter fades icons by it)

`bin_grid` reads the (N, C) activations and (N, K) attributions once, in chunks, whatever the
number of levels: each point is added into its "atom", the set of points sharing its cell at
every level, and each level's sums are then sums of atoms (`_groups`). Memory grows with the
cells, not with N: about 2 x 8 bytes x K for each cell of the finest level. Sums are float64; a float16 value is a multiple of 2^-24, so float64 sums of float16
values below 2^29 in magnitude are exact in any order, and the result is the same, bit for
bit, as adding point by point into each cell.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

CHUNK_ROWS = 16384  # rows of the activations read at a time: 32 MB of float16 attributions to 1000 classes


@dataclass
class Level:
    size: int  # cells across
    cells: list[dict]  # x, y (column, row from the top left), count, top
    directions: np.ndarray  # (len(cells), C) float32
    scores: np.ndarray  # (len(cells), classes) float16: mean attribution to every class


def cell_index(xy: np.ndarray, size: int) -> np.ndarray:
    """(N,) int64: each point's cell, row * size + column, rows from the top (y is up in the layout)."""
    col = np.minimum((xy[:, 0] * size).astype(np.int64), size - 1)
    row = np.minimum(((1.0 - xy[:, 1]) * size).astype(np.int64), size - 1)
    return row * size + col


def row_cells(xy: np.ndarray, level: Level) -> np.ndarray:
    """(N,) int64: each point's cell in `level`'s cell order, -1 where its cell was dropped."""
    table = np.full(level.size * level.size, -1, np.int64)
    flat = np.array([c["y"] * level.size + c["x"] for c in level.cells], np.int64)
    table[flat] = np.arange(len(flat))
    return table[cell_index(xy, level.size)]


def _groups(cells: list[np.ndarray], sizes: list[int]) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Nested groups of points: group i holds the points that share their cells at levels 0..i.

    Returns each point's group at the last level (N,) int64 (its "atom"); for every level i,
    each group's cell (G_i,) int64; and for i >= 1, each group's group at level i - 1 (G_i,)
    int64 (None for level 0). Groups are numbered in the order of their cells, so nothing
    depends on the order of the points. Level i's sums are its groups' sums, and those
    come from the groups of level i + 1, so each sum over a group is taken once.
    """
    keys, key = [], np.zeros(len(cells[0]), np.int64)
    for cell, size in zip(cells, sizes):
        # key < number of points and cell < size^2 <= 512^2: the product stays far inside int64
        _, key = np.unique(key * (size * size) + cell, return_inverse=True)
        keys.append(key := key.reshape(-1))
    cell_of, parent_of = [], []
    for i, key in enumerate(keys):
        _, first = np.unique(key, return_index=True)
        cell_of.append(cells[i][first])
        parent_of.append(keys[i - 1][first] if i else None)
    return keys[-1], cell_of, parent_of


def _add_coded(out, group, codes, table):
    """out[group[i]] += table[codes[i]] for every row i with group[i] >= 0: float16 rows by their bit patterns."""
    for i in range(codes.shape[0]):
        g = group[i]
        if g < 0:
            continue
        row = out[g]
        src = codes[i]
        for j in range(codes.shape[1]):
            row[j] += table[src[j]]


def _add_rows(out, group, values):
    """out[group[i]] += values[i] for every row i with group[i] >= 0, in float64."""
    for i in range(values.shape[0]):
        g = group[i]
        if g < 0:
            continue
        row = out[g]
        src = values[i]
        for j in range(values.shape[1]):
            row[j] += np.float64(src[j])


_KERNELS: dict = {}


def _kernels() -> dict:
    """The two loops above, compiled by numba on first use (about a second; cached on disk after)."""
    if not _KERNELS:
        import numba

        _KERNELS.update(coded=numba.njit(nogil=True, cache=True)(_add_coded),
                        rows=numba.njit(nogil=True, cache=True)(_add_rows))
    return _KERNELS


_F16 = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float64)  # every float16, by bit pattern


def sum_rows(values, group: np.ndarray, groups: int, chunk: int = CHUNK_ROWS) -> np.ndarray:
    """(groups, D) float64: the sum of the rows of `values` (N, D) in each group; group -1 drops a row.

    `values` may be a memmap: it is read `chunk` rows at a time, in order. Rows are added
    one by one in row order, so the result is deterministic.
    """
    kernels = _kernels()
    out = np.zeros((groups, values.shape[1]), np.float64)
    group = np.ascontiguousarray(group, np.int64)
    for start in range(0, len(group), chunk):
        block = np.ascontiguousarray(values[start:start + chunk])
        part = group[start:start + chunk]
        if block.dtype == np.float16:
            kernels["coded"](out, part, block.view(np.uint16), _F16)
        else:
            kernels["rows"](out, part, block if block.dtype in (np.float32, np.float64) else block.astype(np.float64))
    return out


def top_classes(scores: np.ndarray, top: int, rows: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Each row's `top` highest columns, highest first, ties to the lower index: (M, t) int64 and float64.

    The same as `np.argsort(-scores, kind="stable")[:, :top]`, without sorting every row:
    a partition finds the top set, and only a row whose set is ambiguous (a tie at its
    edge, or NaN) is sorted in full. t = min(top, K).
    """
    m, k = scores.shape
    t = min(top, k)
    best = np.zeros((m, t), np.int64)
    for start in range(0, m if t else 0, rows):
        neg = -np.asarray(scores[start:start + rows], np.float64)
        if t == k:
            best[start:start + len(neg)] = np.argsort(neg, axis=1, kind="stable")
            continue
        part = np.sort(np.argpartition(neg, t - 1, axis=1)[:, :t], axis=1)
        vals = np.take_along_axis(neg, part, 1)
        edge = vals.max(axis=1)
        chosen = np.take_along_axis(part, np.argsort(vals, axis=1, kind="stable"), 1)
        unclear = np.flatnonzero((neg <= edge[:, None]).sum(axis=1) != t)
        if len(unclear):
            chosen[unclear] = np.argsort(neg[unclear], axis=1, kind="stable")[:, :t]
        best[start:start + len(neg)] = chosen
    return best, np.take_along_axis(np.asarray(scores), best, 1).astype(np.float64)


@contextmanager
def _few_collections():
    """Python's cycle collector paused while a level's cells are built: 100,000 dicts of lists, none in a
    cycle, would otherwise set off collection after collection (three quarters of the time)."""
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


def _cell_dicts(size: int, kept: np.ndarray, counts: np.ndarray, best: np.ndarray, values: np.ndarray) -> list[dict]:
    with _few_collections():
        xs, ys, ns = (kept % size).tolist(), (kept // size).tolist(), counts.tolist()
        return [{"x": x, "y": y, "count": n, "top": [[k, round(v, 4)] for k, v in zip(ks, vs)]}
                for x, y, n, ks, vs in zip(xs, ys, ns, best.tolist(), values.tolist())]


def bin_grid(xy, vectors, attributions, levels, min_count: int, top: int, chunk: int = CHUNK_ROWS) -> list[Level]:
    """Cells of an n x n grid over `xy` (N, 2) in [0, 1], for each n in `levels`.

    Each cell holds the mean of its rows of `vectors` (N, C) and `attributions` (N, K), its
    count and its `top` classes by mean attribution. Cells holding fewer than `min_count`
    points are dropped; cells are listed row by row from the top left.
    """
    sizes = [int(n) for n in levels]
    cells = [cell_index(xy, n) for n in sizes]
    atom_of, cell_of, parent_of = _groups(cells, sizes)
    plans = []
    for size, cell in zip(sizes, cells):
        counts = np.bincount(cell, minlength=size * size)
        kept = np.flatnonzero(counts >= min_count)
        slot = np.full(size * size, -1, np.int64)
        slot[kept] = np.arange(len(kept))
        plans.append((kept, counts[kept], slot))

    def each_level(values, finish) -> list:
        """finish(i, means (kept, D) float64) for every level i, finest first; returns what it returns."""
        sums = sum_rows(values, atom_of, len(cell_of[-1]), chunk)
        done = [None] * len(sizes)
        for i in reversed(range(len(sizes))):
            kept, counts, slot = plans[i]
            means = sum_rows(sums, slot[cell_of[i]], len(kept), len(sums) or 1)
            means /= counts[:, None]
            done[i] = finish(i, means)
            if i:
                sums = sum_rows(sums, parent_of[i], len(cell_of[i - 1]), len(sums) or 1)
        return done

    directions = each_level(vectors, lambda i, means: means.astype(np.float32))

    def level(i: int, scores: np.ndarray) -> Level:
        kept, counts, _ = plans[i]
        best, values = top_classes(scores, top)
        return Level(sizes[i], _cell_dicts(sizes[i], kept, counts, best, values), directions[i],
                     scores.astype(np.float16))

    return each_level(attributions, level)


def bin_level(xy, vectors, attributions, size: int, min_count: int, top: int, chunk: int = CHUNK_ROWS) -> Level:
    """One level of `bin_grid`."""
    return bin_grid(xy, vectors, attributions, [size], min_count, top, chunk)[0]


def cells_to_arrays(levels: list[Level]) -> dict[str, np.ndarray]:
    """Every level's cells as the arrays of cells.npz (module docstring), in cell order."""
    with _few_collections():
        return _cell_arrays(levels)


def _cell_arrays(levels: list[Level]) -> dict[str, np.ndarray]:
    cells = [c for lv in levels for c in lv.cells]
    t = max((len(c["top"]) for c in cells), default=0)
    pad = [[-1, 0.0]] * t
    flat = [v for c in cells for pair in (c["top"] + pad[len(c["top"]):] if len(c["top"]) < t else c["top"])
            for v in pair]
    pairs = np.array(flat, np.float64).reshape(len(cells), t, 2)  # class numbers are exact in float64
    return {"size": np.array([lv.size for lv in levels], np.int64),
            "cell_count": np.array([len(lv.cells) for lv in levels], np.int64),
            "x": np.array([c["x"] for c in cells], np.int64), "y": np.array([c["y"] for c in cells], np.int64),
            "count": np.array([c["count"] for c in cells], np.int64),
            "top_class": pairs[:, :, 0].astype(np.int64), "top_score": pairs[:, :, 1].copy()}


def levels_from_arrays(arrays, directions: np.ndarray, scores: np.ndarray) -> list[Level]:
    """The levels that `cells_to_arrays` stored, with their rows of directions and scores."""
    levels, start = [], 0
    with _few_collections():
        classes, values = arrays["top_class"].tolist(), arrays["top_score"].tolist()
        xs, ys, ns = arrays["x"].tolist(), arrays["y"].tolist(), arrays["count"].tolist()
        for size, n in zip(arrays["size"].tolist(), arrays["cell_count"].tolist()):
            cells = [{"x": xs[i], "y": ys[i], "count": ns[i],
                      "top": [[k, v] for k, v in zip(classes[i], values[i]) if k >= 0]} for i in range(start, start + n)]
            levels.append(Level(size, cells, directions[start:start + n], scores[start:start + n]))
            start += n
    return levels


def parent_cells(fine: Level, coarse: Level) -> np.ndarray:
    """For each cell of `fine`, the index of the `coarse` cell holding its centre, or -1 if that cell was dropped."""
    index = {(c["x"], c["y"]): i for i, c in enumerate(coarse.cells)}
    ratio = coarse.size / fine.size
    return np.array([index.get((int((c["x"] + 0.5) * ratio), int((c["y"] + 0.5) * ratio)), -1)
                     for c in fine.cells], dtype=np.int64)
