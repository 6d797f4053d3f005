"""The viewer's cell metadata and class scores, in files no larger than what a view needs.

A level of up to `SPLIT_CELLS` cells is written as one file of each kind; a larger level is
split into square regions of whole tiles, about `REGION_CELLS` cells a side, each with its own
files, so the viewer loads only the regions in view. In `<site>/data/<atlas id>/`:

  level-<n>.json                a one-file level's cells: x, y, count, top classes, fidelity, objective
  level-<n>.js                  the same cells, compact, as a script (pages opened from disk cannot fetch JSON):
                                {"cells": [[x, y, count, fidelity, [class, score, class, score, ...],
                                trust], ...]}, trust the layout's score for the cell (trust.py) or null
  level-<n>-<rx>-<ry>.json/.js  the same for the cells of region (rx, ry) of a split level
  classes-<k>.js                the one-file levels' codes for classes first.. (a chunk of the classes):
                                {"first": first, "codes": {"<n>": [base64 of one int8 code a cell, per class]}}
  classes-<n>-<rx>-<ry>-<k>.js  region (rx, ry) of split level n: {"first": first, "codes": [base64 per class]}
  strongest-<k>.js              for classes first..: {"first": first, "cells": [per class: [per level:
                                [[x, y, code, lead, ...] the strongest cells, [...] the most negative]]]},
                                `lead` the class leading the cell's top classes

Cells of a region, and their codes, are in the level's order (row by row from the top left).
A script registers as `window.ATLAS_DATA["<its path under data/, without .js>"]`. Codes are
int8 on one scale shared by every class of the atlas (`quantize_scores`).
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path

import numpy as np

from .grid import Level

SPLIT_CELLS = 2048  # a level of more cells is split into regions: its one script would pass about 140 KB
REGION_CELLS = 32  # a region is about this many cells a side, rounded to whole tiles: a script of 75 KB at most
CLASS_SCRIPT_BYTES = 300_000  # a one-file levels' class script holds about this much, whatever the atlas's size
REGION_CLASS_BYTES = 100_000  # and a region's class script about this much
STRONGEST = 6  # cells listed for a class at each level and sign
STRONGEST_SCRIPT_BYTES = 40_000


def class_scale(levels: list[Level]) -> float:
    """The largest |score| of any cell for any class, over every level: the filter's common scale.

    One scale for all classes, so a weakly attributed class looks weak rather than being
    stretched to its own maximum.
    """
    peaks = [float(np.abs(lv.scores).max()) for lv in levels if lv.scores.size]
    peak = max(peaks, default=0.0)
    return peak if math.isfinite(peak) and peak > 0 else 1.0


def quantize_scores(scores: np.ndarray, scale: float, rows: int = 8192) -> np.ndarray:
    """(cells, classes) scores -> int8 codes: sign(s) * sqrt(|s| / scale) * 127, rounded.

    The square root spends the 8 bits where the eye needs them (faint classes), and the
    viewer uses the code itself as the icon's opacity; the score is (code / 127)^2 * scale.
    Done `rows` cells at a time, so that a level of 100,000 cells needs no float64 copy of itself.
    """
    out = np.empty(scores.shape, np.int8)
    for start in range(0, len(scores), rows):
        ratio = np.clip(np.nan_to_num(np.asarray(scores[start:start + rows], np.float64) / scale), -1, 1)
        out[start:start + rows] = np.round(np.sign(ratio) * np.sqrt(np.abs(ratio)) * 127)
    return out


def class_chunk(cells: int, budget: int = CLASS_SCRIPT_BYTES) -> int:
    """Classes per class script: one byte a cell, in base64, up to `budget` bytes a script."""
    return max(1, min(100, budget * 3 // (4 * max(cells, 1))))


def region_side(level: Level, tile_cells: int) -> int:
    """Cells a side of one region of `level`: the level's size when it stays one file."""
    side = tile_cells * max(1, round(REGION_CELLS / tile_cells))
    return side if len(level.cells) > SPLIT_CELLS and level.size > side else level.size


def region_rows(level: Level, side: int) -> dict[str, np.ndarray]:
    """The cells of each region that holds any, "<rx>-<ry>" -> (cells,) int64 indices in level order."""
    if not level.cells:
        return {}
    xy = np.array([[c["x"], c["y"]] for c in level.cells], np.int64) // side
    across = -(-level.size // side)
    key = xy[:, 0] * across + xy[:, 1]  # regions by column, then row, as tiles are
    order = np.argsort(key, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(key[order]) != 0])
    return {f"{key[order[s]] // across}-{key[order[s]] % across}": rows
            for s, rows in zip(starts, np.split(order, starts[1:]))}


def compact_cell(cell: dict) -> list:
    return [cell["x"], cell["y"], cell["count"], cell["fidelity"], [v for pair in cell["top"] for v in pair],
            cell.get("trust")]


def write_cells(folder: Path, aid: str, level: Level, cells: list[dict], side: int,
                regions: dict[str, np.ndarray]) -> dict:
    """The level's cell files (module docstring); returns the level entry's fields naming them.

    `cells` are the level's cells with their fidelity and objective; `regions` from `region_rows`.
    """
    n = level.size
    stem = f"level-{n}" if side == n else f"level-{n}-{{region}}"
    for name, rows in regions.items():
        part = [cells[i] for i in rows.tolist()]
        file = stem.replace("{region}", name)
        (folder / f"{file}.json").write_text(json.dumps({"size": n, "region": name, "cells": part},
                                                        separators=(",", ":"), sort_keys=True, allow_nan=False))
        write_script(folder / f"{file}.js", f"{aid}/{file}", {"cells": [compact_cell(c) for c in part]})
    return {"region_cells": side, "regions": list(regions), "cells_json": f"{aid}/{stem}.json",
            "cells_script": f"{aid}/{stem}.js"}


def _b64_columns(codes: np.ndarray) -> list[str]:
    """(cells, classes) int8 -> one base64 string per class, of its codes in cell order."""
    return [base64.b64encode(column.tobytes()).decode() for column in np.ascontiguousarray(codes.T)]


def write_class_scores(folder: Path, aid: str, levels: list[Level], codes: list[np.ndarray], sides: list[int],
                       regions: list[dict[str, np.ndarray]]) -> tuple[dict, list[dict]]:
    """Class scripts for the one-file levels together, and per region and chunk of classes for split ones.

    Returns the atlas entry's fields ("class_chunk", "class_scripts") and each level's
    ("class_script" pattern and "class_chunk" for a split level, nothing for a one-file one).
    """
    classes = levels[0].scores.shape[1] if levels else 0
    whole = [i for i, lv in enumerate(levels) if sides[i] == lv.size and lv.cells]
    chunk = class_chunk(sum(len(levels[i].cells) for i in whole))
    names = []
    for k, first in enumerate(range(0, classes, chunk) if whole else []):
        last = min(classes, first + chunk)
        payload = {"first": first, "codes": {str(levels[i].size): _b64_columns(codes[i][:, first:last]) for i in whole}}
        write_script(folder / f"classes-{k}.js", f"{aid}/classes-{k}", payload)
        names.append(f"{aid}/classes-{k}.js")
    per_level = []
    for i, lv in enumerate(levels):
        if sides[i] == lv.size:
            per_level.append({})
            continue
        n = lv.size
        part_chunk = class_chunk(max(len(rows) for rows in regions[i].values()), REGION_CLASS_BYTES)
        for name, rows in regions[i].items():
            region_codes = codes[i][rows]
            for k, first in enumerate(range(0, classes, part_chunk)):
                key = f"{aid}/classes-{n}-{name}-{k}"
                write_script(folder / f"classes-{n}-{name}-{k}.js", key,
                             {"first": first, "codes": _b64_columns(region_codes[:, first:first + part_chunk])})
        per_level.append({"class_script": f"{aid}/classes-{n}-{{region}}-{{chunk}}.js", "class_chunk": part_chunk})
    return {"class_chunk": chunk, "class_scripts": names}, per_level


def strongest_cells(codes: np.ndarray, count: int = STRONGEST, classes: int = 128) -> np.ndarray:
    """(K, count) int64: each class's cells of highest code, highest first, ties to the lower index; -1 pads.

    Only cells of a code above zero are listed; `codes` (cells, K) int8. The same cells a
    stable sort of each class's codes puts first, found without sorting them: a partition
    gives each class's count-th highest code, and only the cells at or above it are sorted.
    """
    m, k = codes.shape
    out = np.full((k, count), -1, np.int64)
    t = min(count, m)
    for first in range(0, k if t else 0, classes):
        block = np.ascontiguousarray(codes[:, first:first + classes].T)  # (classes, cells)
        edge = np.partition(block, m - t, axis=1)[:, m - t] if t < m else block.min(axis=1)
        cls, cell = np.nonzero(block >= np.maximum(edge, 1)[:, None])
        order = np.lexsort((cell, -block[cls, cell].astype(np.int16), cls))
        cls, cell = cls[order], cell[order]
        rank = np.arange(len(cls)) - np.searchsorted(cls, cls)  # place within its class
        keep = rank < t
        out[first + cls[keep], rank[keep]] = cell[keep]
    return out


def write_strongest(folder: Path, aid: str, levels: list[Level], codes: list[np.ndarray]) -> dict:
    """strongest-<k>.js for every chunk of classes; returns the atlas entry's fields naming them."""
    classes = levels[0].scores.shape[1] if levels else 0
    lists = []  # per level: (K, STRONGEST) positive and negative cell indices
    for lv, c in zip(levels, codes):
        lists.append((strongest_cells(c), strongest_cells(-c)))  # codes are within -127..127: negation is safe
    lead = [[cell["top"][0][0] if cell["top"] else -1 for cell in lv.cells] for lv in levels]

    def entries(i: int, cls: int, picked: np.ndarray) -> list[int]:
        flat = []
        for row in picked[cls].tolist():
            if row >= 0:
                cell = levels[i].cells[row]
                flat += [cell["x"], cell["y"], int(codes[i][row, cls]), lead[i][row]]
        return flat

    chunk = max(1, min(100, STRONGEST_SCRIPT_BYTES // (16 * 2 * STRONGEST * max(1, len(levels)))))
    names = []
    for k, first in enumerate(range(0, classes, chunk)):
        cells = [[[entries(i, cls, pos), entries(i, cls, neg)] for i, (pos, neg) in enumerate(lists)]
                 for cls in range(first, min(classes, first + chunk))]
        write_script(folder / f"strongest-{k}.js", f"{aid}/strongest-{k}", {"first": first, "cells": cells})
        names.append(f"{aid}/strongest-{k}.js")
    return {"strongest_chunk": chunk, "strongest_scripts": names}


def read_cells(data_dir: Path, level: dict) -> list[dict]:
    """A level's cells from its JSON files, one or one per region, in the level's order."""
    cells = []
    for name in level["regions"]:
        path = data_dir / level["cells_json"].replace("{region}", name)
        cells += json.loads(path.read_text())["cells"]
    return sorted(cells, key=lambda c: (c["y"], c["x"]))


def write_script(path: Path, key: str, payload) -> None:
    path.write_text("window.ATLAS_DATA = window.ATLAS_DATA || {};\n"
                    f"window.ATLAS_DATA[{js_json(key)}] = {js_json(payload)};\n", encoding="utf-8")


def js_json(value) -> str:
    """JSON that is also safe inside a <script> element or an HTML attribute: no '<', '>' or '&' appears.

    NaN and Infinity are no JSON: a value like that is a bug upstream, and fails here rather than in a browser.
    """
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026") \
        .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
