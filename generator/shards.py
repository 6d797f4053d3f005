"""The driver's side of a collection: arrays filled shard by shard, and which shards are done.

A layer's folder holds its arrays (see collect.py) preallocated at their final shape, and
`progress.json` {"settings": {...}, "done": [shard, ...]} while the collection runs. Each
shard's rows go into the .npy bodies with positioned writes (os.pwrite), not through a
memory map: written pages then belong to the page cache, not to the process's resident
memory, which so stays the same whatever the number of rows. A shard is listed as done
only once its rows are on disk, so a collection killed at any point resumes at its
first missing shard; `progress.json` goes once every shard is done, before the stage's
sidecar is written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .errors import AtlasError
from .store import reserve_array, write_json

PROGRESS = "progress.json"
FLOAT16_MAX = float(np.finfo(np.float16).max)
_COPY_BYTES = 16 << 20  # rows copied at a time when an array widens to float32


class ShardResult(NamedTuple):
    """One layer's rows for one shard of crops."""

    activations: np.ndarray  # (n, C) float32
    attributions: np.ndarray  # (n, K) float32
    positions: np.ndarray  # (n, 3) int32: crop index, row, column


def _header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """Shape, dtype and body offset of the .npy file at `path`."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(f)
        if fortran:
            raise ValueError(f"{path} is in Fortran order")
        return shape, dtype, f.tell()


class RowFile:
    """A preallocated .npy file of rows, written with os.pwrite.

    With `widen`, a float16 file becomes float32 the first time a value would not fit
    float16 (|x| > 65504); float16 to float32 is exact, so rows already written keep
    their values.
    """

    def __init__(self, path: Path, shape: tuple[int, int], dtype, what: str, widen: bool = False,
                 reuse: bool = False):
        """With `reuse`, keep the file at `path` as it is (see `fits`); otherwise allocate it afresh."""
        self.path, self.what, self.widen = path, what, widen
        if not reuse:
            reserve_array(path, dtype, shape)
        self._open()

    @staticmethod
    def fits(path: Path, shape: tuple[int, int], dtype, widen: bool = False) -> bool:
        """Whether `path` is an .npy file of `shape` and `dtype` (or float32, with `widen`)."""
        try:
            found, found_dtype, _ = _header(path)
        except (OSError, ValueError):
            return False
        allowed = {np.dtype(dtype), np.dtype(np.float32)} if widen else {np.dtype(dtype)}
        return tuple(found) == tuple(shape) and found_dtype in allowed

    def _open(self) -> None:
        self.shape, self.dtype, self.offset = _header(self.path)
        self.fd = os.open(self.path, os.O_RDWR)
        self.row_bytes = int(np.prod(self.shape[1:])) * self.dtype.itemsize

    def write(self, start: int, values: np.ndarray) -> None:
        """Rows `start` to `start + len(values)`."""
        if self.widen:
            if not np.isfinite(values).all():
                raise AtlasError(f"{self.what} holds infinite or NaN values: the model overflows float32 on "
                                 "these images; check its weights, or choose another layer")
            if self.dtype == np.float16 and len(values) and np.abs(values).max() > FLOAT16_MAX:
                self._to_float32()
        data = np.ascontiguousarray(values, dtype=self.dtype).tobytes()
        position = self.offset + start * self.row_bytes
        while data:  # pwrite may write less than asked
            written = os.pwrite(self.fd, data, position)
            data, position = data[written:], position + written

    def _to_float32(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp.npy")
        reserve_array(tmp, np.float32, self.shape)
        _, _, tmp_offset = _header(tmp)
        rows = max(1, _COPY_BYTES // self.row_bytes)
        out = os.open(tmp, os.O_RDWR)
        try:
            for start in range(0, self.shape[0], rows):
                count = min(rows, self.shape[0] - start)
                chunk = os.pread(self.fd, count * self.row_bytes, self.offset + start * self.row_bytes)
                wide = np.frombuffer(chunk, np.float16).astype(np.float32).tobytes()
                os.pwrite(out, wide, tmp_offset + start * self.row_bytes * 2)
            os.fsync(out)
        finally:
            os.close(out)
        os.close(self.fd)
        os.replace(tmp, self.path)
        self._open()

    def sync(self) -> None:
        os.fdatasync(self.fd) if hasattr(os, "fdatasync") else os.fsync(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class LayerShards:
    """One layer's arrays, filled shard by shard, with the record of the shards done.

    `settings` is everything the rows depend on beyond the stage's cache key (shard size,
    batch size, device): a record made with other settings is not resumed but started over,
    so a resumed collection equals an uninterrupted one byte for byte.
    """

    def __init__(self, folder: Path, layer: str, rows: int, channels: int, classes: int, settings: dict):
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.settings = folder, dict(settings, rows=rows, channels=channels, classes=classes)
        self.done: set[int] = set()
        try:
            record = json.loads((folder / PROGRESS).read_text())
            if record.get("settings") == self.settings:
                self.done = {int(s) for s in record["done"]}
        except (OSError, ValueError, KeyError, TypeError):
            pass
        specs = [("activations.npy", (rows, channels), np.float16, f"layer {layer}'s activations", True),
                 ("attributions.npy", (rows, classes), np.float16, f"layer {layer}'s class attributions", True),
                 ("positions.npy", (rows, 3), np.int32, f"layer {layer}'s positions", False)]
        if not all(RowFile.fits(folder / name, shape, dtype, widen) for name, shape, dtype, _, widen in specs):
            self.done = set()
        reuse = bool(self.done)
        self._record()  # before the files change: a record that outlives them must not describe them
        self.files = [RowFile(folder / name, shape, dtype, what, widen, reuse)
                      for name, shape, dtype, what, widen in specs]

    def write(self, shard: int, first_row: int, result: ShardResult) -> None:
        """Write `result`'s rows from `first_row` on, then record `shard` as done."""
        for file, values in zip(self.files, result):
            file.write(first_row, values)
        for file in self.files:
            file.sync()
        self.done.add(shard)
        self._record()

    def _record(self) -> None:
        write_json(self.folder / PROGRESS, {"settings": self.settings, "done": sorted(self.done)})

    def finish(self) -> None:
        """Close the files and drop the record: the arrays are complete."""
        for file in self.files:
            file.close()
        (self.folder / PROGRESS).unlink(missing_ok=True)

    def close(self) -> None:
        for file in self.files:
            file.close()
