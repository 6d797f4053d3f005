"""Typed build configuration: defaults, presets, the TOML file and command-line values.

Precedence, lowest first: built-in defaults, the preset, `atlas.toml`, command-line
options. Every invalid value is reported at once, with its key path.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .errors import AtlasError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, before it joined the standard library
    import tomli as tomllib

DEFAULT_MODEL = "efficientnet_lite0"


@dataclass(frozen=True)
class ModelConfig:
    name: str = DEFAULT_MODEL
    checkpoint: str = ""  # optional state-dict file for a user's own model
    labels: str = ""  # optional text file, one class name a line


@dataclass(frozen=True)
class ImagesConfig:
    dir: str = ""  # empty: the embedded default photographs
    crops_per_image: int = 0  # 0: 1 for a user's folder, `default_crops` for the embedded set
    default_crops: int = 600  # random crops over the embedded photographs
    max_images: int = 0  # 0: no limit


@dataclass(frozen=True)
class CollectConfig:
    layers: tuple[str, ...] = ()  # empty: the model's default layers
    positions_per_image: int = 4
    batch_size: int = 16


@dataclass(frozen=True)
class LayoutConfig:
    method: str = "umap"
    n_neighbors: int = 20
    min_dist: float = 0.25  # few thousand points: tighter settings leave most grid cells empty
    clip_percentile: float = 1.0


@dataclass(frozen=True)
class GridConfig:
    levels: tuple[int, ...] = (8, 16, 32)
    min_count: int = 2
    top_classes: int = 5


@dataclass(frozen=True)
class IconsConfig:
    size_px: int = 80
    steps: int = 128
    tries: int = 1
    batch_size: int = 0  # 0: chosen from the device's memory
    learning_rate: float = 0.05
    cossim_power: float = 2.0
    warm_start: bool = True  # start each finer level's icons from their parent cells' icons
    whiten: bool = False  # aim at the direction whitened by the activations' second moments (Lucid's option)
    device: str = "auto"
    precision: str = "auto"  # the network's number format while optimizing: auto, float32, bfloat16


@dataclass(frozen=True)
class SiteConfig:
    title: str = "Activation Atlas"
    content: str = "content"  # folder of markdown pages, relative to the config file
    templates: str = "templates"  # folder of template overrides, relative to the config file


@dataclass(frozen=True)
class Config:
    preset: str = "default"
    seed: int = 0
    out: str = "site"
    cache: str = ".atlas-cache"
    model: ModelConfig = field(default_factory=ModelConfig)
    images: ImagesConfig = field(default_factory=ImagesConfig)
    collect: CollectConfig = field(default_factory=CollectConfig)
    layout: LayoutConfig = field(default_factory=LayoutConfig)
    grid: GridConfig = field(default_factory=GridConfig)
    icons: IconsConfig = field(default_factory=IconsConfig)
    site: SiteConfig = field(default_factory=SiteConfig)
    base_dir: str = "."  # folder that relative paths in the config are taken from

    def path(self, value: str) -> Path:
        """A path from the config, resolved against the config file's folder."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else Path(self.base_dir) / p


# Each preset is a partial config, in the same shape as atlas.toml.
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "images": {"default_crops": 160},
        "collect": {"positions_per_image": 4},
        "layout": {"n_neighbors": 15},
        "grid": {"levels": [4, 8, 16], "min_count": 2},
        "icons": {"size_px": 40, "steps": 32},
    },
    "default": {},
    "full": {
        "images": {"default_crops": 4000},
        "collect": {"positions_per_image": 8},
        "grid": {"levels": [20, 40, 80, 160], "min_count": 3},
        "icons": {"size_px": 80, "steps": 512, "tries": 2},
    },
}

CHOICES = {
    "layout.method": ("umap", "tsne"),
    "icons.device": ("auto", "cpu", "cuda"),
    "icons.precision": ("auto", "float32", "bfloat16"),
    "preset": tuple(PRESETS),
}


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
        low, high = _number(self.low), _number(self.high)
        if high is None:
            return f"must be {'>' if self.low_open else '>='} {low}"
        if self.low_open or self.high_open:
            return (f"must be {'above' if self.low_open else 'at least'} {low} "
                    f"and {'below' if self.high_open else 'at most'} {high}")
        return f"must be {low} to {high}"


def _number(x: float | None) -> str | None:
    if x is None:
        return None
    return str(int(x)) if float(x).is_integer() else repr(x)


RANGES = {
    "seed": Range(0, 2**32 - 1),  # numpy and torch take seeds below 2**32
    "images.crops_per_image": Range(0),
    "images.default_crops": Range(1),
    "images.max_images": Range(0),
    "collect.positions_per_image": Range(1, 64),
    "collect.batch_size": Range(1),
    "layout.n_neighbors": Range(2, 200),
    "layout.min_dist": Range(0, 1),
    "layout.clip_percentile": Range(0, 50, high_open=True),  # 50 would clip every point
    "grid.min_count": Range(1),
    "grid.top_classes": Range(1, 20),
    "icons.size_px": Range(16, 512),
    "icons.steps": Range(1, 10000),
    "icons.tries": Range(1, 16),
    "icons.batch_size": Range(0, text="must be >= 1, or 0 to choose from the device's memory"),
    "icons.learning_rate": Range(0, 1, low_open=True),
    "icons.cossim_power": Range(0, 8),
}
GRID_SIZE = Range(1, 512)


def _value(cfg: Config, key: str) -> Any:
    section, _, name = key.rpartition(".")
    return getattr(getattr(cfg, section) if section else cfg, name)


def _check(cfg: Config) -> list[str]:
    """Every problem with the values of `cfg`, as 'key = value: what is allowed'."""
    problems = []

    def need(ok: bool, key: str, value: Any, allowed: str) -> None:
        if not ok:
            problems.append(f"{key} = {value!r}: {allowed}")

    for key, choices in CHOICES.items():
        need(_value(cfg, key) in choices, key, _value(cfg, key), "must be one of " + ", ".join(choices))
    for key, allowed in RANGES.items():
        need(_value(cfg, key) in allowed, key, _value(cfg, key), allowed.describe())
    layers = cfg.collect.layers
    need(all(isinstance(x, str) and x for x in layers) and len(set(layers)) == len(layers),
         "collect.layers", list(layers), "must be layer names, each once")
    levels = cfg.grid.levels
    sizes_ok = len(levels) >= 1 and all(isinstance(n, int) and not isinstance(n, bool) and n in GRID_SIZE
                                        for n in levels)
    need(sizes_ok, "grid.levels", list(levels),
         f"must be a list of grid sizes from {_number(GRID_SIZE.low)} to {_number(GRID_SIZE.high)}")
    # Each level's files are named by its size: a repeat would overwrite another level's.
    need(not sizes_ok or all(a < b for a, b in zip(levels, levels[1:])), "grid.levels", list(levels),
         "must be increasing, without repeats, e.g. [8, 16, 32]")
    return problems


def _check_paths(cfg: Config, explicit: set[str]) -> list[str]:
    """Every problem with the files and folders `cfg` names; `explicit`: the keys a user set."""
    problems = []

    def shown(key: str) -> str:
        value = _value(cfg, key)
        where = cfg.path(value)
        return f"{key} = {value!r}" + ("" if str(where) == value else f" ({where})")

    if cfg.images.dir:
        where = cfg.path(cfg.images.dir)
        if not where.is_dir():
            problem = "is not a folder" if where.exists() else "image folder not found"
            problems.append(f"{shown('images.dir')}: {problem}: give a folder of images, or leave it out "
                            "for the embedded photographs")
    for key, what in (("site.content", "pages"), ("site.templates", "templates")):
        # Left at its default, an absent folder means the packaged one; named, it must be there.
        if key in explicit and not cfg.path(_value(cfg, key)).is_dir():
            problems.append(f"{shown(key)}: folder not found: fix the path, or leave the key out for the "
                            f"packaged {what}")
    for key in ("model.checkpoint", "model.labels"):
        if _value(cfg, key) and not cfg.path(_value(cfg, key)).is_file():
            problems.append(f"{shown(key)}: file not found")
    for key in ("cache", "out"):
        where = cfg.path(_value(cfg, key))
        blocker = next((p for p in (where, *where.parents) if p.exists()), None)
        if blocker is not None and not blocker.is_dir():
            what = "is a file" if blocker == where else f"is inside {blocker}, a file"
            problems.append(f"{shown(key)}: {what}, not a folder: choose another folder")
    return problems


def _merge(cfg: Config, data: dict[str, Any], where: str, problems: list[str]) -> Config:
    """`cfg` with the values of `data` (atlas.toml's shape) laid over it."""
    changes: dict[str, Any] = {}
    known = {f.name: f for f in fields(cfg)}
    for key, value in data.items():
        path = f"{where}{key}"
        if key not in known or key == "base_dir":
            problems.append(f"{path}: unknown key (allowed: {', '.join(k for k in known if k != 'base_dir')})")
            continue
        current = getattr(cfg, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                problems.append(f"{path}: must be a table")
                continue
            changes[key] = _merge(current, value, path + ".", problems)
            continue
        coerced = _coerce(value, current)
        if coerced is None:
            problems.append(f"{path} = {value!r}: must be {_type_name(current)}")
            continue
        changes[key] = coerced
    return replace(cfg, **changes)


def _type_name(current: Any) -> str:
    if isinstance(current, bool):
        return "true or false"
    if isinstance(current, tuple):
        return "a list"
    return {int: "a whole number", float: "a number", str: "a string"}[type(current)]


def _coerce(value: Any, current: Any) -> Any:
    """`value` as the type of `current`, or None when it cannot be."""
    if isinstance(current, bool):
        return value if isinstance(value, bool) else None
    if isinstance(current, int):
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    if isinstance(current, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return float(value) if ok else None
    if isinstance(current, str):
        return value if isinstance(value, str) else None
    if isinstance(current, tuple):
        return tuple(value) if isinstance(value, list) else None
    return None


def load_config(path: Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """The build config: defaults, then the preset, then `path` (TOML), then `overrides`.

    `overrides` has atlas.toml's shape ({"icons": {"steps": 64}, "seed": 1}); the CLI
    fills it from its options. Raises AtlasError listing every bad key and value, one a
    line, and every file or folder named that is not there.
    """
    overrides = overrides or {}
    data: dict[str, Any] = {}
    base_dir = Path(".")
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise AtlasError(f"config file {path} not found: pass an existing atlas.toml, or leave out --config")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise AtlasError(f"{path} is not valid TOML: {exc}") from None
        base_dir = path.parent

    preset = overrides.get("preset", data.get("preset", "default"))
    problems: list[str] = []
    # An unknown preset adds nothing and is reported by _check with the other problems.
    cfg = _merge(Config(), PRESETS.get(preset, {}) if isinstance(preset, str) else {}, "", problems)
    cfg = _merge(cfg, data, "", problems)
    cfg = _merge(cfg, overrides, "", problems)
    cfg = replace(cfg, base_dir=str(base_dir))
    problems += _check(cfg)
    problems += _check_paths(cfg, _key_paths(data) | _key_paths(overrides))
    if problems:
        where = f" in {path}" if path else ""
        raise AtlasError(f"invalid config{where}:" + "".join(f"\n  {p}" for p in problems))
    return cfg


def _key_paths(data: dict[str, Any], where: str = "") -> set[str]:
    """The dotted keys that `data` (atlas.toml's shape) sets."""
    keys = set()
    for key, value in data.items():
        keys |= _key_paths(value, f"{where}{key}.") if isinstance(value, dict) else {f"{where}{key}"}
    return keys


def describe(cfg: Config) -> dict[str, Any]:
    """The config as plain data, for hashing and for the build record."""
    out = dataclasses.asdict(cfg)
    out.pop("base_dir")
    return out
