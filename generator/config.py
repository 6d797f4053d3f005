"""Typed build configuration: defaults, presets, the TOML file and command-line values.

The settings themselves, their defaults and the values they allow are declared once, in
options.py; the dataclasses here are made from that table.

Precedence, lowest first: built-in defaults, the preset, `atlas.toml`, command-line
options. Every invalid value is reported at once, with its key path.
"""

from __future__ import annotations

import dataclasses
from dataclasses import field, fields, make_dataclass, replace
from pathlib import Path
from typing import Any

from .errors import AtlasError
from .options import BY_KEY, OPTIONS, PRESET_NAMES, SECTIONS, section_options

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, before it joined the standard library
    import tomli as tomllib

DEFAULT_MODEL = BY_KEY["model.name"].default


def _section_class(section: str) -> type:
    """A frozen dataclass of `section`'s options (the top-level ones for ""), each defaulting as declared."""
    specs = [(o.name, type(o.default), field(default=o.default)) for o in section_options(section)]
    if not section:
        specs += [(s, _SECTION_CLASSES[s], field(default_factory=_SECTION_CLASSES[s])) for s in SECTIONS if s]
        # The folder that relative paths in the config are taken from: set by load_config, not a setting.
        specs.append(("base_dir", str, field(default=".")))
    name = f"{section.capitalize()}Config" if section else "Config"
    namespace = {"path": _path} if not section else {}
    return make_dataclass(name, specs, frozen=True, namespace=namespace)


def _path(self, value: str) -> Path:
    """A path from the config, resolved against the config file's folder."""
    p = Path(value).expanduser()
    return p if p.is_absolute() else Path(self.base_dir) / p


_SECTION_CLASSES: dict[str, type] = {}
for _section in SECTIONS[1:]:
    _SECTION_CLASSES[_section] = _section_class(_section)
ModelConfig, ImagesConfig, CollectConfig, LayoutConfig, GridConfig, IconsConfig, SiteConfig, ClassesConfig = \
    (_SECTION_CLASSES[s] for s in SECTIONS[1:])
Config = _section_class("")


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
assert tuple(PRESETS) == PRESET_NAMES, "options.PRESET_NAMES lists the presets"


def _value(cfg: Config, key: str) -> Any:
    section, _, name = key.rpartition(".")
    return getattr(getattr(cfg, section) if section else cfg, name)


def _check(cfg: Config) -> list[str]:
    """Every problem with the values of `cfg`, as 'key = value: what is allowed'."""
    problems = []
    for option in OPTIONS:
        value = _value(cfg, option.key)
        problem = option.problem(value)
        if problem:
            shown = list(value) if isinstance(value, tuple) else value
            problems.append(f"{option.key} = {shown!r}: {problem}")
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
        return tuple(tuple(v) if isinstance(v, list) else v for v in value) if isinstance(value, list) else None
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
