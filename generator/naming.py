"""Region names drawn on the atlas like place names on a map, for every level.

A level's cells are split into connected regions whose class attribution is alike (Ward
clustering of the cells' attribution profiles, joined only across neighbouring cells, so a
region is a patch of the map and not a scattering). A region's name comes from the classes
that dominate its attribution, measured against the rest of the map: for ImageNet models, a
WordNet synset shared by the classes that lean its way together (wordnet.py), otherwise the
leading class names (Namer). Coarse levels have
large cells and few regions, so their names are broad; fine levels name smaller places.
The viewer draws the names of the level in view, biggest region first, skipping any that
would overlap one already drawn.

Artifact per layer, in `<cache>/names/<key>/names.json`:
  {"<size>": [[x, y, activations, name], ...]}  x, y: the region's anchor in cells of that
  level (a cell centre inside the region, nearest its weighted centroid); activations: the
  region's count, which orders the names.
"""

from __future__ import annotations

import warnings

import numpy as np

from .grid import Level

CELLS_PER_REGION = 12  # about as many cells as a name's text covers at the zoom its level is shown
MIN_CELLS = 2  # a region of fewer cells is too small to carry a name
MIN_SCORE = 0.5  # a region whose best name scores less stands out for nothing: it stays unnamed
MAX_SPAN = 250  # a synset above more ImageNet classes ("animal", "artifact") names nothing
MIN_DEPTH = 4  # nor does one this close to WordNet's root ("matter", "physical entity")
FEATURES = 32  # principal directions of the cells' attribution profiles that the clustering reads


class Namer:
    """Names a region from its standardized class attribution.

    Each candidate name is a class or, for ImageNet models, a WordNet synset above some: its
    score is the sum of its classes' standardized attributions over the square root of their
    number, so a synset wins where many of its classes lean the same way at once ("dog" over
    any one breed) and a single class where it alone stands out.
    """

    def __init__(self, class_names: list[str], wnids: list[str] | None = None):
        self.names = list(class_names)
        rows = [[k] for k in range(len(class_names))]
        if wnids:
            from .wordnet import imagenet_hierarchy

            nodes = imagenet_hierarchy()
            below: dict[str, list[int]] = {}
            depth: dict[str, int] = {}
            for k, wnid in enumerate(wnids):
                chain = []
                while wnid:
                    chain.append(wnid)
                    wnid = nodes[wnid][1]
                for d, node in enumerate(chain):
                    below.setdefault(node, []).append(k)
                    depth[node] = len(chain) - 1 - d
            for node in sorted(below):
                if 1 < len(below[node]) <= MAX_SPAN and depth[node] >= MIN_DEPTH:
                    self.names.append(nodes[node][0])
                    rows.append(below[node])
        self.members = rows
        self.weights = np.zeros((len(rows), len(class_names)))
        for i, row in enumerate(rows):
            self.weights[i, row] = 1.0 / np.sqrt(len(row))

    def __call__(self, z: np.ndarray) -> str | None:
        """The name for standardized attributions `z` (classes,), or None where nothing stands out."""
        score = self.weights @ z
        order = np.argsort(-score, kind="stable")
        best = int(order[0])
        if score[best] < MIN_SCORE:
            return None
        if len(self.members[best]) == 1 and len(self.members) == len(z) and len(order) > 1:
            # Classes alone: the leading one, and the next where it leads by little.
            second = int(order[1])
            if score[second] >= 0.8 * score[best]:
                return self.names[best] + " / " + self.names[second]
        return self.names[best]


def _neighbours(xs: np.ndarray, ys: np.ndarray, size: int):
    """Sparse (M, M) adjacency of the cells that touch, sides or corners."""
    from scipy.sparse import coo_matrix

    where = np.full((size + 2, size + 2), -1, np.int64)
    where[ys + 1, xs + 1] = np.arange(len(xs))
    rows, cols = [], []
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dx or dy:
                other = where[ys + 1 + dy, xs + 1 + dx]
                keep = other >= 0
                rows.append(np.flatnonzero(keep))
                cols.append(other[keep])
    r, c = np.concatenate(rows), np.concatenate(cols)
    return coo_matrix((np.ones(len(r)), (r, c)), shape=(len(xs), len(xs))).tocsr()


def _profiles(scores: np.ndarray) -> np.ndarray:
    """Cells' attribution profiles: centred on the level's mean, unit length, in FEATURES principal directions."""
    s = scores.astype(np.float64)
    s = s - s.mean(0)
    s /= np.maximum(np.linalg.norm(s, axis=1, keepdims=True), 1e-12)
    if s.shape[1] > FEATURES and len(s) > FEATURES:
        _, _, vt = np.linalg.svd(s - s.mean(0), full_matrices=False)
        s = s @ vt[:FEATURES].T
    return s


def regions(level: Level) -> np.ndarray:
    """(M,) int64: each cell's region, connected through touching cells; numbered by first cell."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from sklearn.cluster import AgglomerativeClustering

    m = len(level.cells)
    if m == 0:
        return np.zeros(0, np.int64)
    xs = np.array([c["x"] for c in level.cells])
    ys = np.array([c["y"] for c in level.cells])
    touch = _neighbours(xs, ys, level.size)
    wanted = max(1, round(m / CELLS_PER_REGION))
    if wanted > 1 and m > wanted:
        with warnings.catch_warnings():  # islands of cells: sklearn joins them, and the split below parts them again
            warnings.simplefilter("ignore")
            group = AgglomerativeClustering(n_clusters=wanted, connectivity=touch, linkage="ward").fit_predict(
                _profiles(level.scores))
    else:
        group = np.zeros(m, np.int64)
    # A cluster is split into its connected pieces: each region is one patch of the map.
    r, c = touch.nonzero()
    keep = group[r] == group[c]
    same = coo_matrix((np.ones(int(keep.sum())), (r[keep], c[keep])), shape=(m, m))
    _, piece = connected_components(same, directed=False)
    # Number regions by their first cell so that nothing depends on the clustering's own numbering.
    first = {}
    out = np.empty(m, np.int64)
    for i, p in enumerate(piece):
        out[i] = first.setdefault(p, len(first))
    return out


def name_level(level: Level, namer: Namer) -> list[list]:
    """[[x, y, activations, name], ...] for `level`'s named regions of at least MIN_CELLS cells, largest first.

    A region's classes are scored against the rest of its level: its mean attribution less
    the level's, over each class's spread across the level's cells (at least the median class's).
    """
    region = regions(level)
    counts = np.array([c["count"] for c in level.cells], np.float64)
    xs = np.array([c["x"] for c in level.cells], np.float64) + 0.5
    ys = np.array([c["y"] for c in level.cells], np.float64) + 0.5
    scores = level.scores.astype(np.float64)
    mean = counts @ scores / max(counts.sum(), 1.0)
    spread = np.sqrt(counts @ (scores - mean) ** 2 / max(counts.sum(), 1.0))
    # A class that barely varies over the map would have its noise magnified into a name: no class's
    # spread counts as less than the middle one's.
    spread = np.maximum(spread, max(float(np.median(spread)), 1e-12))
    out = []
    for r in range(int(region.max()) + 1 if len(region) else 0):
        member = np.flatnonzero(region == r)
        if len(member) < MIN_CELLS:
            continue
        w = counts[member]
        name = namer((w @ scores[member] / w.sum() - mean) / spread)
        if name is None:
            continue
        cx, cy = (xs[member] * w).sum() / w.sum(), (ys[member] * w).sum() / w.sum()
        anchor = member[np.argmin((xs[member] - cx) ** 2 + (ys[member] - cy) ** 2)]
        out.append([float(xs[anchor]), float(ys[anchor]), int(w.sum()), name])
    out.sort(key=lambda item: (-item[2], item[1], item[0]))
    return out


def name_levels(levels: list[Level], namer: Namer) -> dict[str, list[list]]:
    return {str(level.size): name_level(level, namer) for level in levels}
