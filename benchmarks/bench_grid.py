"""Grids and tiles at scale: binning a million activations into levels up to 320 x 320, and the 320 level's files.

    python benchmarks/bench_grid.py                 # 100,000 points old against new, 1,000,000 new
    python benchmarks/bench_grid.py --write         # also update BENCHMARKS.md
    python benchmarks/bench_grid.py --n 200000 --no-tiles

Synthetic data, written first as float16 memmaps into a temporary folder (under --tmp): the
layout uniform over the unit square, so every cell of the 320 grid holds points (the most
cells, and the largest files, a 320 level can have), activations |N(0, 1)| over 512 channels,
attributions N(0, 0.02) over 1,000 classes. The old binning is `generator/grid.py` at --base,
loaded from git beside today's and run on the same memmaps in the same process, at the smaller
N where it finishes; both results are compared there, cell by cell and bit by bit.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import tracemalloc
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
MARK_START, MARK_END = "<!-- grid:start -->", "<!-- grid:end -->"


def machine() -> str:
    cpu, flags = "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    import numba

    amx = "AMX" if "amx_tile" in flags else "no AMX"
    return (f"{cpu}, {os.cpu_count()} cores, {amx}, numpy {np.__version__}, numba {numba.__version__}, "
            f"Python {platform.python_version()}")


def old_grid(rev: str) -> types.ModuleType:
    """`generator/grid.py` as it was at `rev`."""
    source = subprocess.run(["git", "show", f"{rev}:generator/grid.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    module = types.ModuleType("grid_base")
    sys.modules["grid_base"] = module  # dataclasses look their module up
    exec(compile(source, f"{rev}:generator/grid.py", "exec"), module.__dict__)
    return module


def synthetic(folder: Path, n: int, channels: int, classes: int, seed: int = 0):
    """layout (n, 2) float32; activations (n, channels) and attributions (n, classes) float16 memmaps."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 1, (n, 2)).astype(np.float32)
    arrays = []
    for name, width, make in (("activations", channels, lambda r, s: np.abs(r.standard_normal(s, np.float32))),
                              ("attributions", classes, lambda r, s: r.standard_normal(s, np.float32) * 0.02)):
        out = np.lib.format.open_memmap(folder / f"{name}.npy", "w+", np.float16, (n, width))
        for start in range(0, n, 65536):
            rows = min(65536, n - start)
            out[start:start + rows] = make(rng, (rows, width))
        out.flush()
        del out
        arrays.append(np.load(folder / f"{name}.npy", mmap_mode="r"))
    return xy, arrays[0], arrays[1]


CPU_SECONDS: list[float] = []  # each timed call's CPU time, beside the wall-clock time it returns


def timed(call):
    start, cpu = time.perf_counter(), time.process_time()
    result = call()
    CPU_SECONDS.append(time.process_time() - cpu)
    return result, time.perf_counter() - start


def cpu_of_last() -> float:
    return CPU_SECONDS[-1]


def peak_bytes(call) -> int:
    """The most memory `call` held at once, as Python and numpy allocated it (a memmap's pages not counted)."""
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def same_levels(a, b) -> bool:
    return all(x.size == y.size and x.cells == y.cells and np.array_equal(x.directions, y.directions)
               and np.array_equal(x.scores, y.scores) for x, y in zip(a, b)) and len(a) == len(b)


class RepeatedIcons:
    """An (M, S, S, 3) uint8 stand-in for rendered icons: 256 distinct textured icons, repeated, held once."""

    def __init__(self, count: int, size: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        coarse = rng.integers(0, 256, (256, size // 8, size // 8, 3)).astype(np.float32)
        smooth = coarse.repeat(8, 1).repeat(8, 2)
        self.pool = np.clip(smooth + rng.normal(0, 24, smooth.shape), 0, 255).astype(np.uint8)
        self.shape = (count, size, size, 3)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, i):
        return self.pool[i % len(self.pool)]


def files_written(folder: Path, patterns: list[str]) -> tuple[int, int, int]:
    paths = [p for pattern in patterns for p in folder.glob(pattern)]
    sizes = [p.stat().st_size for p in paths]
    return len(paths), sum(sizes), max(sizes, default=0)


def level_files(level, folder: Path, classes: int, tiles_too: bool) -> dict:
    """Write the 320 level's cell files, class scores and strongest lists (and WebP tiles); time each."""
    from generator import regions, tiles

    icon_px = 80
    span = tiles.tile_cells(icon_px)
    rng = np.random.default_rng(1)
    cells = [{**c, "fidelity": round(float(f), 3), "objective": round(float(o), 3)}
             for c, f, o in zip(level.cells, rng.uniform(0.5, 1, len(level.cells)), rng.uniform(0, 9, len(level.cells)))]
    out = {}
    side = regions.region_side(level, span)
    rows, out["regions_s"] = timed(lambda: regions.region_rows(level, side))
    entry, seconds = timed(lambda: regions.write_cells(folder, "atlas", level, cells, side, rows))
    out["cells_s"] = out["regions_s"] + seconds
    scale = regions.class_scale([level])
    codes, out["quantize_s"] = timed(lambda: [regions.quantize_scores(level.scores, scale)])
    _, seconds = timed(lambda: regions.write_class_scores(folder, "atlas", [level], codes, [side], [rows]))
    out["classes_s"] = out["quantize_s"] + seconds
    _, out["strongest_s"] = timed(lambda: regions.write_strongest(folder, "atlas", [level], codes))
    out["side"], out["regions"] = side, len(rows)
    out["cells_files"] = files_written(folder, ["level-*.js", "level-*.json"])
    out["class_files"] = files_written(folder, ["classes-*.js"])
    out["strongest_files"] = files_written(folder, ["strongest-*.js"])
    # What schema 3 wrote for this level: all its cells in one script (and one JSON beside it).
    out["one_script_bytes"] = len(regions.js_json({"cells": [regions.compact_cell(c) for c in cells]}))
    if tiles_too:
        (_, names), out["tiles_s"] = timed(lambda: tiles.write_tiles(level, RepeatedIcons(len(level.cells), icon_px),
                                                                     folder))
        out["tiles"] = files_written(folder, [f"{level.size}-*.webp"])
    return out


def cache_round_trip(levels, folder: Path) -> dict:
    """cells.json (before) against cells.npz (now): write, then read back into levels."""
    from generator import store
    from generator.grid import cells_to_arrays, levels_from_arrays

    directions = np.concatenate([lv.directions for lv in levels])
    scores = np.concatenate([lv.scores for lv in levels])
    _, write_json = timed(lambda: store.write_json(folder / "cells.json", {"levels": [
        {"size": lv.size, "cells": lv.cells} for lv in levels]}))
    _, read_json = timed(lambda: json.loads((folder / "cells.json").read_text()))
    _, write_npz = timed(lambda: store.save_arrays(folder / "cells.npz", cells_to_arrays(levels)))

    def read():
        with np.load(folder / "cells.npz") as f:
            return levels_from_arrays(f, directions, scores)

    back, read_npz = timed(read)
    assert [lv.cells for lv in back] == [lv.cells for lv in levels]
    return {"json": (write_json, read_json, (folder / "cells.json").stat().st_size),
            "npz": (write_npz, read_npz, (folder / "cells.npz").stat().st_size)}


def mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} KB"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000_000, help="points for the new binning alone")
    parser.add_argument("--n-old", type=int, default=100_000, help="points for old against new")
    parser.add_argument("--channels", type=int, default=512)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--levels", default="20,40,80,160,320")
    parser.add_argument("--min-count", type=int, default=3, help="the full preset's")
    parser.add_argument("--top", type=int, default=5)
    parser.add_argument("--base", default="500e9b9", help="the commit whose grid.py is the old binning")
    parser.add_argument("--tmp", default=tempfile.gettempdir(), help="where the memmaps go (4.6 GB at 1,000,000)")
    parser.add_argument("--no-tiles", dest="tiles", action="store_false", help="skip the WebP tiles")
    parser.add_argument("--write", action="store_true", help="update the section in BENCHMARKS.md")
    args = parser.parse_args()
    from generator.grid import bin_grid

    levels = [int(n) for n in args.levels.split(",")]
    old = old_grid(args.base)
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        folder = Path(tmp)
        xy, vectors, attributions = synthetic(folder, args.n, args.channels, args.classes)
        print(f"data written: {args.n} x ({args.channels} + {args.classes}) float16", flush=True)
        _, compile_s = timed(lambda: bin_grid(xy[:64], vectors[:64], attributions[:64], [2], 1, 1))
        small = (xy[:args.n_old], vectors[:args.n_old], attributions[:args.n_old])
        load = [os.getloadavg()[0]]
        new_small, new_small_s = timed(lambda: bin_grid(*small, levels, args.min_count, args.top))
        new_small_cpu = cpu_of_last()
        print(f"new, {args.n_old}: {new_small_s:.1f} s", flush=True)
        old_small, old_small_s = timed(lambda: old.bin_grid(*small, levels, args.min_count, args.top))
        old_small_cpu = cpu_of_last()
        print(f"old, {args.n_old}: {old_small_s:.1f} s", flush=True)
        identical = same_levels(old_small, new_small)
        del old_small, new_small
        big, big_s = timed(lambda: bin_grid(xy, vectors, attributions, levels, args.min_count, args.top))
        big_cpu = cpu_of_last()
        load.append(os.getloadavg()[0])
        print(f"new, {args.n}: {big_s:.1f} s", flush=True)
        cache = cache_round_trip(big, folder)
        finest = big[-1]
        site = folder / "site"
        site.mkdir()
        files = level_files(finest, site, args.classes, args.tiles)
        print(files, flush=True)
        del big
        peak = peak_bytes(lambda: bin_grid(xy, vectors, attributions, levels, args.min_count, args.top))
        load.append(os.getloadavg()[0])
    counts = f"{len(finest.cells):,} cells at {levels[-1]}"
    n_text, old_text = f"{args.n:,}", f"{args.n_old:,}"
    lines = [
        f"Synthetic float16 memmaps ({args.channels} channels, {args.classes:,} classes, the layout uniform over the "
        f"square, so every cell of the {levels[-1]} grid holds points: {counts}), levels "
        f"{'/'.join(map(str, levels))}, min_count {args.min_count}, top {args.top}; the files freshly written, so "
        f"read from the page cache; {machine()}; one-minute load average {min(load):.1f} to {max(load):.1f} "
        f"during the run (this machine is shared), so CPU seconds are given beside wall-clock ones. Old: `generator/grid.py` at {args.base} (`np.add.at`, one read "
        f"of the data per level). Command: `python benchmarks/bench_grid.py --write`.",
        "",
        "| | points | old | new | old / new |",
        "|---|---|---|---|---|",
        f"| binning into every level, wall (CPU) | {old_text} | {old_small_s:.1f} s ({old_small_cpu:.1f} s) | "
        f"{new_small_s:.1f} s ({new_small_cpu:.1f} s) | **{old_small_s / new_small_s:.0f}x** "
        f"({old_small_cpu / new_small_cpu:.0f}x) |",
        f"| binning into every level, wall (CPU) | {n_text} | | {big_s:.1f} s ({big_cpu:.1f} s) | |",
        f"| cells cache, write + read (old: cells.json, new: cells.npz) | {n_text} | "
        f"{cache['json'][0] + cache['json'][1]:.1f} s ({mb(cache['json'][2])}) | "
        f"{cache['npz'][0] + cache['npz'][1]:.1f} s ({mb(cache['npz'][2])}) | "
        f"{(cache['json'][0] + cache['json'][1]) / (cache['npz'][0] + cache['npz'][1]):.1f}x |",
        "",
        f"At {old_text} points the two give the same cells, counts and top classes, and the same directions and "
        f"scores bit for bit: **{'identical' if identical else 'NOT identical'}**. The new binning's first call "
        f"in a process adds {compile_s:.1f} s, numba compiling its two loops (cached on disk after). Its peak "
        f"memory at {n_text} points: {mb(peak)} allocated (tracemalloc; the memmaps' pages not counted): "
        f"float64 sums over the {levels[-1]} level's cells and over the atoms below them, {args.classes:,} "
        f"classes wide, with the cells themselves.",
        "",
        f"The {levels[-1]} level's files for the viewer ({len(finest.cells):,} cells, icons of 80 px, tiles of 4 x 4 "
        f"cells, regions of {files['side']} x {files['side']} cells):",
        "",
        "| files | count | total | largest | seconds |",
        "|---|---|---|---|---|",
        f"| cells, per region (`level-{levels[-1]}-<rx>-<ry>.js` and `.json`) | {files['cells_files'][0]} | "
        f"{mb(files['cells_files'][1])} | {mb(files['cells_files'][2])} | {files['cells_s']:.1f} |",
        f"| class codes, per region and chunk of classes | {files['class_files'][0]:,} | {mb(files['class_files'][1])} "
        f"| {mb(files['class_files'][2])} | {files['classes_s']:.1f} |",
        f"| strongest cells, per chunk of classes | {files['strongest_files'][0]} | "
        f"{mb(files['strongest_files'][1])} | {mb(files['strongest_files'][2])} | {files['strongest_s']:.1f} |",
    ]
    if args.tiles:
        lines.append(f"| WebP tiles | {files['tiles'][0]:,} | {mb(files['tiles'][1])} | {mb(files['tiles'][2])} | "
                     f"{files['tiles_s']:.1f} |")
    lines += ["", f"Before the split (data schema 3), this level's cells were one script of "
                  f"{mb(files['one_script_bytes'])} (and a JSON file beside it), which the viewer loaded whole "
                  f"to draw any part of the level; the class filter's scripts held every cell of every level, "
                  f"{mb(len(finest.cells) * 4 // 3)} of each class's script for this level alone."]
    text = "\n".join(lines)
    print(text)
    if args.write:
        from bench_build import write_section

        write_section("Grids and tiles at scale", MARK_START, MARK_END, text)


if __name__ == "__main__":
    main()
