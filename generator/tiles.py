"""Icons packed into image tiles, and the metadata and scripts the viewer reads.

Output, per atlas, in `<site>/data/<atlas id>/`:
  <n>-<tx>-<ty>.webp  level n's icons in square tiles of `tile_cells` x `tile_cells` grid cells,
                      each icon at its cell's place, so the viewer loads only the tiles in view
  level-<n>.json      the level's cells: x, y, count, top classes, fidelity, objective
  level-<n>.js        the same cells, compact, as a script (pages opened from disk cannot fetch JSON)
  classes-<k>.js      every cell's attribution to classes k*class_chunk.., for the class filter, as int8
                      codes on one scale shared by every class of the atlas (`class_scale`)
  overview.webp       the atlas drawn once at a small size, painted while tiles load
  thumb.webp          a small overview for the layer switcher
  atlas.js            `window.ATLAS_DATA["<id>"] = {...}`: the atlas entry and the class names
And `<site>/data/manifest.json` listing every atlas. Scripts register themselves in
`window.ATLAS_DATA` under their own key, so the viewer loads them with <script> elements,
which work from file:// where fetch() does not.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from .grid import Level

DATA_SCHEMA = 3  # 3: class codes on the atlas's common scale, square-root coded
WEBP_QUALITY = 85
TILE_PX = 320  # a tile is about this many pixels a side: 4 icons of 80 px
CLASS_SCRIPT_BYTES = 300_000  # a class-filter script holds about this much, whatever the atlas's size


def atlas_id(layer: str) -> str:
    """A file-safe id for a layer name: 'blocks.4' -> 'blocks-4'."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", layer).strip("-") or "layer"


def tile_cells(icon_px: int) -> int:
    """Grid cells a tile spans on each side."""
    return max(1, TILE_PX // icon_px)


def write_tiles(level: Level, icons: np.ndarray, folder: Path) -> tuple[int, list[str]]:
    """Write level's icons (M, S, S, 3) into tiles `<size>-<tx>-<ty>.webp`; returns tile_cells and the tiles made."""
    icon = icons.shape[1] if len(icons) else 1
    span = tile_cells(icon)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, cell in enumerate(level.cells):
        groups.setdefault((cell["x"] // span, cell["y"] // span), []).append(i)
    names = []
    for (tx, ty), members in sorted(groups.items()):
        across = min(span, level.size - tx * span)
        down = min(span, level.size - ty * span)
        tile = np.full((down * icon, across * icon, 3), 255, np.uint8)
        for i in members:
            x, y = level.cells[i]["x"] % span, level.cells[i]["y"] % span
            tile[y * icon:(y + 1) * icon, x * icon:(x + 1) * icon] = icons[i]
        Image.fromarray(tile).save(folder / f"{level.size}-{tx}-{ty}.webp", "WEBP", quality=WEBP_QUALITY, method=4)
        names.append(f"{tx}-{ty}")
    return span, names


def write_overview(level: Level, icons: np.ndarray, path: Path, size_px: int = 512) -> None:
    """The level's icons at their grid positions on white, scaled to `size_px` square."""
    icon = icons.shape[1]
    canvas = np.full((level.size * icon, level.size * icon, 3), 255, np.uint8)
    for cell, image in zip(level.cells, icons):
        canvas[cell["y"] * icon:(cell["y"] + 1) * icon, cell["x"] * icon:(cell["x"] + 1) * icon] = image
    Image.fromarray(canvas).resize((size_px, size_px), Image.LANCZOS).save(path, "WEBP", quality=WEBP_QUALITY)


def class_scale(levels: list[Level]) -> float:
    """The largest |score| of any cell for any class, over every level: the filter's common scale.

    One scale for all classes, so a weakly attributed class looks weak rather than being
    stretched to its own maximum.
    """
    peaks = [float(np.abs(lv.scores).max()) for lv in levels if lv.scores.size]
    peak = max(peaks, default=0.0)
    return peak if math.isfinite(peak) and peak > 0 else 1.0


def quantize_scores(scores: np.ndarray, scale: float) -> np.ndarray:
    """(cells, classes) scores -> int8 codes: sign(s) * sqrt(|s| / scale) * 127, rounded.

    The square root spends the 8 bits where the eye needs them (faint classes), and the
    viewer uses the code itself as the icon's opacity; the score is (code / 127)^2 * scale.
    """
    ratio = np.clip(np.nan_to_num(np.asarray(scores, np.float64) / scale), -1, 1)
    return np.round(np.sign(ratio) * np.sqrt(np.abs(ratio)) * 127).astype(np.int8)


def class_chunk(cells: int) -> int:
    """Classes per class-filter script: one byte a cell, in base64, up to CLASS_SCRIPT_BYTES a script."""
    return max(1, min(100, CLASS_SCRIPT_BYTES * 3 // (4 * max(cells, 1))))


def write_class_scripts(folder: Path, aid: str, levels: list[Level], classes: int, chunk: int,
                        scale: float) -> list[str]:
    """classes-<k>.js: per level, each class's int8 codes for every cell (base64), on the common `scale`."""
    quantized = [quantize_scores(lv.scores, scale) for lv in levels]
    names = []
    for k, first in enumerate(range(0, classes, chunk)):
        last = min(classes, first + chunk)
        payload = {
            "first": first,
            "codes": [[base64.b64encode(codes[:, c].tobytes()).decode() for c in range(first, last)]
                      for codes in quantized],
        }
        name = f"classes-{k}.js"
        _write_script(folder / name, f"{aid}/classes-{k}", payload)
        names.append(f"{aid}/{name}")
    return names


def _top_classes(levels: list[Level], count: int = 8) -> list[int]:
    """The classes most often first in a cell, weighted by the cell's activations, at the finest level."""
    tally: Counter = Counter()
    for cell in levels[-1].cells if levels else []:
        if cell["top"]:
            tally[cell["top"][0][0]] += cell["count"]
    return [k for k, _ in tally.most_common(count)]


def write_atlas(
    data_dir: Path,
    layer: str,
    model_spec: str,
    shape: tuple[int, ...],
    activations: int,
    levels: list[Level],
    rendered: list,
) -> dict:
    """Write one atlas's tiles, cell metadata, class scores and overview; returns its manifest entry.

    `rendered` holds one `RenderedIcons` per level; each cell's fidelity and final
    objective go into the metadata, so a weak icon can be found.
    """
    aid = atlas_id(layer)
    folder = data_dir / aid
    folder.mkdir(parents=True, exist_ok=True)
    entries, fidelities = [], []
    for level, icons in zip(levels, rendered):
        span, tiles = write_tiles(level, icons.icons, folder)
        cells = [{**cell, "fidelity": round(float(f), 3), "objective": round(float(o), 3)}
                 for cell, f, o in zip(level.cells, icons.fidelity, icons.objective)]
        fidelities.extend(icons.fidelity.tolist())
        (folder / f"level-{level.size}.json").write_text(json.dumps({"size": level.size, "cells": cells},
                                                                    separators=(",", ":"), sort_keys=True,
                                                                    allow_nan=False))
        compact = [[c["x"], c["y"], c["count"], c["fidelity"], [v for pair in c["top"] for v in pair]]
                   for c in cells]
        _write_script(folder / f"level-{level.size}.js", f"{aid}/level-{level.size}", {"cells": compact})
        entries.append({"size": level.size, "tile_cells": span, "tiles": tiles, "cell_count": len(cells),
                        "max_count": max((c["count"] for c in cells), default=0),
                        "cells_json": f"{aid}/level-{level.size}.json",
                        "cells_script": f"{aid}/level-{level.size}.js"})
    classes = levels[0].scores.shape[1] if levels else 0
    chunk = class_chunk(sum(len(lv.cells) for lv in levels))
    scale = class_scale(levels)
    class_scripts = write_class_scripts(folder, aid, levels, classes, chunk, scale)
    overview_level = min(range(len(levels)), key=lambda i: abs(levels[i].size - 16))
    write_overview(levels[overview_level], rendered[overview_level].icons, folder / "overview.webp")
    write_overview(levels[0], rendered[0].icons, folder / "thumb.webp", 96)
    return {
        "id": aid,
        "model": model_spec,
        "layer": layer,
        "shape": list(shape),
        "activations": activations,
        "icon_px": int(rendered[0].icons.shape[1]) if rendered else 0,
        "levels": [lv.size for lv in levels],
        "level_data": entries,
        "fidelity_mean": round(float(np.mean(fidelities)), 3) if fidelities else 0.0,
        "top_classes": _top_classes(levels),
        "class_chunk": chunk,
        "class_scale": float(f"{scale:.6g}"),
        "class_scripts": class_scripts,
        "overview": f"{aid}/overview.webp",
        "thumb": f"{aid}/thumb.webp",
        "script": f"{aid}/atlas.js",
    }


def write_manifest(data_dir: Path, atlases: list[dict], class_names: list[str], title: str) -> dict:
    """Write manifest.json and, for the viewer, one atlas.js per atlas with the class names."""
    manifest = {"schema": DATA_SCHEMA, "title": title, "classes": class_names, "atlases": atlases}
    (data_dir / "manifest.json").write_text(json.dumps(manifest, separators=(",", ":"), sort_keys=True,
                                                       allow_nan=False))
    others = [{"id": a["id"], "layer": a["layer"], "thumb": a["thumb"], "script": a["script"]} for a in atlases]
    for atlas in atlases:
        _write_script(data_dir / atlas["script"], atlas["id"],
                      {"schema": DATA_SCHEMA, "classes": class_names, "atlas": atlas, "others": others})
    return manifest


def _write_script(path: Path, key: str, payload) -> None:
    path.write_text("window.ATLAS_DATA = window.ATLAS_DATA || {};\n"
                    f"window.ATLAS_DATA[{js_json(key)}] = {js_json(payload)};\n", encoding="utf-8")


def js_json(value) -> str:
    """JSON that is also safe inside a <script> element or an HTML attribute: no '<', '>' or '&' appears.

    NaN and Infinity are no JSON: a value like that is a bug upstream, and fails here rather than in a browser.
    """
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026") \
        .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
