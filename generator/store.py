"""Stage artifacts on disk, each folder completed by a JSON sidecar.

A stage writes its files into a folder named after the stage, then `meta.json`
last, holding the schema version and the key of everything it was made from. A
later build whose key matches skips the stage; a build interrupted before the
sidecar was written redoes it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA_VERSION = 1


def make_key(*parts: Any) -> str:
    """A short stable hash of JSON-able parts."""
    text = json.dumps([SCHEMA_VERSION, *parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def array_digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:20]


def is_complete(folder: Path, key: str) -> bool:
    meta = folder / "meta.json"
    if not meta.is_file():
        return False
    try:
        data = json.loads(meta.read_text())
    except (OSError, ValueError):
        return False
    return data.get("key") == key and data.get("schema") == SCHEMA_VERSION


def read_meta(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "meta.json").read_text())


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically: a reader sees the old file or the new, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


def save_array(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, array)
    os.replace(tmp, path)


def mark_complete(folder: Path, key: str, **info: Any) -> None:
    write_json(folder / "meta.json", {"schema": SCHEMA_VERSION, "key": key, **info})


def start(folder: Path) -> Path:
    """Make `folder` ready for a fresh run of its stage: no sidecar means not done."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "meta.json").unlink(missing_ok=True)
    return folder
