"""Icons packed into sprite sheets, and the metadata the viewer reads.

Output, per atlas, in `<site>/data/<atlas id>/`:
  level-<n>.webp   the level's icons in sheets, `columns` across, in cell order (level-<n>-1.webp,
                   ... when one sheet would pass WebP's 16383 px limit)
  overview.webp    the atlas drawn once at a small size, painted while sheets load
  atlas.js         `window.ATLAS_DATA["<id>"] = {...}`: the atlas entry, for pages opened from disk
And `<site>/data/manifest.json` (+ `manifest.js`) listing every atlas.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
from PIL import Image

from .grid import Level

DATA_SCHEMA = 1
WEBP_QUALITY = 85
_MAX_SHEET_PX = 16000  # WebP's limit is 16383 px a side


def atlas_id(layer: str) -> str:
    """A file-safe id for a layer name: 'blocks.4' -> 'blocks-4'."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", layer).strip("-") or "layer"


def sheet_layout(count: int, icon_px: int) -> tuple[int, int]:
    """(columns, icons per sheet): square-ish sheets, none wider or taller than WebP allows."""
    columns = min(max(1, math.ceil(math.sqrt(count))), _MAX_SHEET_PX // icon_px)
    rows = min(max(1, math.ceil(count / columns)), _MAX_SHEET_PX // icon_px)
    return columns, columns * rows


def write_sheets(icons: np.ndarray, folder: Path, stem: str) -> tuple[list[str], int, int]:
    """Pack (M, S, S, 3) icons row by row into lossy WebP sheets named `<stem>.webp`, `<stem>-1.webp`, ...

    Returns the sheet file names, the columns per sheet and the icons per sheet: icon i
    is in sheet i // per_sheet, at column (i % per_sheet) % columns.
    """
    count, size = len(icons), icons.shape[1]
    columns, per_sheet = sheet_layout(max(count, 1), size)
    names = []
    for number, start in enumerate(range(0, max(count, 1), per_sheet)):
        part = icons[start:start + per_sheet]
        rows = max(1, math.ceil(len(part) / columns))
        sheet = np.full((rows * size, columns * size, 3), 255, np.uint8)
        for i, icon in enumerate(part):
            r, c = divmod(i, columns)
            sheet[r * size:(r + 1) * size, c * size:(c + 1) * size] = icon
        name = f"{stem}.webp" if number == 0 else f"{stem}-{number}.webp"
        Image.fromarray(sheet).save(folder / name, "WEBP", quality=WEBP_QUALITY, method=4)
        names.append(name)
    return names, columns, per_sheet


def write_overview(level: Level, icons: np.ndarray, path: Path, size_px: int = 512) -> None:
    """The level's icons at their grid positions on white, scaled to `size_px` square."""
    icon = icons.shape[1]
    canvas = np.full((level.size * icon, level.size * icon, 3), 255, np.uint8)
    for cell, image in zip(level.cells, icons):
        canvas[cell["y"] * icon:(cell["y"] + 1) * icon, cell["x"] * icon:(cell["x"] + 1) * icon] = image
    Image.fromarray(canvas).resize((size_px, size_px), Image.LANCZOS).save(path, "WEBP", quality=WEBP_QUALITY)


def write_atlas(
    data_dir: Path,
    layer: str,
    model_spec: str,
    shape: tuple[int, ...],
    activations: int,
    levels: list[Level],
    rendered: list,
) -> dict:
    """Write one atlas's sheets and overview; returns its manifest entry.

    `rendered` holds one `RenderedIcons` per level; each cell's fidelity and final
    objective go into the metadata, so a weak icon can be found.
    """
    aid = atlas_id(layer)
    folder = data_dir / aid
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for level, icons in zip(levels, rendered):
        names, columns, per_sheet = write_sheets(icons.icons, folder, f"level-{level.size}")
        cells = [{**cell, "fidelity": round(float(f), 3), "objective": round(float(o), 3)}
                 for cell, f, o in zip(level.cells, icons.fidelity, icons.objective)]
        entries.append({"size": level.size, "tiles": [f"{aid}/{n}" for n in names], "columns": columns,
                        "per_tile": per_sheet, "cells": cells})
    overview_level = min(range(len(levels)), key=lambda i: abs(levels[i].size - 16))
    write_overview(levels[overview_level], rendered[overview_level].icons, folder / "overview.webp")
    entry = {
        "id": aid,
        "model": model_spec,
        "layer": layer,
        "shape": list(shape),
        "activations": activations,
        "icon_px": int(rendered[0].icons.shape[1]) if rendered else 0,
        "levels": [lv.size for lv in levels],
        "level_data": entries,
        "overview": f"{aid}/overview.webp",
        "script": f"{aid}/atlas.js",
    }
    return entry


def write_manifest(data_dir: Path, atlases: list[dict], class_names: list[str], title: str) -> dict:
    """Write manifest.json and, for pages opened from disk where fetch() is blocked, one script per atlas."""
    manifest = {"schema": DATA_SCHEMA, "title": title, "classes": class_names, "atlases": atlases}
    (data_dir / "manifest.json").write_text(json.dumps(manifest, separators=(",", ":"), sort_keys=True))
    for atlas in atlases:
        payload = {"schema": DATA_SCHEMA, "classes": class_names, "atlas": atlas,
                   "others": [{"id": a["id"], "layer": a["layer"], "overview": a["overview"]} for a in atlases]}
        (data_dir / atlas["script"]).write_text(
            "window.ATLAS_DATA = window.ATLAS_DATA || {};\n"
            f"window.ATLAS_DATA[{_js_string(atlas['id'])}] = {_js_json(payload)};\n"
        )
    return manifest


def _js_json(value) -> str:
    """JSON that is also safe inside a <script> element: no '</script>' or '<!--' can appear."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026") \
        .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _js_string(text: str) -> str:
    return _js_json(text)
