"""`atlas new`: a site project to start from.

The project holds atlas.toml (every key, commented), content/ (a copy of the packaged
article), an empty templates/ folder for overrides, and a .gitignore for what a build makes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .errors import AtlasError
from .options import scaffold_toml
from .site import resource_dir

CONFIG_HEADER = """\
# Settings for `atlas build` and `atlas serve`. Every key is optional: a key left out, or
# commented out, keeps the default shown. Paths are relative to this file's folder.
# Command-line options (atlas build --help) win over this file.
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

    write("atlas.toml", scaffold_toml(CONFIG_HEADER))
    shutil.copytree(resource_dir("content"), folder / "content")
    made += sorted(p for p in (folder / "content").rglob("*") if p.is_file())
    write("templates/README.md", TEMPLATES_README)
    write(".gitignore", GITIGNORE)
    return made
