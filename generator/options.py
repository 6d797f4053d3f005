"""Every setting of `atlas build`, declared once: key, default, what it allows, and what it means.

The typed config (config.py), its validation, the atlas.toml that `atlas new` writes
(scaffold.py) and the settings table in the README are all derived from `OPTIONS`, as
MkDocs derives its own from `config/defaults.py`. A new setting is one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

SECTIONS = ("", "model", "images", "collect", "layout", "grid", "icons", "site", "classes")  # "": top-level keys


@dataclass(frozen=True)
class Range:
    """The numbers a key allows: from `low` to `high` (None: no upper bound), each end open or closed."""

    low: float
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    text: str = ""  # the message, where the derived one would not say what a value means

    def __contains__(self, value: float) -> bool:
        low_ok = value > self.low if self.low_open else value >= self.low
        high_ok = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return low_ok and high_ok

    def describe(self) -> str:
        if self.text:
            return self.text
        low, high = number_text(self.low), number_text(self.high)
        if high is None:
            return f"must be {'>' if self.low_open else '>='} {low}"
        if self.low_open or self.high_open:
            return (f"must be {'above' if self.low_open else 'at least'} {low} "
                    f"and {'below' if self.high_open else 'at most'} {high}")
        return f"must be {low} to {high}"


def number_text(x: float | None) -> str | None:
    if x is None:
        return None
    return str(int(x)) if float(x).is_integer() else repr(x)


@dataclass(frozen=True)
class Option:
    """One setting. Its type is its default's; `choices`, `range` or `check` say which values it allows.

    `check(value)` returns what is wrong with a value, or "" when it is fine.
    `example` is shown commented out in atlas.toml where the default is empty and would
    not show what the value looks like; `active` writes the key uncommented there.
    """

    key: str  # dotted: "icons.steps"; top-level keys have no dot
    default: Any
    help: str
    choices: tuple = ()
    range: Range | None = None
    check: Callable[[Any], str] | None = None
    example: Any = None
    active: bool = False

    @property
    def section(self) -> str:
        return self.key.rpartition(".")[0]

    @property
    def name(self) -> str:
        return self.key.rpartition(".")[2]

    def problem(self, value: Any) -> str:
        """What is wrong with `value` for this key, or ""."""
        if self.choices and value not in self.choices:
            return "must be one of " + ", ".join(map(str, self.choices))
        if self.range is not None and value not in self.range:
            return self.range.describe()
        return self.check(value) if self.check else ""

    def allowed(self) -> str:
        """The values allowed, as the README's table says them."""
        if self.choices:
            return ", ".join(f"`{c}`" for c in self.choices)
        if self.range is not None:
            return self.range.describe().removeprefix("must be ")
        return {bool: "true or false", int: "a whole number", float: "a number", str: "text",
                tuple: "a list"}[type(self.default)]


GRID_SIZE = Range(1, 512)


def _layer_names(layers: tuple) -> str:
    ok = all(isinstance(x, str) and x for x in layers) and len(set(layers)) == len(layers)
    return "" if ok else "must be layer names, each once"


def _grid_levels(levels: tuple) -> str:
    if not (levels and all(isinstance(n, int) and not isinstance(n, bool) and n in GRID_SIZE for n in levels)):
        return (f"must be a list of grid sizes from {number_text(GRID_SIZE.low)} to "
                f"{number_text(GRID_SIZE.high)}")
    # Each level's files are named by its size: a repeat would overwrite another level's.
    if any(a >= b for a, b in zip(levels, levels[1:])):
        return "must be increasing, without repeats, e.g. [8, 16, 32]"
    return ""


def _class_names(names: tuple) -> str:
    ok = all(isinstance(x, str) and x.strip() for x in names) and len({x.lower() for x in names}) == len(names)
    return "" if ok else "must be class names, each once"


def _class_pairs(pairs: tuple) -> str:
    ok = all(isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(x, str) and x.strip() for x in p)
             and p[0].lower() != p[1].lower() for p in pairs)
    return "" if ok else 'must be pairs of two different class names, e.g. [["fireboat", "streetcar"]]'


# PRESET_NAMES is config.PRESETS's keys; spelled here so that this table needs nothing else.
PRESET_NAMES = ("quick", "default", "full")

OPTIONS: tuple[Option, ...] = (
    Option("preset", "default", "Bundle of settings for the size of the build: quick (a minute on a 2-core "
           "AMD EPYC), default (minutes on a CPU) or full (the article's settings; wants a GPU). Other keys "
           "override the preset's values.", choices=PRESET_NAMES, example="quick"),
    Option("seed", 0, "Random seed: the same seed gives the same site, byte for byte on the CPU.",
           range=Range(0, 2**32 - 1), active=True),  # numpy and torch take seeds below 2**32
    Option("out", "site", "Folder the site is written to; replaced only when a build succeeds.", active=True),
    Option("cache", ".atlas-cache", "Folder of cached stages: a rebuild with unchanged inputs skips every stage.",
           active=True),
    Option("engine", "local", "Where collection shards and icon batches run: local (this process) or ray (a "
           'Ray cluster; pip install "activation-atlas[ray]"). Same seed, same site on either.',
           choices=("local", "ray")),
    Option("ray_address", "", "With engine ray: auto, or the head node's host:port, to join a running cluster; "
           "empty: start Ray on this machine.", example="auto"),

    Option("model.name", "efficientnet_lite0", "efficientnet_lite0, torchvision:NAME[:WEIGHTS], timm:NAME or "
           "path/to/file.py:factory (list a model's layers with `atlas layers --model NAME`).", active=True),
    Option("model.checkpoint", "", "State-dict file loaded into a path/to/file.py:factory model."),
    Option("model.labels", "", "Text file of class names, one a line."),

    Option("images.dir", "", "Folder of jpg, png, webp, bmp, gif or tiff images, or .npy arrays (a "
           "spectrogram, say), read recursively; empty: the embedded photographs.", example="images"),
    Option("images.crops_per_image", 0, "Crops taken from each image; 0: one centre crop per image of a "
           "folder, `default_crops` over the embedded photographs.", range=Range(0)),
    Option("images.default_crops", 600, "Random crops taken over the embedded photographs.", range=Range(1)),
    Option("images.max_images", 0, "Images read at most; 0: all.", range=Range(0)),

    Option("collect.layers", (), "Layers to map, one atlas each; empty: the model's default layers.",
           check=_layer_names),
    Option("collect.positions_per_image", 4, "Activation vectors sampled per crop, away from the border "
           "(the article takes 1).", range=Range(1, 64)),
    Option("collect.batch_size", 16, "Crops per forward pass.", range=Range(1)),
    Option("collect.device", "auto", "Where activations are collected: auto is CUDA when torch sees a GPU.",
           choices=("auto", "cpu", "cuda")),
    Option("collect.workers", -1, "Processes decoding images beside the collection; 0: none, decoded in the "
           "build's own; -1: none on a CPU, where they would take its cores, and one per core but one (at "
           "most 4) beside a GPU.",
           range=Range(-1, text="must be -1 (chosen from the cores), 0 or more")),
    Option("collect.shard_size", 1024, "Crops written to the cache at a time: a build stopped part way resumes "
           "at its first missing shard.", range=Range(1)),

    Option("layout.method", "umap", "How activations are placed by similarity.", choices=("umap", "tsne")),
    Option("layout.n_neighbors", 20, "UMAP neighbours per point: more gives a more global layout.",
           range=Range(2, 200)),
    # A few thousand points: tighter settings leave most grid cells empty.
    Option("layout.min_dist", 0.25, "UMAP minimum distance between points: less packs similar points tighter.",
           range=Range(0, 1)),
    Option("layout.clip_percentile", 1.0, "Percent of outlying points clipped on each axis before scaling "
           "the layout to the square.", range=Range(0, 50, high_open=True)),  # 50 would clip every point
    Option("layout.fit_sample", 50_000, "Above this many activations, the layout is fitted on a seeded sample "
           "of this many and the rest are placed among their nearest fitted neighbours.", range=Range(4)),

    Option("grid.levels", (8, 16, 32), "Cells across, per zoom level, coarse to fine: increasing, without "
           "repeats.", check=_grid_levels),
    Option("grid.min_count", 2, "Cells with fewer activations are dropped.", range=Range(1)),
    Option("grid.top_classes", 5, "Classes listed per cell.", range=Range(1, 20)),

    Option("icons.size_px", 80, "Width and height of each icon, in pixels.", range=Range(16, 512)),
    Option("icons.method", "auto", "How an icon's image is represented: fourier, Lucid's Fourier basis in "
           "decorrelated colour; maco, the amplitude spectrum of the build's own images with only the phase "
           "optimized (Fel et al. 2023); auto, per layer, maco unless a probe of 8 cells finds it 0.04 below "
           "fourier in mean fidelity (BENCHMARKS.md compares them).", choices=("auto", "fourier", "maco")),
    Option("icons.steps", 128, "Optimization steps per icon.", range=Range(1, 10000)),
    Option("icons.tries", 1, "Starts per icon; the best one is kept.", range=Range(1, 16)),
    Option("icons.batch_size", 0, "Icons rendered at once; 0: chosen from the device's memory.",
           range=Range(0, text="must be >= 1, or 0 to choose from the device's memory")),
    Option("icons.learning_rate", 0.05, "Step size of the optimizer.", range=Range(0, 1, low_open=True)),
    Option("icons.cossim_power", 2.0, "How strongly an icon must point in its cell's direction, not only "
           "reach far along it.", range=Range(0, 8)),
    Option("icons.warm_start", True, "Finer levels start from their parent cells' icons, with 3/4 of the "
           "steps."),
    Option("icons.whiten", False, "Aim icons at directions whitened by the layer's activation statistics, as "
           "Lucid can; rare directions count for more, at some cost in fidelity (BENCHMARKS.md)."),
    Option("icons.mask", False, "Keep each icon's importance mask, MACO's: where the objective's gradient fell "
           "over the optimization. The viewer fades what mattered least, with a Mask toggle to show icons "
           "whole."),
    Option("icons.device", "auto", "Where icons are rendered.", choices=("auto", "cpu", "cuda")),
    Option("icons.precision", "auto", "The network's number format while icons are optimized: auto is "
           "bfloat16 on a CPU with AMX, where it is faster at the same fidelity, and float32 elsewhere. "
           "Fidelity is always read in float32.", choices=("auto", "float32", "bfloat16")),

    Option("site.title", "Activation Atlas", "Shown in every page's header and title.", active=True),
    Option("site.content", "content", "Markdown pages with front matter; index.md is the article. A folder "
           "named here must exist; left out, the packaged pages are used where content/ is absent.",
           active=True),
    Option("site.examples", True, "Publish each cell's real examples: the dataset patches nearest its mean, "
           "shown when a cell is inspected. false leaves them out, for images that may not be published."),
    Option("site.examples_per_cell", 8, "Examples kept per cell.", range=Range(1, 32)),
    Option("site.templates", "templates", "Files here replace the packaged templates and assets of the same "
           "name; as for content, a folder named here must exist.", active=True),

    Option("classes.names", (), "Classes given a class activation atlas of their own: the activations most "
           "attributed to the class, those it wins first (the article's filter), with icons, examples and names; "
           "empty: the `auto` classes that lead the most cells of the layer's atlas.", check=_class_names,
           example=["fireboat", "streetcar"]),
    Option("classes.auto", 2, "With `names` empty, this many class atlases; 0: none.", range=Range(0, 20)),
    Option("classes.compare", (), "Pairs of classes laid out against each other: the activations of either, "
           "with the attribution difference across and their similarity down; empty: the first two class "
           "atlases' classes.", check=_class_pairs, example=[["fireboat", "streetcar"]]),
    Option("classes.layer", "", "Layer of the class atlases and comparisons; empty: the last of the layers "
           "mapped.", example="blocks.5"),
    Option("classes.rows", 2000, "Activations in a class atlas or comparison at most, and never more than a "
           "quarter of the layer's.", range=Range(16, 50_000)),
)

BY_KEY = {o.key: o for o in OPTIONS}


def section_options(section: str) -> list[Option]:
    return [o for o in OPTIONS if o.section == section]


def toml_value(value: Any) -> str:
    """`value` as TOML writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


def _wrapped(text: str, width: int = 96) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width - 2:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return lines + [line] if line else lines


def scaffold_toml(header: str) -> str:
    """atlas.toml as `atlas new` writes it: every key with its help; defaults active or commented out.

    Valid as it stands, and uncommenting any `# key = value` line gives that key's default,
    except where an `example` is shown instead (tests/test_new.py checks both).
    """
    out = [header.rstrip("\n")]
    for section in SECTIONS:
        out.append("")
        if section:
            out.append(f"[{section}]")
        for k, o in enumerate(section_options(section)):
            if k:
                out.append("")
            out += [f"# {line}" for line in _wrapped(o.help)]
            if o.choices:
                out.append("# One of: " + ", ".join(toml_value(c) for c in o.choices) + ".")
            elif o.range is not None:
                out.append(f"# {o.range.describe().capitalize()}.")
            shown = o.example if o.example is not None else o.default
            out.append(f"{'' if o.active else '# '}{o.name} = {toml_value(shown)}")
    return "\n".join(out) + "\n"


def markdown_table() -> str:
    """The README's table of settings."""
    rows = ["| key | default | allowed | meaning |", "|---|---|---|---|"]
    for o in OPTIONS:
        section = f"[{o.section}] " if o.section else ""
        help_text = o.help.replace("|", "\\|")
        rows.append(f"| `{section}{o.name}` | `{toml_value(o.default)}` | {o.allowed()} | {help_text} |")
    return "\n".join(rows) + "\n"
