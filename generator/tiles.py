"""Icons packed into image tiles, and the metadata and scripts the viewer reads.

Output, per atlas, in `<site>/data/<atlas id>/`:
  <n>-<tx>-<ty>.webp  level n's icons in square tiles of `tile_cells` x `tile_cells` grid cells,
                      each icon at its cell's place, so the viewer loads only the tiles in view
  <n>-<tx>-<ty>-mask.webp
                      with `icons.mask`, the icons' importance masks as the alpha of a black tile
  level-*.json/.js, classes-*.js, strongest-*.js
                      the cells' metadata (x, y, count, top classes, fidelity, objective), their
                      class scores for the class filter and each class's strongest cells, one file
                      per level for small levels and per region of tiles for large ones (regions.py)
  overview.webp       the atlas drawn once at a small size, painted while tiles load
  thumb.webp          a small overview for the layer switcher
  links-<n>-<other>.js
                      level n's cells and the cells of the other layer's atlas that their
                      positions fall in (links.py), for the linked view of two layers
  atlas.js            `window.ATLAS_DATA["<id>"] = {...}`: the atlas entry and the class names
And `<site>/data/manifest.json` listing every atlas. Scripts register themselves in
`window.ATLAS_DATA` under their own key, so the viewer loads them with <script> elements,
which work from file:// where fetch() does not.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from . import examples as examples_module
from . import regions
from .display import COLOUR_MAP, colour_mapped, display_rgb
from .grid import Level
from .regions import js_json, write_script

# 3: class codes on the atlas's common scale, square-root coded; 4: large levels' cells and class codes
# split by region, each class's strongest cells in scripts of their own
DATA_SCHEMA = 4
WEBP_QUALITY = 85
TILE_PX = 320  # a tile is about this many pixels a side: 4 icons of 80 px


def atlas_id(layer: str) -> str:
    """A file-safe id for a layer name: 'blocks.4' -> 'blocks-4'."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", layer).strip("-") or "layer"


def tile_cells(icon_px: int) -> int:
    """Grid cells a tile spans on each side."""
    return max(1, TILE_PX // icon_px)


def write_tiles(level: Level, icons: np.ndarray, folder: Path, mask: np.ndarray | None = None) -> tuple[int, list[str]]:
    """Write level's icons (M, S, S, C) into tiles `<size>-<tx>-<ty>.webp`, shown as display_rgb does;
    returns tile_cells and the tiles made.

    With `mask` (M, S, S) uint8, each tile gets `<size>-<tx>-<ty>-mask.webp` beside it: black, the masks
    as its alpha, for the viewer to cut the tile with ("destination-in"). The tile itself stays whole,
    as the overview and a reader who turns the mask off see it.
    """
    icons = display_rgb(icons)
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
        alpha = np.zeros((down * icon, across * icon, 4), np.uint8)
        for i in members:
            x, y = level.cells[i]["x"] % span, level.cells[i]["y"] % span
            tile[y * icon:(y + 1) * icon, x * icon:(x + 1) * icon] = icons[i]
            if mask is not None:
                alpha[y * icon:(y + 1) * icon, x * icon:(x + 1) * icon, 3] = mask[i]
        Image.fromarray(tile).save(folder / f"{level.size}-{tx}-{ty}.webp", "WEBP", quality=WEBP_QUALITY, method=4)
        if mask is not None:
            Image.fromarray(alpha, "RGBA").save(folder / f"{level.size}-{tx}-{ty}-mask.webp", "WEBP",
                                                quality=WEBP_QUALITY, alpha_quality=WEBP_QUALITY, method=4)
        names.append(f"{tx}-{ty}")
    return span, names


def write_overview(level: Level, icons: np.ndarray, path: Path, size_px: int = 512) -> None:
    """The level's icons (M, S, S, C) at their grid positions on white, scaled to `size_px` square."""
    icons = display_rgb(icons)
    icon = icons.shape[1]
    canvas = np.full((level.size * icon, level.size * icon, 3), 255, np.uint8)
    for cell, image in zip(level.cells, icons):
        canvas[cell["y"] * icon:(cell["y"] + 1) * icon, cell["x"] * icon:(cell["x"] + 1) * icon] = image
    Image.fromarray(canvas).resize((size_px, size_px), Image.LANCZOS).save(path, "WEBP", quality=WEBP_QUALITY)


def leading_classes(levels: list[Level], count: int = 8) -> list[int]:
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
    examples: tuple[Path, list[str]] | None = None,
    trust: dict[str, np.ndarray] | None = None,
    names: dict[str, list] | None = None,
    aid: str | None = None,
    about: dict | None = None,
    method: str = "",
) -> dict:
    """Write one atlas's tiles, cell metadata, class scores and overview; returns its manifest entry.

    `rendered` holds one `RenderedIcons` per level; each cell's fidelity and final
    objective go into the metadata, so a weak icon can be found. `examples`, when given, is
    the examples stage's folder and the images' published names (examples.publish); `trust`,
    the layout's trust arrays (trust.py), puts each cell's score in its metadata; `names`, the
    regions' names per level (naming.py), goes into `names.js`, which the viewer draws on the map.
    A class atlas or comparison (class_atlas.py) gives its own `aid` and the fields of `about`.
    `method` is the parameterization that made the icons (icons/param.py), which the entry records
    beside whether they carry masks and the colour map that shows them, if any (display.py).
    """
    aid = aid or atlas_id(layer)
    folder = data_dir / aid
    folder.mkdir(parents=True, exist_ok=True)
    entries, fidelities, sides, parts = [], [], [], []
    for level, icons in zip(levels, rendered):
        span, tiles = write_tiles(level, icons.icons, folder, icons.mask)
        cells = [{**cell, "fidelity": round(float(f), 3), "objective": round(float(o), 3)}
                 for cell, f, o in zip(level.cells, icons.fidelity, icons.objective)]
        if trust:
            for cell, t in zip(cells, trust[f"cell-{level.size}"]):
                cell["trust"] = None if np.isnan(t) else round(float(t), 2)
        fidelities.extend(icons.fidelity.tolist())
        side = regions.region_side(level, span)
        rows = regions.region_rows(level, side)
        entries.append({"size": level.size, "tile_cells": span, "tiles": tiles, "cell_count": len(cells),
                        "max_count": max((c["count"] for c in cells), default=0),
                        **regions.write_cells(folder, aid, level, cells, side, rows)})
        sides.append(side)
        parts.append(rows)
    scale = regions.class_scale(levels)
    codes = [regions.quantize_scores(lv.scores, scale) for lv in levels]
    class_fields, level_fields = regions.write_class_scores(folder, aid, levels, codes, sides, parts)
    for entry, fields in zip(entries, level_fields):
        entry.update(fields)
    strongest = regions.write_strongest(folder, aid, levels, codes)
    shown = examples_module.publish(folder, aid, levels, *examples) if examples else {}
    if examples:
        from .findings import contradiction

        shown["finding"] = contradiction(levels, *examples)
    if names and any(names.values()):
        write_script(folder / "names.js", f"{aid}/names", names)
        shown["names"] = f"{aid}/names.js"
    overview_level = min(range(len(levels)), key=lambda i: abs(levels[i].size - 16))
    write_overview(levels[overview_level], rendered[overview_level].icons, folder / "overview.webp")
    write_overview(levels[0], rendered[0].icons, folder / "thumb.webp", 96)
    return {
        "id": aid,
        "kind": "layer",
        "label": layer,
        "title": f"Activation atlas of layer {layer}",
        "model": model_spec,
        "layer": layer,
        "shape": list(shape),
        "activations": activations,
        "icon_px": int(rendered[0].icons.shape[1]) if rendered else 0,
        "method": method,
        "mask": bool(rendered) and rendered[0].mask is not None,
        **({"colour_map": COLOUR_MAP} if rendered and colour_mapped(rendered[0].icons.shape[-1]) else {}),
        "levels": [lv.size for lv in levels],
        "level_data": entries,
        "fidelity_mean": round(float(np.mean(fidelities)), 3) if fidelities else 0.0,
        "top_classes": leading_classes(levels),
        **class_fields,
        "class_scale": float(f"{scale:.6g}"),
        **strongest,
        **shown,
        **({"trustworthiness": None if np.isnan(trust["trustworthiness"]) else round(float(trust["trustworthiness"]), 4),
            "trust_mean": round(float(trust["kept"].mean()), 3) if trust["kept"].size else None} if trust else {}),
        "overview": f"{aid}/overview.webp",
        "thumb": f"{aid}/thumb.webp",
        "script": f"{aid}/atlas.js",
        **(about or {}),
    }


def write_links(data_dir: Path, atlas: dict, levels: list[Level], other: str, other_levels: list[Level],
                links: dict[int, list]) -> None:
    """`<atlas>/links-<n>-<other>.js` for each level of `links` (links.py): {"cells": [[x, y, [ox, oy, count,
    ...]], ...]}, each cell of `atlas` with the cells of atlas `other` its activations' positions fall in;
    the entry's "links" maps `other` to {level size: script}."""
    by_size = {lv.size: lv for lv in other_levels}
    scripts = {}
    for level in levels:
        if level.size not in links:
            continue
        cells_b = by_size[level.size].cells
        cells = [[cell["x"], cell["y"], [v for b, n in listed for v in (cells_b[b]["x"], cells_b[b]["y"], n)]]
                 for cell, listed in zip(level.cells, links[level.size]) if listed]
        stem = f"links-{level.size}-{other}"
        write_script(data_dir / atlas["id"] / f"{stem}.js", f"{atlas['id']}/{stem}", {"cells": cells})
        scripts[str(level.size)] = f"{atlas['id']}/{stem}.js"
    atlas.setdefault("links", {})[other] = scripts


def write_manifest(data_dir: Path, atlases: list[dict], class_names: list[str], title: str,
                   class_atlases: list[dict] | None = None) -> dict:
    """Write manifest.json and, for the viewer, one atlas.js per atlas with the class names.

    `atlases` are the layers' atlases; `class_atlases` the class atlases and comparisons."""
    class_atlases = class_atlases or []
    manifest = {"schema": DATA_SCHEMA, "title": title, "classes": class_names, "atlases": atlases,
                "class_atlases": class_atlases}
    (data_dir / "manifest.json").write_text(json.dumps(manifest, separators=(",", ":"), sort_keys=True,
                                                       allow_nan=False))
    for atlas in atlases + class_atlases:
        group = atlases if atlas["kind"] == "layer" else class_atlases
        others = [{"id": a["id"], "label": a["label"], "thumb": a["thumb"], "script": a["script"]} for a in group]
        # The viewer finds a tile by its cell and needs no list of them: at 320 x 320 cells the
        # lists alone would be 60 KB of the page's first script.
        shown = {**atlas, "level_data": [{k: v for k, v in lv.items() if k != "tiles"} for lv in atlas["level_data"]]}
        write_script(data_dir / atlas["script"], atlas["id"],
                     {"schema": DATA_SCHEMA, "classes": class_names, "atlas": shown, "others": others})
    return manifest
