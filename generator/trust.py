"""Where the layout can be trusted: how many of an activation's neighbours stay its neighbours on the map.

Artifact per layer, in `<cache>/trust/<key>/trust.npz`:
  sample (S,) int64        the rows measured: up to PER_CELL of every cell of the finest level, seeded
  kept (S,) float32        each one's share of its K nearest neighbours in activation space (cosine)
                           that are also among its K nearest in the layout
  cell-<n> (cells,) float32  level n's score per cell: the mean of `kept` over its measured rows; a
                           cell with none takes its parent's, and NaN where no level above has one
  trustworthiness () float64  scikit-learn's `trustworthiness` (K neighbours, cosine) on a seeded
                           sample of TRUST_ROWS rows: the layer's one number, as the literature uses it

Neighbours in activation space are searched among all N rows by cosine, in the subspace of the
first 64 principal directions of the unit rows (the layout's placement uses the same, layout.py),
which keeps the search affordable at a million rows; neighbours on the map among all N positions. By chance a row would keep K x K / N of its neighbours: about
nothing, so 0.3 means that 3 of its 10 nearest neighbours sit beside it on the map.
"""

from __future__ import annotations

import numpy as np
import torch

from .grid import Level, parent_cells, row_cells
from .layout import _pca, _unit_rows

K = 10
PER_CELL = 2
MAX_SAMPLE = 20_000
TRUST_ROWS = 5_000
CHUNK_BYTES = 1 << 27  # one (queries, N) float32 block of similarities or distances, at most
READ_ROWS = 16_384


def pick_sample(cells: np.ndarray, seed: int, per_cell: int = PER_CELL, cap: int = MAX_SAMPLE) -> np.ndarray:
    """Sorted rows: up to `per_cell` drawn from each cell (of the finest level), at most `cap` in all."""
    rng = np.random.default_rng([seed, 11])
    member = np.flatnonzero(cells >= 0)
    shuffled = member[rng.permutation(len(member))]
    order = shuffled[np.argsort(cells[shuffled], kind="stable")]  # by cell, random within a cell
    owner = cells[order]
    first = np.searchsorted(owner, owner)  # each row's cell's first place in `order`
    picked = order[np.arange(len(order)) - first < per_cell]
    if len(picked) > cap:
        picked = rng.choice(picked, cap, replace=False)
    return np.sort(picked)


def _nearest(queries: torch.Tensor, reference_rows, k: int, similar: bool) -> torch.Tensor:
    """(Q, k) indices into the reference rows: most similar (dot product) or nearest (euclidean)."""
    n = reference_rows.shape[0]
    rows = max(1, CHUNK_BYTES // (4 * n))
    out = []
    for start in range(0, len(queries), rows):
        q = queries[start:start + rows]
        if similar:
            score = q @ reference_rows.T
        else:
            score = -torch.cdist(q, reference_rows)
        out.append(torch.topk(score, k + 1, dim=1).indices)
    return torch.cat(out)


def neighbours_kept(vectors, xy: np.ndarray, sample: np.ndarray, k: int = K) -> np.ndarray:
    """(S,) float32: for each sampled row, the share of its k nearest rows in activation space that
    are among its k nearest on the map (the row itself not counted)."""
    n = len(vectors)
    k = min(k, n - 1)
    _, basis = _pca(np.asarray(vectors[sample], dtype=np.float32))
    projected = np.empty((n, basis.shape[1]), np.float32)
    for start in range(0, n, READ_ROWS):
        # Unit rows onto the principal subspace, uncentred: dot products are the cosines there (exact up to 64 channels).
        projected[start:start + READ_ROWS] = _unit_rows(np.asarray(vectors[start:start + READ_ROWS], np.float32)) @ basis
    reference = torch.from_numpy(projected)
    high = _nearest(reference[sample], reference, k, similar=True).numpy()
    places = torch.from_numpy(np.asarray(xy, np.float32))
    low = _nearest(places[sample], places, k, similar=False).numpy()
    kept = np.empty(len(sample), np.float32)
    for i, row in enumerate(sample):
        # A row is its own nearest in both, unless a tie put another first: drop it, or the (k+1)-th.
        near_high = [r for r in high[i] if r != row][:k]
        near_low = [r for r in low[i] if r != row][:k]
        kept[i] = len(set(near_high).intersection(near_low)) / k
    return kept


def cell_scores(levels: list[Level], xy: np.ndarray, sample: np.ndarray, kept: np.ndarray) -> list[np.ndarray]:
    """Per level, (cells,) float32: the mean share kept over the cell's sampled rows, else its parent's."""
    out = []
    for i, level in enumerate(levels):
        cells = row_cells(xy[sample], level)
        inside = cells >= 0
        total = np.bincount(cells[inside], kept[inside], minlength=len(level.cells))
        count = np.bincount(cells[inside], minlength=len(level.cells))
        score = np.full(len(level.cells), np.nan, np.float32)
        score[count > 0] = total[count > 0] / count[count > 0]
        if i:
            parents = parent_cells(level, levels[i - 1])
            empty = (count == 0) & (parents >= 0)
            score[empty] = out[-1][parents[empty]]
        out.append(score)
    return out


def global_trustworthiness(vectors, xy: np.ndarray, seed: int, rows: int = TRUST_ROWS, k: int = K) -> float:
    from sklearn.manifold import trustworthiness

    n = len(vectors)
    picked = np.sort(np.random.default_rng([seed, 12]).choice(n, min(rows, n), replace=False))
    k = min(k, len(picked) // 2 - 1)
    if k < 1:
        return float("nan")
    return float(trustworthiness(np.asarray(vectors[picked], np.float32), np.asarray(xy[picked], np.float32),
                                 n_neighbors=k, metric="cosine"))


def measure(vectors, xy: np.ndarray, levels: list[Level], seed: int) -> dict[str, np.ndarray]:
    """The artifact's arrays (module docstring) for one layer."""
    sample = pick_sample(row_cells(xy, levels[-1]), seed)
    kept = neighbours_kept(vectors, xy, sample) if len(sample) else np.zeros(0, np.float32)
    scores = cell_scores(levels, xy, sample, kept)
    return {"sample": sample, "kept": kept, **{f"cell-{lv.size}": s for lv, s in zip(levels, scores)},
            "trustworthiness": np.float64(global_trustworthiness(vectors, xy, seed))}
