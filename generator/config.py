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


def _check(cfg: Config) -> list[str]:
    """Every problem with the values of `cfg`, as 'key: value: what is allowed'."""
    problems = []

    def need(ok: bool, key: str, value: Any, allowed: str) -> None:
        if not ok:
            problems.append(f"{key} = {value!r}: {allowed}")

    for key, choices in CHOICES.items():
        section, _, name = key.rpartition(".")
        value = getattr(getattr(cfg, section) if section else cfg, name)
        need(value in choices, key, value, "must be one of " + ", ".join(choices))
    need(cfg.seed >= 0, "seed", cfg.seed, "must be a whole number >= 0")
    need(cfg.images.crops_per_image >= 0, "images.crops_per_image", cfg.images.crops_per_image, "must be >= 0")
    need(cfg.images.default_crops >= 1, "images.default_crops", cfg.images.default_crops, "must be >= 1")
    need(cfg.images.max_images >= 0, "images.max_images", cfg.images.max_images, "must be >= 0")
    c = cfg.collect
    need(1 <= c.positions_per_image <= 64, "collect.positions_per_image", c.positions_per_image, "must be 1 to 64")
    need(c.batch_size >= 1, "collect.batch_size", c.batch_size, "must be >= 1")
    need(all(isinstance(x, str) and x for x in c.layers), "collect.layers", list(c.layers), "must be layer names")
    lay = cfg.layout
    need(2 <= lay.n_neighbors <= 200, "layout.n_neighbors", lay.n_neighbors, "must be 2 to 200")
    need(0.0 <= lay.min_dist <= 1.0, "layout.min_dist", lay.min_dist, "must be 0 to 1")
    need(0.0 <= lay.clip_percentile < 50, "layout.clip_percentile", lay.clip_percentile, "must be 0 to 50")
    g = cfg.grid
    need(
        len(g.levels) >= 1 and all(isinstance(n, int) and 1 <= n <= 512 for n in g.levels),
        "grid.levels", list(g.levels), "must be a list of grid sizes from 1 to 512",
    )
    need(g.min_count >= 1, "grid.min_count", g.min_count, "must be >= 1")
    need(1 <= g.top_classes <= 20, "grid.top_classes", g.top_classes, "must be 1 to 20")
    i = cfg.icons
    need(16 <= i.size_px <= 512, "icons.size_px", i.size_px, "must be 16 to 512")
    need(1 <= i.steps <= 10000, "icons.steps", i.steps, "must be 1 to 10000")
    need(1 <= i.tries <= 16, "icons.tries", i.tries, "must be 1 to 16")
    need(i.batch_size >= 0, "icons.batch_size", i.batch_size, "must be >= 1, or 0 to choose from the device's memory")
    need(0 < i.learning_rate <= 1, "icons.learning_rate", i.learning_rate, "must be > 0 and <= 1")
    need(0 <= i.cossim_power <= 8, "icons.cossim_power", i.cossim_power, "must be 0 to 8")
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
    fills it from its options. Raises AtlasError listing every bad key and value.
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
    if preset not in PRESETS:
        raise AtlasError(f"unknown preset {preset!r}: use one of {', '.join(PRESETS)}")
    problems: list[str] = []
    cfg = _merge(Config(), PRESETS[preset], "", problems)
    cfg = _merge(cfg, data, "", problems)
    cfg = _merge(cfg, overrides, "", problems)
    problems += _check(cfg)
    if problems:
        where = f" in {path}" if path else ""
        raise AtlasError(f"invalid config{where}: " + "; ".join(problems))
    return replace(cfg, base_dir=str(base_dir))


def describe(cfg: Config) -> dict[str, Any]:
    """The config as plain data, for hashing and for the build record."""
    out = dataclasses.asdict(cfg)
    out.pop("base_dir")
    return out
