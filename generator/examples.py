"""The real examples behind each cell: the dataset patches nearest its mean direction.

Artifact per layer, in `<cache>/examples/<key>/`:
  examples.npz                 rows-<n> (cells, k) int64: level n's examples, activation rows by
                               decreasing cosine to the cell's mean (-1 past a cell's own count);
                               used (E,) int64, every example's row, sorted; for each of them
                               image (E,) int64, its source image in the sample plan, and
                               predicted (E,) int64 and confidence (E,) float32, the model's top
                               class for its crop and that class's softmax probability
  sprite-<n>-<gx>-<gy>.webp    level n's cells with gx * GROUP <= x < (gx + 1) * GROUP (and y
                               alike), one row each in the level's cell order, its k patches
                               side by side, PATCH_PX square

A cell's examples are chosen among its own activations: what the reader checks is what the
cell holds. A patch is the square of the source image that the activation's position sees:
the theoretical receptive field of the default model's layers spans the whole crop, so the
patch is the effective receptive field (Luo et al. 2016), the square about the position that
holds `FIELD_MASS` of the input gradient's magnitude, measured on the model itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .grid import Level, row_cells
from .display import display_rgb
from .images import SamplePlan, crop_source, resize_crop

GROUP = 4  # cells a side per sprite: 16 cells of 8 patches of 64 px, about 40 KB of WebP
PATCH_PX = 64
FIELD_MASS = 0.75  # of the input gradient's magnitude inside the patch
FIELD_PROBES = 4  # seeded noise images the gradient is averaged over
READ_ROWS = 16_384


@dataclass(frozen=True)
class Field:
    """Where a layer's position (row, column) looks, in the model's input pixels."""

    size: int  # the input's side
    grid: tuple[int, int]  # the layer's (height, width)
    side: float  # the patch's side
    offset: tuple[float, float] = (0.0, 0.0)  # (down, right) from the position's cell centre to the field's

    def boxes(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """(n, 4) float64 left, top, right, bottom of each position's patch, moved inside the input."""
        h, w = self.grid
        side = min(self.side, self.size)
        cy = (rows + 0.5) * self.size / h + self.offset[0]
        cx = (cols + 0.5) * self.size / w + self.offset[1]
        left = np.clip(cx - side / 2, 0, self.size - side)
        top = np.clip(cy - side / 2, 0, self.size - side)
        return np.stack([left, top, left + side, top + side], 1)


def receptive_field(model, layer: str, mass: float = FIELD_MASS, probes: int = FIELD_PROBES) -> Field:
    """The effective receptive field of `layer`'s centre position, from the model's own gradient."""
    size = model.input_size
    magnitude = torch.zeros(size, size, dtype=torch.float64)
    device = next(model.net.parameters()).device
    for probe in range(probes):
        noise = torch.rand(1, model.channels, size, size, generator=torch.Generator().manual_seed(probe))
        x = noise.to(device).requires_grad_()
        acts = model.capture([layer], model.normalize(x))[layer]
        h, w = acts.shape[-2:]
        acts[0, :, h // 2, w // 2].sum().backward()
        magnitude += x.grad.detach().abs().sum(1)[0].double().cpu()
    centres = np.arange(size) + 0.5
    total = float(magnitude.sum())
    if not np.isfinite(total) or total <= 0:  # the layer does not depend on its input: show the whole crop
        return Field(size, (int(h), int(w)), float(size))
    # The field's centre is the gradient's centroid: padding puts it off the cell's centre by up to half a stride.
    m = magnitude.numpy()
    cy, cx = float(m.sum(1) @ centres) / total, float(m.sum(0) @ centres) / total
    # Each pixel's distance from the centre in the max norm: a square of side 2d holds the pixels within d.
    reach = np.maximum(np.abs(centres[:, None] - cy), np.abs(centres[None, :] - cx)).ravel()
    order = np.argsort(reach, kind="stable")
    weights = m.ravel()[order]
    at = min(int(np.searchsorted(np.cumsum(weights) / total, mass)), len(order) - 1)
    side = float(min(size, round(2 * reach[order][at] + 1)))  # the pixels whose centres are within reach, whole
    offset = (cy - (h // 2 + 0.5) * size / h, cx - (w // 2 + 0.5) * size / w)
    return Field(size, (int(h), int(w)), side, offset)


def level_cells(xy: np.ndarray, levels: list[Level]) -> list[np.ndarray]:
    """Per level, (N,) int64: each activation's cell in the level's cell order, -1 where its cell was dropped."""
    return [row_cells(xy, level) for level in levels]


def nearest_rows(vectors, cells: list[np.ndarray], levels: list[Level], k: int) -> list[np.ndarray]:
    """Per level, (cells, k) int64: each cell's k rows most cosine-similar to its mean, best first, -1 padded.

    `vectors` (N, C) may be a memmap; it is read once, in chunks. Ties go to the earlier row.
    """
    n = len(vectors)
    units = []
    for level in levels:
        d = level.directions.astype(np.float64)
        units.append(d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12))
    scores = [np.full(n, -np.inf) for _ in levels]
    for start in range(0, n, READ_ROWS):
        block = np.asarray(vectors[start:start + READ_ROWS], dtype=np.float64)
        norms = np.maximum(np.linalg.norm(block, axis=1), 1e-12)
        for score, unit, cell in zip(scores, units, cells):
            part = cell[start:start + READ_ROWS]
            kept = part >= 0
            score[start:start + READ_ROWS][kept] = np.einsum("nc,nc->n", block[kept], unit[part[kept]]) / norms[kept]
    out = []
    for level, score, cell in zip(levels, scores, cells):
        rows = np.full((len(level.cells), k), -1, np.int64)
        member = np.flatnonzero(cell >= 0)
        order = member[np.lexsort((member, -score[member], cell[member]))]  # by cell, then best first
        owner = cell[order]
        first = np.searchsorted(owner, np.arange(len(level.cells)))
        rank = np.arange(len(order)) - first[owner]
        take = rank < k
        rows[owner[take], rank[take]] = order[take]
        out.append(rows)
    return out


def patch_boxes(positions: np.ndarray, plan: SamplePlan, field: Field) -> tuple[np.ndarray, np.ndarray]:
    """For rows of positions (crop, row, column): each one's image index, and its patch in that image's pixels."""
    crops = np.asarray(plan.crops, np.float64)[positions[:, 0]]
    inside = field.boxes(positions[:, 1].astype(np.float64), positions[:, 2].astype(np.float64)) / field.size
    width, height = crops[:, 3] - crops[:, 1], crops[:, 4] - crops[:, 2]
    boxes = np.stack([crops[:, 1] + inside[:, 0] * width, crops[:, 2] + inside[:, 1] * height,
                      crops[:, 1] + inside[:, 2] * width, crops[:, 2] + inside[:, 3] * height], 1)
    return crops[:, 0].astype(np.int64), boxes


def cut_patches(plan: SamplePlan, images: np.ndarray, boxes: np.ndarray, px: int = PATCH_PX) -> np.ndarray:
    """(n, px, px, 3) uint8 patches to show (display.py maps other channel counts), each source image opened once."""
    out = np.zeros((len(images), px, px, 3), np.uint8)
    for index in np.unique(images):
        source = crop_source(plan.images[int(index)], plan.channels)
        for i in np.flatnonzero(images == index):
            out[i] = display_rgb(resize_crop(source, tuple(float(v) for v in boxes[i]), px))
    return out


def predict(model, plan: SamplePlan, crops: np.ndarray, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """The model's top class and its softmax probability for each crop, in the order given."""
    from .images import CropLoader

    loader = CropLoader(plan, model.input_size)
    device = next(model.net.parameters()).device
    classes, confidence = np.empty(len(crops), np.int64), np.empty(len(crops), np.float32)
    order = np.argsort(crops, kind="stable")  # crops come grouped by image: each image decoded once
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            picked = order[start:start + batch_size]
            x = model.normalize(loader.load([int(c) for c in crops[picked]]).to(device))
            p = torch.softmax(model.net(x).float(), 1)
            best = p.max(1)
            classes[picked], confidence[picked] = best.indices.cpu().numpy(), best.values.cpu().numpy()
    return classes, confidence


def sprite_groups(level: Level) -> dict[tuple[int, int], np.ndarray]:
    """Level cells by sprite, (gx, gy) -> their indices in the level's cell order."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, cell in enumerate(level.cells):
        groups.setdefault((cell["x"] // GROUP, cell["y"] // GROUP), []).append(i)
    return {g: np.array(ids, np.int64) for g, ids in sorted(groups.items())}


def write_sprites(folder: Path, level: Level, rows: np.ndarray, patch_of_row: dict[int, np.ndarray]) -> None:
    """One WebP a sprite group: a row per cell, its examples' patches left to right (black past its count)."""
    k = rows.shape[1]
    for (gx, gy), ids in sprite_groups(level).items():
        sheet = np.zeros((len(ids) * PATCH_PX, k * PATCH_PX, 3), np.uint8)
        for line, cell in enumerate(ids):
            for j, row in enumerate(rows[cell]):
                if row >= 0:
                    sheet[line * PATCH_PX:(line + 1) * PATCH_PX, j * PATCH_PX:(j + 1) * PATCH_PX] = patch_of_row[int(row)]
        Image.fromarray(sheet).save(folder / f"sprite-{level.size}-{gx}-{gy}.webp", quality=80, method=4)


def make_examples(folder: Path, model, layer: str, plan: SamplePlan, act_folder: Path, xy: np.ndarray,
                  levels: list[Level], k: int, advance=lambda n: None) -> dict:
    """Choose, cut and predict every level's examples into `folder` (the artifact above)."""
    from . import store

    vectors = np.load(act_folder / "activations.npy", mmap_mode="r")
    positions = np.load(act_folder / "positions.npy", mmap_mode="r")
    chosen = nearest_rows(vectors, level_cells(xy, levels), levels, k)
    used = np.unique(np.concatenate([r[r >= 0] for r in chosen]))
    field = receptive_field(model, layer)
    where = np.asarray(positions[used], np.int64)
    images, boxes = patch_boxes(where, plan, field)
    patches = cut_patches(plan, images, boxes)
    advance(len(used))
    patch_of_row = dict(zip(used.tolist(), patches))
    for level, rows in zip(levels, chosen):
        write_sprites(folder, level, rows, patch_of_row)
    crops, crop_of = np.unique(where[:, 0], return_inverse=True)
    predicted, confidence = predict(model, plan, crops)
    arrays = {f"rows-{lv.size}": r for lv, r in zip(levels, chosen)}
    store.save_arrays(folder / "examples.npz", {**arrays, "used": used, "image": images,
                                                 "predicted": predicted[crop_of], "confidence": confidence[crop_of]})
    return {"layer": layer, "examples": int(len(used)), "field_px": round(field.side, 1)}


def publish(folder: Path, aid: str, levels: list[Level], made: Path, names: list[str]) -> dict:
    """The site's copy of one atlas's examples, in `<site>/data/<aid>/`; returns the manifest's fields.

      examples-<n>-<gx>-<gy>.webp   the sprite, as made above
      examples-<n>-<gx>-<gy>.js     {"names": [source image, ...], "cells": [[x, y, [[name, class,
                                    confidence in percent], ...]], ...]}: the sprite's rows in order,
                                    each cell's examples left to right, `name` an index into names
    """
    import shutil

    from .regions import write_script

    with np.load(made / "examples.npz") as saved:
        arrays = {name: saved[name] for name in saved.files}
    used, image = arrays["used"], arrays["image"]
    predicted, confidence = arrays["predicted"], arrays["confidence"]
    k = 0
    for level in levels:
        rows = arrays[f"rows-{level.size}"]
        k = rows.shape[1]
        for (gx, gy), ids in sprite_groups(level).items():
            stem = f"examples-{level.size}-{gx}-{gy}"
            shutil.copyfile(made / f"sprite-{level.size}-{gx}-{gy}.webp", folder / f"{stem}.webp")
            local: dict[int, int] = {}
            cells = []
            for cell in ids:
                shown = []
                for row in rows[cell][rows[cell] >= 0]:
                    e = int(np.searchsorted(used, row))
                    name = local.setdefault(int(image[e]), len(local))
                    shown.append([name, int(predicted[e]), round(float(confidence[e]) * 100)])
                cells.append([level.cells[cell]["x"], level.cells[cell]["y"], shown])
            order = sorted(local, key=local.get)
            write_script(folder / f"{stem}.js", f"{aid}/{stem}", {"names": [names[i] for i in order], "cells": cells})
    return {"examples": {"per_cell": k, "group": GROUP, "px": PATCH_PX}}
