"""Class activation atlases, and two classes compared: the article's analyses beyond the layer's map.

A class atlas maps the activations most attributed to one class. As the article does, it
takes first the activations whose strongest attribution is to that class (those the class
wins), most attributed first. Attributions here are per position and spread over every
class, so a class wins few of a sample's activations; the rest of the atlas is the other
activations most attributed to it, while that attribution is positive. A class atlas takes
at most a quarter of the layer's activations, so that it is a selection, not the layer again.

A comparison takes the activations of two classes, chosen the same way, half for each. Its x
is the attribution difference (first class minus second), clipped at the 99th percentile of
its size as the article's notebook clips it, so that a few extreme activations do not squeeze
the rest into the middle; 0.5 is no difference. Its y is a one-dimensional embedding of the
activations by cosine similarity (the layout's method), so alike activations sit at alike
heights and a feature that serves both classes spans the middle.

Each selection is written as an activations folder of its own (the pipeline's `classes`
stage), so layout, grid, icons, trust, names and examples run on it unchanged.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

import numpy as np

from .errors import AtlasError

CLIP_PERCENTILE = 99.0
SHARE = 4  # a class atlas holds at most 1/SHARE of its layer's activations
READ_ROWS = 16_384  # rows of attributions read at once: (N, K) float16 can be gigabytes


@dataclass(frozen=True)
class ClassView:
    """One class atlas (one class) or one comparison (two classes), by class index."""

    classes: tuple[int, ...]

    @property
    def kind(self) -> str:
        return "class" if len(self.classes) == 1 else "compare"

    def atlas_id(self, names: list[str]) -> str:
        return "-".join([self.kind, *(slug(names[k]) for k in self.classes)])

    def about(self, names: list[str], layer: str, rows: int, won: int) -> dict:
        """The fields a manifest entry of this view adds to a layer atlas's."""
        shown = [names[k] for k in self.classes]
        label = " vs ".join(shown)
        title = (f"Class activation atlas of {shown[0]}" if self.kind == "class"
                 else f"{shown[0]} against {shown[1]}")
        return {"kind": self.kind, "classes": list(self.classes), "class_names": shown, "label": label,
                "title": f"{title} (layer {layer})", "rows": rows, "won": won}


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "class"


def find_class(names: list[str], wanted: str, key: str) -> int:
    """The index of the class named `wanted` (case aside); a one-line error naming the closest otherwise."""
    lower = [n.lower() for n in names]
    for form in (wanted.strip().lower(), wanted.strip().lower().replace("_", " ")):  # white_wolf, as files spell it
        if form in lower:
            return lower.index(form)
    close = difflib.get_close_matches(wanted.lower(), lower, n=3, cutoff=0.6)
    hint = f" (closest: {', '.join(names[lower.index(c)] for c in close)})" if close else ""
    raise AtlasError(f"{key}: the model has no class named {wanted!r}{hint}: give class names as the model's "
                     "labels spell them")


def chosen_views(names_setting: tuple, auto: int, compare: tuple, class_names: list[str],
                 leading: list[int]) -> list[ClassView]:
    """The class atlases and comparisons of a build: named ones, else the `auto` classes of `leading`
    (the layer's classes that lead the most cells); comparisons named, else the first two classes."""
    if names_setting:
        picked = [find_class(class_names, n, "classes.names") for n in names_setting]
    else:
        picked = leading[:auto]
    picked = list(dict.fromkeys(picked))  # two spellings of one class make one atlas
    pairs = [tuple(find_class(class_names, n, "classes.compare") for n in pair) for pair in compare]
    if not compare and len(picked) >= 2:
        pairs = [(picked[0], picked[1])]
    pairs = [p for p in dict.fromkeys(pairs) if p[0] != p[1]]
    return [ClassView((k,)) for k in picked] + [ClassView(p) for p in pairs]


def row_limit(setting: int, n: int) -> int:
    return max(1, min(setting, n // SHARE))


def winners(attributions: np.ndarray) -> np.ndarray:
    """Each row's class of strongest attribution, read in chunks of a memmap."""
    return np.concatenate([np.asarray(attributions[i:i + READ_ROWS], dtype=np.float32).argmax(1)
                           for i in range(0, len(attributions), READ_ROWS)]) if len(attributions) else \
        np.zeros(0, np.int64)


def class_rows(attributions: np.ndarray, won_by: np.ndarray, k: int, limit: int) -> np.ndarray:
    """Rows of the class atlas of class `k`, in row order: those `k` wins, most attributed first, then the
    others most attributed to `k`, while positive; at most `limit`."""
    score = np.asarray(attributions[:, k], dtype=np.float32)
    won = won_by == k
    order = np.lexsort((np.arange(len(score)), -score, ~won))  # last key first: won, then score, then row
    order = order[(won | (score > 0))[order]][:limit]
    return np.sort(order)


def pair_rows(attributions: np.ndarray, won_by: np.ndarray, a: int, b: int, limit: int) -> np.ndarray:
    """Rows of the comparison of `a` and `b`: each one's class rows, half the limit each."""
    half = max(1, limit // 2)
    return np.union1d(class_rows(attributions, won_by, a, half),
                      class_rows(attributions, won_by, b, max(1, limit - half)))


def difference_axis(attributions: np.ndarray, a: int, b: int) -> np.ndarray:
    """x of a comparison in [0, 1]: attribution to `a` minus to `b`, clipped at its 99th percentile."""
    diff = np.asarray(attributions[:, a], dtype=np.float64) - np.asarray(attributions[:, b], dtype=np.float64)
    clip = float(np.percentile(np.abs(diff), CLIP_PERCENTILE)) if len(diff) else 0.0
    if not clip > 0:
        return np.full(len(diff), 0.5, np.float32)
    return (0.5 + 0.5 * np.clip(diff / clip, -1.0, 1.0)).astype(np.float32)


def compare_layout(vectors: np.ndarray, attributions: np.ndarray, a: int, b: int, method: str,
                   n_neighbors: int, min_dist: float, seed: int, clip_percentile: float) -> np.ndarray:
    """(N, 2) float32 in [0, 1]: the attribution difference across, a 1-D embedding of the activations down."""
    from .layout import _embed, normalize_layout

    if len(vectors) < 4:
        raise AtlasError(f"only {len(vectors)} activations to compare {a} and {b}: give more images or positions")
    y = _embed(np.asarray(vectors, dtype=np.float32), method, n_neighbors, min_dist, seed, dims=1)
    y = normalize_layout(np.asarray(y, dtype=np.float64).reshape(-1, 1), clip_percentile)[:, 0]
    return np.stack([difference_axis(attributions, a, b), y], axis=1).astype(np.float32)


def levels_for(levels: tuple[int, ...], rows: int) -> tuple[int, ...]:
    """The grid levels of a selection of `rows` activations: those with no more cells across than the
    square root of the rows (finer ones would be mostly empty), and always the coarsest."""
    kept = tuple(n for n in levels if n * n <= rows)
    return kept or levels[:1]
