"""Stage artifacts on disk, each folder completed by a JSON sidecar.

A stage writes its files into a folder named by the key of everything it was made
from, then `meta.json` last, holding the schema version, the key and the sha256 of
every file beside it. A later build whose key matches, and whose files still match
their digests, skips the stage; a build interrupted before the sidecar was written,
or a file damaged since, redoes it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from .errors import AtlasError

# 2: meta.json lists every file's sha256.
SCHEMA_VERSION = 2
META = "meta.json"
_FULL_DISK = (errno.ENOSPC, errno.EDQUOT)


# Each artifact's version, in one place. Raise one when what its files hold, or how they are
# made, changes: its caches made before are made again, and so are the stages made from them.
VERSIONS = {
    "images": 2,  # 2: sizes and crops are those of each image turned upright by its EXIF orientation
    "activations": 2,  # 2: positions drawn per crop from (seed, layer, crop), attributions by vmap over tangents
    "layout": 2,  # 2: above layout.fit_sample rows, fitted on a sample and the rest placed
    "grid": 3,  # 2: scores.npy joined the artifact; 3: cells.npz replaced cells.json
    "icons": 2,  # 2: keyed by the IconSpec whole
    "amplitude": 1,
    "examples": 1,
    "trust": 1,
    "names": 1,
    "classes": 1,
    "links": 1,
}


def artifact_key(artifact: str, *parts: Any) -> str:
    """The key of `artifact` (a name in VERSIONS) made from `parts`, its version included."""
    return make_key(artifact, VERSIONS[artifact], *parts)


def make_key(*parts: Any) -> str:
    """A short stable hash of JSON-able parts."""
    text = json.dumps([SCHEMA_VERSION, *parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def array_digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:20]


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _shown(folder: Path, name: str = "") -> str:
    """A cache file as a message names it: <stage>/<key>/<file>."""
    return "/".join(x for x in (folder.parent.name, folder.name, name) if x)


def is_complete(folder: Path, key: str, note: Callable[[str], None] = lambda m: None) -> bool:
    """Whether `folder` holds its stage's artifact for `key`, every file as it was written.

    A damaged file is named through `note`, and the folder counts as not done.
    """
    try:
        data = json.loads((folder / META).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(data, dict) or data.get("key") != key or data.get("schema") != SCHEMA_VERSION \
            or not isinstance(data.get("files"), dict):
        return False
    for name, digest in data["files"].items():
        try:
            intact = file_digest(folder / name) == digest
        except OSError:
            intact = False
        if not intact:
            note(f"cache: {_shown(folder, name)} is damaged; recomputing")
            return False
    return True


def read_meta(folder: Path) -> dict[str, Any]:
    return json.loads((folder / META).read_text())


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically: a reader sees the old file or the new, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True, allow_nan=False))
    os.replace(tmp, path)


def save_array(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, array)
    os.replace(tmp, path)


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write arrays into one uncompressed .npz, atomically, the same bytes for the same arrays.

    np.savez stamps each member with the time of writing; these members carry a fixed date.
    """
    tmp = path.with_name(path.name + ".tmp.npz")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            with archive.open(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), "w",
                              force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)
    os.replace(tmp, path)


def reserve_array(path: Path, dtype, shape: tuple[int, ...]) -> None:
    """Write a .npy file of `shape` whose disk blocks are reserved now, its body unwritten.

    A page written into a sparse file on a full disk kills the process with SIGBUS; with
    the blocks reserved, a full disk is an OSError here instead.
    """
    # Written (sparse) and unmapped first: a mapping left open by the error would hold the disk busy.
    sparse = np.lib.format.open_memmap(path, "w+", dtype, shape)
    del sparse
    if hasattr(os, "posix_fallocate"):
        fd = os.open(path, os.O_RDWR)
        try:
            os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
        finally:
            os.close(fd)


def mark_complete(folder: Path, key: str, **info: Any) -> None:
    files = {p.name: file_digest(p) for p in sorted(folder.iterdir())
             if p.is_file() and p.name != META and ".tmp" not in p.name}
    write_json(folder / META, {"schema": SCHEMA_VERSION, "key": key, "files": files, **info})


def start(folder: Path) -> Path:
    """Make `folder` ready for a fresh run of its stage: no sidecar means not done."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / META).unlink(missing_ok=True)
    return folder


@contextmanager
def writing(folder: Path) -> Iterator[None]:
    """Turn a full disk while writing into `folder` into one line that says what to do."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in _FULL_DISK:
            raise
        raise AtlasError(f"no space left to write {folder}: free space on that disk, or choose another "
                         "--cache or --out") from None


def ensure(folder: Path, key: str, make: Callable[[Path], dict | None],
           note: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """`folder`'s sidecar for `key`, running `make(folder)` first unless the folder is complete.

    `make` writes the stage's files into the folder and returns extra sidecar fields.
    """
    return ensure_each({"": (folder, key)}, lambda folders: {"": make(folders[""]) or {}}, note)[""]


def ensure_each(wanted: dict[str, tuple[Path, str]], make: Callable[[dict[str, Path]], dict[str, dict]],
                note: Callable[[str], None] = lambda m: None) -> dict[str, dict[str, Any]]:
    """Each name's sidecar, where `wanted[name]` is its (folder, key): the cache helper of every stage.

    The names whose folder is not complete are made by one call, `make({name: folder})`,
    which writes their files and returns each one's extra sidecar fields; a stage whose
    parts share work (the layers of one collection) makes them together. A folder whose
    make fails keeps no sidecar, so the next build makes it again.
    """
    todo = {name: folder for name, (folder, key) in wanted.items() if not is_complete(folder, key, note)}
    if todo:
        with writing(next(iter(todo.values())).parent):
            for folder in todo.values():
                start(folder)
            made = make(todo)
            for name, folder in todo.items():
                mark_complete(folder, wanted[name][1], **(made.get(name) or {}))
    return {name: read_meta(folder) for name, (folder, _) in wanted.items()}
