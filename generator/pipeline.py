"""`build()`: the whole pipeline, read top to bottom.

images -> activations -> layout -> grid -> icons -> tiles and site. Each stage writes
its artifact under the cache folder, in a folder named by the key of its inputs, and
is skipped when that folder is complete. The site is written to a temporary folder
beside the output and swapped in only when everything succeeded.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from . import output, store
from .config import Config, describe
from .errors import AtlasError
from .grid import Level, bin_grid, cells_to_arrays, levels_from_arrays, row_cells
from .images import CropLoader, SamplePlan, default_photos, find_images, plan_samples
from .progress import Reporter


@dataclass
class BuildResult:
    out_dir: Path
    manifest: dict
    timings: dict[str, float] = field(default_factory=dict)


def _file_stamps(paths: list[Path]) -> list:
    stamps = []
    for p in paths:
        st = p.stat()
        stamps.append([str(p), st.st_size, st.st_mtime_ns])
    return stamps


def stage_images(cfg: Config, cache: Path, report: Reporter, channels: int = 3) -> tuple[SamplePlan, str]:
    """samples.json: the images found and the crops taken from them, read with the model's `channels`."""
    if cfg.images.dir:
        paths = find_images(cfg.path(cfg.images.dir))
        if not paths:
            raise AtlasError(f"no image files in {cfg.path(cfg.images.dir)}: give a folder of jpg, png or webp images")
        per_image = cfg.images.crops_per_image or 1
    else:
        paths = default_photos()
        per_image = cfg.images.crops_per_image or math.ceil(cfg.images.default_crops / len(paths))
    key = store.artifact_key("images", _file_stamps(paths), per_image, cfg.images.max_images, cfg.seed,
                             *([channels] if channels != 3 else []))  # RGB keeps the keys it had
    folder = cache / "images" / key

    def make(folder: Path) -> dict:
        with report.stage("Reading images", None):
            plan = plan_samples(paths, per_image, cfg.seed, cfg.images.max_images, channels)
        store.write_json(folder / "samples.json", plan.to_json())
        return {"images": len(plan.images), "crops": len(plan.crops)}

    store.ensure(folder, key, make, report.note)
    plan = SamplePlan.from_json(json.loads((folder / "samples.json").read_text()))
    source = cfg.images.dir or "embedded photographs"
    skipped = f"; skipped {plan.skipped} unreadable file(s)" if plan.skipped else ""
    report.note(f"images: {len(plan.images)} from {source}, {len(plan.crops)} crops{skipped}")
    return plan, key


def stage_activations(cfg, model, layers, plan, images_key, cache, report, engine=None,
                      source=None) -> dict[str, Path]:
    """activations.npy, attributions.npy, positions.npy per layer (see collect.py); shards run on `engine`."""
    from .collect import collect_activations

    wanted = {layer: (cache / "activations" / key, key) for layer in layers
              for key in [store.artifact_key("activations", images_key, model.spec, model.weights_id, layer,
                                             cfg.collect.positions_per_image, cfg.seed)]}

    def make(folders: dict[str, Path]) -> dict[str, dict]:
        todo = list(folders)
        with report.stage(f"Activations ({', '.join(todo)})", len(plan.crops)) as advance:
            # A collection killed part way resumes here at its first missing shard (shards.py).
            counts = collect_activations(model, todo, plan, folders, cfg.collect.positions_per_image,
                                         cfg.collect.batch_size, cfg.seed, advance, device=cfg.collect.device,
                                         workers=cfg.collect.workers, shard_size=cfg.collect.shard_size,
                                         engine=engine, source=source)
        return {layer: {"layer": layer, "count": counts[layer], "activations_dtype":
                        str(np.load(folders[layer] / "activations.npy", mmap_mode="r").dtype)} for layer in todo}

    store.ensure_each(wanted, make, report.note)
    return {layer: folder for layer, (folder, _) in wanted.items()}


def stage_layout(cfg, layer: str, act_folder: Path, cache: Path, report, compare: tuple[int, int] | None = None,
                 label: str = "") -> Path:
    """layout.npy (N, 2) float32 in [0, 1]; for a comparison of two classes, by class_atlas.compare_layout."""
    from .class_atlas import compare_layout
    from .layout import fit_layout

    lay = cfg.layout
    key = store.artifact_key("layout", act_folder.name, asdict(lay), cfg.seed, *(["compare", *compare] if compare else []))
    folder = cache / "layout" / key

    def make(folder: Path) -> dict:
        with report.stage(f"Layout {label or layer} ({lay.method})", None):
            vectors = np.load(act_folder / "activations.npy", mmap_mode="r")
            if compare:
                attributions = np.load(act_folder / "attributions.npy", mmap_mode="r")
                xy = compare_layout(vectors, attributions, *compare, lay.method, lay.n_neighbors, lay.min_dist,
                                    cfg.seed, lay.clip_percentile)
            else:
                xy = fit_layout(vectors, lay.method, lay.n_neighbors, lay.min_dist, cfg.seed, lay.clip_percentile,
                                fit_sample=lay.fit_sample)
        store.save_array(folder / "layout.npy", xy)
        return {"layer": layer}

    store.ensure(folder, key, make, report.note)
    return folder


def _grid_key(cfg, act_folder: Path, layout_folder: Path) -> str:
    return store.artifact_key("grid", layout_folder.name, act_folder.name, asdict(cfg.grid))


def stage_grid(cfg, layer: str, act_folder: Path, layout_folder: Path, cache: Path, report) -> list[Level]:
    """cells.npz, directions.npy and scores.npy: every level's cells, mean activations and class scores."""
    g = cfg.grid
    key = _grid_key(cfg, act_folder, layout_folder)
    folder = cache / "grid" / key

    def make(folder: Path) -> dict:
        xy = np.load(layout_folder / "layout.npy")
        vectors = np.load(act_folder / "activations.npy", mmap_mode="r")
        attributions = np.load(act_folder / "attributions.npy", mmap_mode="r")
        levels = bin_grid(xy, vectors, attributions, g.levels, g.min_count, g.top_classes)
        if not any(lv.cells for lv in levels):
            raise AtlasError(f"layer {layer}: no grid cell holds {g.min_count} activations; lower grid.min_count "
                             "or give more images")
        store.save_arrays(folder / "cells.npz", cells_to_arrays(levels))
        store.save_array(folder / "directions.npy", np.concatenate([lv.directions for lv in levels]))
        store.save_array(folder / "scores.npy", np.concatenate([lv.scores for lv in levels]))
        return {"layer": layer}

    store.ensure(folder, key, make, report.note)
    with np.load(folder / "cells.npz") as cells:
        return levels_from_arrays(cells, np.load(folder / "directions.npy"), np.load(folder / "scores.npy"))


def stage_examples(cfg, model, layer: str, plan: SamplePlan, act_folder: Path, layout_folder: Path,
                   levels: list[Level], cache: Path, report, label: str = "") -> Path:
    """examples.npz and the sprites of each cell's real examples (examples.py)."""
    from . import examples

    k = cfg.site.examples_per_cell
    key = store.artifact_key("examples", _grid_key(cfg, act_folder, layout_folder), k, examples.PATCH_PX,
                             examples.GROUP, examples.FIELD_MASS)
    folder = cache / "examples" / key

    def make(folder: Path) -> dict:
        with report.stage(f"Examples {label or layer}", None):
            xy = np.load(layout_folder / "layout.npy")
            return examples.make_examples(folder, model, layer, plan, act_folder, xy, levels, k)

    store.ensure(folder, key, make, report.note)
    return folder


def stage_trust(cfg, layer: str, act_folder: Path, layout_folder: Path, levels: list[Level], cache: Path,
                report, label: str = "") -> dict[str, np.ndarray]:
    """trust.npz: how far each cell's activations keep their neighbours on the map (trust.py)."""
    from . import trust

    key = store.artifact_key("trust", _grid_key(cfg, act_folder, layout_folder), cfg.seed, trust.K, trust.PER_CELL,
                             trust.MAX_SAMPLE, trust.TRUST_ROWS)
    folder = cache / "trust" / key

    def make(folder: Path) -> dict:
        with report.stage(f"Layout trust {label or layer}", None):
            vectors = np.load(act_folder / "activations.npy", mmap_mode="r")
            arrays = trust.measure(vectors, np.load(layout_folder / "layout.npy"), levels, cfg.seed)
        store.save_arrays(folder / "trust.npz", arrays)
        return {"layer": layer}

    store.ensure(folder, key, make, report.note)
    with np.load(folder / "trust.npz") as saved:
        return {name: saved[name] for name in saved.files}


def stage_names(cfg, model, layer: str, act_folder: Path, layout_folder: Path, levels: list[Level], cache: Path,
                report, label: str = "") -> dict[str, list]:
    """names.json: the names of each level's regions, drawn on the map (naming.py)."""
    from . import naming

    key = store.artifact_key("names", _grid_key(cfg, act_folder, layout_folder), model.class_names,
                             model.wordnet_ids, naming.CELLS_PER_REGION, naming.MIN_CELLS, naming.MIN_SCORE,
                             naming.MAX_SPAN, naming.MIN_DEPTH, naming.FEATURES)
    folder = cache / "names" / key

    def make(folder: Path) -> dict:
        with report.stage(f"Region names {label or layer}", None):
            names = naming.name_levels(levels, naming.Namer(model.class_names, model.wordnet_ids))
        store.write_json(folder / "names.json", names)
        return {"layer": layer}

    store.ensure(folder, key, make, report.note)
    return json.loads((folder / "names.json").read_text())


AMPLITUDE_CROPS = 256  # crops averaged for MACO's amplitude spectrum: the mean settles well before
# icons.method = "auto": MACO keeps natural images' spectrum, so it is taken unless it costs more than this
# much mean fidelity against Fourier on the probe (BENCHMARKS.md: about 0.03 at blocks.4, 0.05 at blocks.5).
AUTO_TOLERANCE = 0.04
AUTO_PROBE = 8  # cells of the first level rendered both ways


def stage_amplitude(cfg, model, plan, images_key: str, cache: Path, report) -> np.ndarray:
    """amplitude.npy (C, S, S // 2 + 1) float32: the mean amplitude spectrum of up to AMPLITUDE_CROPS of the
    build's crops at the icon's size S, in decorrelated colour: MACO's magnitude (icons/param.py)."""
    from .icons.param import natural_amplitude

    size = cfg.icons.size_px
    key = store.artifact_key("amplitude", images_key, model.input_size, size, AMPLITUDE_CROPS)
    folder = cache / "amplitude" / key

    def make(folder: Path) -> dict:
        count = min(AMPLITUDE_CROPS, len(plan.crops))
        crops = np.unique(np.linspace(0, len(plan.crops) - 1, count).round().astype(int)).tolist()
        loader, total = CropLoader(plan, model.input_size), 0
        with report.stage("Amplitude spectrum of the images", None):
            for first in range(0, len(crops), 32):
                part = crops[first:first + 32]
                total = total + natural_amplitude(loader.load(part), size).numpy().astype(np.float64) * len(part)
        np.save(folder / "amplitude.npy", (total / len(crops)).astype(np.float32))
        return {"crops": len(crops)}

    store.ensure(folder, key, make, report.note)
    return np.load(folder / "amplitude.npy")


def stage_icons(cfg, model, layer: str, levels: list[Level], cache: Path, report, act_folder: Path | None = None,
                engine=None, source=None, label: str = "", amplitude: np.ndarray | None = None):
    """Icons per level, rendered in batches cached under icons/<layer>/ (see icons/render.py), and the
    parameterization that made them.

    With `icons.warm_start`, each level after the first starts every icon from the icon
    of its parent cell in the level before, and needs fewer steps for the same fidelity.
    With `icons.whiten`, the objective aims at directions whitened by the second moments
    of the layer's activations in `act_folder`. Batches not in the cache run on `engine`,
    which makes the model again from `source` (engine.ModelSource) where it runs elsewhere.
    `amplitude` is stage_amplitude's, for `icons.method = "maco"` or "auto" (choose_method picks per layer).
    """
    from .grid import parent_cells
    from .icons import IconSpec, RenderedIcons, render_icons
    from .icons.objectives import whitening

    i = cfg.icons
    total = sum(len(lv.cells) for lv in levels)
    whiten = whitening(np.load(act_folder / "activations.npy", mmap_mode="r")) if i.whiten and act_folder else None
    spec = IconSpec.from_config(i)
    if i.method == "auto":
        spec = spec.with_(param=choose_method(cfg, model, layer, levels[0], cache, report, whiten, engine, source,
                                              label, amplitude))
    rendered = []
    with store.writing(cache / "icons" / layer), report.stage(f"Icons {label or layer}", total) as advance:
        for k, level in enumerate(levels):
            start = has_start = None
            if i.warm_start and k > 0 and len(rendered[-1].icons):
                parents = parent_cells(level, levels[k - 1])
                has_start = parents >= 0
                start = rendered[-1].icons[np.maximum(parents, 0)]
            rendered.append(render_icons(model, layer, level.directions, spec, cfg.seed, i.device,
                                         cache / "icons" / layer, advance, start, has_start, whiten, report.note,
                                         engine, source, amplitude))
    stats = RenderedIcons.joined(rendered).stats()
    report.note(f"icons {label or layer}: fidelity mean {stats['fidelity_mean']:.2f}, median {stats['fidelity_median']:.2f}, "
                f"min {stats['fidelity_min']:.2f}")
    return rendered, spec.param


def choose_method(cfg, model, layer: str, level: Level, cache: Path, report, whiten, engine, source, label: str,
                  amplitude: np.ndarray) -> str:
    """"maco" or "fourier" for `layer`: both render AUTO_PROBE cells of `level` spread over it, with the build's
    settings; MACO is taken unless its mean fidelity falls more than AUTO_TOLERANCE below Fourier's.

    The probe's icons are cached like any others, so a rebuild decides the same without rendering.
    """
    from .icons import IconSpec, render_icons

    rows = np.unique(np.linspace(0, len(level.cells) - 1, min(AUTO_PROBE, len(level.cells))).round().astype(int))
    fid = {}
    with report.stage(f"Choosing icons' method {label or layer}", 2 * len(rows)) as advance:
        for method in ("fourier", "maco"):
            spec = IconSpec.from_config(cfg.icons).with_(param=method)
            fid[method] = float(render_icons(model, layer, level.directions[rows], spec, cfg.seed, cfg.icons.device,
                                             cache / "icons" / layer, advance, whiten=whiten, note=report.note,
                                             engine=engine, source=source, amplitude=amplitude).fidelity.mean())
    chosen = "maco" if fid["maco"] >= fid["fourier"] - AUTO_TOLERANCE else "fourier"
    report.note(f"icons {label or layer}: by {chosen} (probe of {len(rows)} cells: fidelity {fid['maco']:.2f} "
                f"by maco, {fid['fourier']:.2f} by fourier)")
    return chosen


def stage_classes(cfg, view, layer: str, act_folder: Path, class_names: list[str], cache: Path, report) -> Path:
    """A class atlas's or comparison's activations: activations.npy, attributions.npy and positions.npy
    of the rows chosen (class_atlas.py) from the layer's, and rows.npy, their rows there."""
    from . import class_atlas

    key = store.artifact_key("classes", act_folder.name, list(view.classes), cfg.classes.rows)
    folder = cache / "classes" / key
    label = " vs ".join(class_names[k] for k in view.classes)

    def make(folder: Path) -> dict:
        with report.stage(f"Activations of {label}", None):
            attributions = np.load(act_folder / "attributions.npy", mmap_mode="r")
            won_by = class_atlas.winners(attributions)
            limit = class_atlas.row_limit(cfg.classes.rows, len(won_by))
            rows = (class_atlas.class_rows(attributions, won_by, view.classes[0], limit) if view.kind == "class"
                    else class_atlas.pair_rows(attributions, won_by, *view.classes, limit))
            if len(rows) < 4:
                raise AtlasError(f"layer {layer}: only {len(rows)} activations are attributed to {label}; "
                                 "give more images of it, or name other classes in classes.names")
            for name in ("activations", "attributions", "positions"):
                store.save_array(folder / f"{name}.npy", np.asarray(np.load(act_folder / f"{name}.npy",
                                                                             mmap_mode="r")[rows]))
            store.save_array(folder / "rows.npy", rows.astype(np.int64))
        return {"layer": layer, "count": int(len(rows)), "won": int(np.isin(won_by[rows], view.classes).sum())}

    store.ensure(folder, key, make, report.note)
    return folder


def stage_links(cfg, model, a: tuple, b: tuple, cache: Path, report) -> dict[int, list]:
    """links.json: for each grid level of both layers up to links.MAX_SIZE, each cell of layer `a` and the
    cells of layer `b` its activations' positions fall in (links.py). `a` and `b` are each
    (layer, activations folder, layout folder, levels)."""
    from . import links

    (layer_a, act_a, layout_a, levels_a), (layer_b, act_b, layout_b, levels_b) = a, b
    key = store.artifact_key("links", _grid_key(cfg, act_a, layout_a), _grid_key(cfg, act_b, layout_b),
                             links.MAX_GAP, links.MAX_SIZE, links.TOP)
    folder = cache / "links" / key
    by_size_b = {lv.size: lv for lv in levels_b}
    shared = [lv for lv in levels_a if lv.size in by_size_b and lv.size <= links.MAX_SIZE]

    def make(folder: Path) -> dict:
        with report.stage(f"Links {layer_a} to {layer_b}", None):
            shapes = model.layer_shapes()
            ties = links.tie_rows(np.load(act_a / "positions.npy"), shapes[layer_a], np.load(act_b / "positions.npy"),
                                  shapes[layer_b])
            xy_a, xy_b = np.load(layout_a / "layout.npy"), np.load(layout_b / "layout.npy")
            made = {}
            for level in shared:
                other = by_size_b[level.size]
                cells_b = row_cells(xy_b, other)
                made[str(level.size)] = links.cell_links(row_cells(xy_a, level), np.where(ties >= 0, cells_b[ties], -1),
                                                         len(level.cells), len(other.cells))
        store.write_json(folder / "links.json", made)
        return {"layers": [layer_a, layer_b], "tied": int((ties >= 0).sum()), "rows": int(len(ties))}

    store.ensure(folder, key, make, report.note)
    return {int(size): cells for size, cells in json.loads((folder / "links.json").read_text()).items()}


@dataclass
class Mapped:
    """One atlas's stages after collection, as the site's writing needs them."""

    layer: str
    count: int
    levels: list[Level]
    rendered: list
    method: str  # the icons' parameterization, decided per atlas where icons.method is "auto"
    examples: Path | None
    measured: dict[str, np.ndarray]
    names: dict[str, list]
    act_folder: Path
    layout_folder: Path

    def linkable(self) -> tuple:
        """What stage_links reads of this atlas."""
        return self.layer, self.act_folder, self.layout_folder, self.levels


def image_names(plan: SamplePlan, folder: Path | None) -> list[str]:
    """Each image as a published page names it: its path inside the images folder, or its file name."""
    names = []
    for path in map(Path, plan.images):
        try:
            names.append(path.resolve().relative_to(folder.resolve()).as_posix() if folder else path.name)
        except ValueError:
            names.append(path.name)
    return names


def _shown_spec(spec: str) -> str:
    """A model spec as a published page shows it: a model file by its name, not by a path of this machine."""
    path, sep, factory = spec.rpartition(":")
    if sep and path.endswith(".py"):
        return f"{Path(path).name}:{factory}"
    return spec


# Settings that name a file or folder of the build machine.
PATH_SETTINGS = [("model", "checkpoint"), ("model", "labels"), ("images", "dir"), ("site", "content"),
                 ("site", "templates")]


def published_config(cfg: Config) -> dict:
    """The config as data/build.json shows it: no path of the build machine, files and folders by name."""
    data = describe(cfg)
    # Where it was built, and on what: neither changes a published byte.
    for key in ("out", "cache", "engine", "ray_address"):
        data.pop(key, None)
    data["model"]["name"] = _shown_spec(cfg.model.name)
    for section, key in PATH_SETTINGS:
        value = data.get(section, {}).get(key)
        if value:
            data[section][key] = Path(value).name
    return data


def build(cfg: Config, report: Reporter | None = None, engine=None) -> BuildResult:
    """Run every stage for `cfg` and write the site to `cfg.out`.

    The icons run on `engine` (engine.py); by default on the one `cfg.engine` names, opened
    for this build and closed after it.
    """
    import torch

    from .engine import ModelSource, open_engine
    from .models import check_layers, load_model

    if engine is None:
        # Opened first: a cluster that cannot be reached fails before any work.
        with open_engine(cfg.engine, cfg.ray_address) as engine:
            return build(cfg, report, engine)
    from .site import render_site
    from .tiles import write_atlas, write_links, write_manifest

    report = report or Reporter()
    torch.manual_seed(cfg.seed)
    out = cfg.path(cfg.out)
    cache = cfg.path(cfg.cache)
    output.check_writable(out if out.is_dir() and os.path.ismount(out) else out.parent, "--out")
    output.check_writable(cache, "--cache")
    output.recover(out, report.note)
    output.check_out_dir(out)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = timings.get(name, 0.0) + now - clock
        clock = now

    checkpoint = cfg.model.checkpoint and str(cfg.path(cfg.model.checkpoint))
    labels = cfg.model.labels and str(cfg.path(cfg.model.labels))
    model = load_model(cfg.model.name, checkpoint, labels)
    source = ModelSource.of(model, checkpoint, labels)  # how an engine's workers make it again
    layers = list(cfg.collect.layers or model.default_layers)
    check_layers(model, layers)  # fail now, naming the closest layers, not after minutes of work
    class_layer = cfg.classes.layer or layers[-1]
    if class_layer not in layers:
        raise AtlasError(f"classes.layer is {class_layer!r}, which is not mapped: name one of the layers "
                         f"({', '.join(layers)}) or add it to collect.layers")
    if cfg.classes.names or cfg.classes.compare:
        from .class_atlas import find_class

        for key, wanted in [("classes.names", n) for n in cfg.classes.names] + \
                           [("classes.compare", n) for pair in cfg.classes.compare for n in pair]:
            find_class(model.class_names, wanted, key)  # a misspelt class fails before any work too
    i = cfg.icons
    from .icons import IconSpec
    from .icons.render import pick_device, pick_precision

    warm = f" ({IconSpec.from_config(i).warm_steps()} when warm-started)" if i.warm_start else ""
    device = pick_device(i.device)
    report.note(f"preset {cfg.preset}: icons by {i.method}, {i.size_px} px, {i.steps} steps{warm}, "
                f"{i.tries} tr{'y' if i.tries == 1 else 'ies'}, {pick_precision(i.precision, device)} on {device.type}; "
                f"layers {', '.join(layers)}; levels {', '.join(map(str, cfg.grid.levels))}")
    if engine.name != "local":
        report.note(f"engine: {engine.describe()}")
    lap("model")
    plan, images_key = stage_images(cfg, cache, report, model.channels)
    lap("images")
    act_folders = stage_activations(cfg, model, layers, plan, images_key, cache, report, engine, source)
    lap("activations")
    amplitude = stage_amplitude(cfg, model, plan, images_key, cache, report) \
        if cfg.icons.method in ("maco", "auto") else None

    def map_atlas(cfg, layer: str, act_folder: Path, compare=None, label: str = "") -> Mapped:
        """Layout, grid, icons, trust, names and examples of one atlas's activations in `act_folder`."""
        layout_folder = stage_layout(cfg, layer, act_folder, cache, report, compare, label)
        lap("layout")
        levels = stage_grid(cfg, layer, act_folder, layout_folder, cache, report)
        lap("grid")
        # Icons aim at directions whitened by the whole layer's activations, as the layer's own atlas does.
        rendered, method = stage_icons(cfg, model, layer, levels, cache, report, act_folders[layer], engine, source,
                                       label, amplitude)
        lap("icons")
        measured = stage_trust(cfg, layer, act_folder, layout_folder, levels, cache, report, label)
        lap("trust")
        names = stage_names(cfg, model, layer, act_folder, layout_folder, levels, cache, report, label)
        lap("names")
        examples = None
        if cfg.site.examples:
            examples = stage_examples(cfg, model, layer, plan, act_folder, layout_folder, levels, cache, report,
                                      label)
            lap("examples")
        return Mapped(layer, store.read_meta(act_folder)["count"], levels, rendered, method, examples, measured,
                      names, act_folder, layout_folder)

    mapped = [map_atlas(cfg, layer, act_folders[layer]) for layer in layers]
    # Every ordered pair of layers: a reader may hover a cell in either one.
    tied = {(a.layer, b.layer): stage_links(cfg, model, a.linkable(), b.linkable(), cache, report)
            for a in mapped for b in mapped if a.layer != b.layer}
    if tied:
        lap("links")
    class_mapped = []  # (view, activations its classes win, its Mapped)
    if cfg.classes.names or cfg.classes.auto or cfg.classes.compare:
        from .class_atlas import chosen_views, levels_for
        from .tiles import leading_classes

        leading = leading_classes(next(m.levels for m in mapped if m.layer == class_layer), count=20)
        for view in chosen_views(cfg.classes.names, cfg.classes.auto, cfg.classes.compare, model.class_names,
                                 leading):
            folder = stage_classes(cfg, view, class_layer, act_folders[class_layer], model.class_names, cache,
                                   report)
            lap("classes")
            meta = store.read_meta(folder)
            label = " vs ".join(model.class_names[k] for k in view.classes)
            report.note(f"{'class atlas' if view.kind == 'class' else 'comparison'} {label}, layer {class_layer}: "
                        f"{meta['count']} activations, {meta['won']} won by {'it' if view.kind == 'class' else 'them'}")
            view_cfg = replace(cfg, grid=replace(cfg.grid, levels=levels_for(cfg.grid.levels, meta["count"])))
            class_mapped.append((view, meta["won"], map_atlas(view_cfg, class_layer, folder,
                                                              view.classes if view.kind == "compare" else None,
                                                              label)))

    tmp = output.building_dir(out)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        data_dir = tmp / "data"
        with store.writing(tmp), report.stage("Tiles and site", None):
            data_dir.mkdir(parents=True)
            shown = _shown_spec(model.spec)
            shown_names = image_names(plan, cfg.path(cfg.images.dir) if cfg.images.dir else None)
            shapes = model.layer_shapes()

            def write(m: Mapped, **view) -> dict:
                return write_atlas(data_dir, m.layer, shown, shapes[m.layer], m.count, m.levels, m.rendered,
                                   m.examples and (m.examples, shown_names), m.measured, m.names, method=m.method,
                                   **view)

            atlases = [write(m) for m in mapped]
            by_layer = {m.layer: (atlas, m.levels) for atlas, m in zip(atlases, mapped)}
            for (a, b), made in tied.items():
                write_links(data_dir, *by_layer[a], by_layer[b][0]["id"], by_layer[b][1], made)
            class_atlases = [write(m, aid=view.atlas_id(model.class_names),
                                   about=view.about(model.class_names, m.layer, m.count, won))
                             for view, won, m in class_mapped]
            manifest = write_manifest(data_dir, atlases, model.class_names, cfg.site.title, class_atlases)
            lap("tiles")
            # No timing and no path of this machine: two same-seed builds publish the same bytes.
            build_info = {"config": published_config(cfg), "images": len(plan.images), "crops": len(plan.crops),
                          "skipped": plan.skipped, "image_source": Path(cfg.images.dir).name if cfg.images.dir else "embedded photographs",
                          "model": shown, "layers": layers}
            content = cfg.path(cfg.site.content)
            templates = cfg.path(cfg.site.templates)
            render_site(tmp, manifest, build_info, content if content.is_dir() else None,
                        templates if templates.is_dir() else None)
            (data_dir / "build.json").write_text(json.dumps(build_info, indent=1, sort_keys=True, allow_nan=False))
            lap("site")
            output.swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return BuildResult(out, manifest, timings)
