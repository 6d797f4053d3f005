"""`atlas new`: a site project to start from.

The project holds atlas.toml (every key, commented), content/ (a copy of the packaged
article), an empty templates/ folder for overrides, and a .gitignore for what a build makes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .errors import AtlasError
from .site import resource_dir

# Valid as it stands: the active keys hold their defaults, and uncommenting any `# key = value`
# line gives that key's default too (tests/test_new.py checks both).
CONFIG_TOML = """\
# Settings for `atlas build` and `atlas serve`. Every key is optional: a key left out, or
# commented out, keeps the default shown. Paths are relative to this file's folder.
# Command-line options (atlas build --help) win over this file.

# Bundle of settings for the size of the build: quick (about a minute on a CPU),
# default (minutes on a CPU) or full (the article's settings; wants a GPU).
# The keys below override the preset's values.
# preset = "quick"

# Random seed, 0 to 4294967295: the same seed gives the same site.
seed = 0

# Folder the site is written to; replaced only when a build succeeds.
out = "site"

# Folder of cached stages: a rebuild with unchanged inputs skips every stage.
cache = ".atlas-cache"

[model]
# efficientnet_lite0, torchvision:NAME[:WEIGHTS], timm:NAME or path/to/file.py:factory
# (list a model's layers with `atlas layers --model NAME`).
name = "efficientnet_lite0"
# State-dict file loaded into a path/to/file.py:factory model.
# checkpoint = ""
# Text file of class names, one a line.
# labels = ""

[images]
# Folder of jpg, png or webp images; left out, the embedded photographs are used.
# dir = "images"
# Crops taken from each image; 0: one centre crop per image of a folder.
# crops_per_image = 0
# Random crops taken over the embedded photographs.
# default_crops = 600
# Images read at most; 0: all.
# max_images = 0

[collect]
# Layers to map, one atlas each; empty: the model's default layers.
# layers = []
# Activation vectors sampled per crop, away from the border.
# positions_per_image = 4
# Crops per forward pass.
# batch_size = 16

[layout]
# How activations are placed by similarity: "umap" or "tsne".
# method = "umap"
# UMAP neighbours per point: more gives a more global layout.
# n_neighbors = 20
# UMAP minimum distance between points: less packs similar points tighter.
# min_dist = 0.25
# Percent of outlying points clipped before scaling to the square: at least 0, below 50.
# clip_percentile = 1.0

[grid]
# Cells across, per zoom level, coarse to fine: increasing, without repeats.
# levels = [8, 16, 32]
# Cells with fewer activations are dropped.
# min_count = 2
# Classes listed per cell.
# top_classes = 5

[icons]
# Width and height of each icon, in pixels.
# size_px = 80
# Optimization steps per icon.
# steps = 128
# Starts per icon; the best one is kept.
# tries = 1
# Icons rendered at once; 0: chosen from the device's memory.
# batch_size = 0
# Step size of the optimizer.
# learning_rate = 0.05
# How strongly an icon must point in its cell's direction, not only reach far along it.
# cossim_power = 2.0
# Finer levels start from their parent cells' icons, with fewer steps.
# warm_start = true
# Aim icons at directions whitened by the layer's activation statistics, as Lucid can;
# rare directions count for more, at some cost in fidelity (BENCHMARKS.md).
# whiten = false
# Where icons are rendered: "auto", "cpu" or "cuda".
# device = "auto"
# The network's number format while icons are optimized: "auto" (bfloat16 on a CPU
# with AMX, where it is faster at the same fidelity; float32 elsewhere), "float32"
# or "bfloat16". Fidelity is always read in float32.
# precision = "auto"

[site]
# Shown in every page's header and title.
title = "Activation Atlas"
# Markdown pages with front matter; index.md is the article. A folder named here must
# exist; with the key left out, the packaged pages are used where content/ is absent.
content = "content"
# Files here replace the packaged templates and assets of the same name. As for content,
# a folder named here must exist.
templates = "templates"
"""

TEMPLATES_README = """\
# Template overrides

A file here replaces the packaged template or asset of the same name: for example
`explorer.html`, `viewer.html` or `assets/style.css`. Start from a copy of the packaged
file, found in the package's templates/ folder:

    python -c 'import generator.site as s; print(s.resource_dir("templates"))'

An empty folder changes nothing.
"""

GITIGNORE = """\
site/
.atlas-cache/
"""


def create_project(folder: Path) -> list[Path]:
    """Write a new site project into `folder` (new or empty); returns the files made."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise AtlasError(f"{folder} exists and is not a folder: choose another name")
    if folder.is_dir() and any(folder.iterdir()):
        raise AtlasError(f"{folder} exists and is not empty: choose a new folder name")
    folder.mkdir(parents=True, exist_ok=True)
    made = []

    def write(name: str, text: str) -> None:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        made.append(path)

    write("atlas.toml", CONFIG_TOML)
    shutil.copytree(resource_dir("content"), folder / "content")
    made += sorted(p for p in (folder / "content").rglob("*") if p.is_file())
    write("templates/README.md", TEMPLATES_README)
    write(".gitignore", GITIGNORE)
    return made
