"""How each stage's cost grows with the number of activations: seconds and peak resident memory.

    python benchmarks/bench_scale.py                     # 10k, 100k and 1M activations
    python benchmarks/bench_scale.py --sizes 10000 --write

Each stage runs in a fresh process of its own, through the pipeline's own stage function
(cache writes and digests included), so its peak RSS is its own. Collection runs on real
images (`../shared/data/imagenet-sample`, the default model's two default layers, four
positions per crop) up to `--collect-max` activations; the stages after it run on
seeded stand-in activations of 512 channels with attributions to 1,000 classes
(benchmarks/synthetic.py), with the grid levels of the article's last layers
(20, 40, 80, 160, 320). Tiles are written from stand-in icons, one flat colour a cell
(the icons' own cost is measured apart: BENCHMARKS.md, "Ray engine" and the icon sections).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

SAMPLE = ROOT.parent / "shared" / "data" / "imagenet-sample"
LEVELS = [20, 40, 80, 160, 320]
MARK_START, MARK_END = "<!-- scale:start -->", "<!-- scale:end -->"
LAYER = "synthetic"


def _config(work: Path, n: int, **extra):
    from generator.config import load_config

    overrides = {"cache": str(work / "cache"), "out": str(work / "site"),
                 "grid": {"levels": LEVELS, "min_count": 3}, **extra}
    return load_config(None, overrides)


def _act_folder(work: Path, n: int) -> Path:
    from synthetic import write_synthetic

    folder = work / f"synthetic-{n}"
    write_synthetic(folder, n)
    return folder


def stage_collect(work: Path, n: int) -> dict:
    from generator.models import load_model
    from generator.pipeline import stage_activations, stage_images
    from generator.progress import Reporter

    per_crop = 4
    images = sorted(p for p in SAMPLE.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    crops = max(1, math.ceil(n / per_crop / len(images)))
    cfg = _config(work, n, images={"dir": str(SAMPLE), "crops_per_image": crops},
                  collect={"positions_per_image": per_crop})
    model = load_model(cfg.model.name)
    plan, key = stage_images(cfg, Path(cfg.cache), Reporter())
    start = time.perf_counter()
    folders = stage_activations(cfg, model, list(model.default_layers), plan, key, Path(cfg.cache), Reporter())
    seconds = time.perf_counter() - start
    import numpy as np

    count = len(np.load(next(iter(folders.values())) / "activations.npy", mmap_mode="r"))
    return {"seconds": seconds, "activations": count, "layers": len(folders)}


def stage_layout(work: Path, n: int) -> dict:
    from generator.pipeline import stage_layout as run
    from generator.progress import Reporter

    cfg, act = _config(work, n), _act_folder(work, n)
    start = time.perf_counter()
    run(cfg, LAYER, act, Path(cfg.cache), Reporter())
    return {"seconds": time.perf_counter() - start}


def stage_grid(work: Path, n: int) -> dict:
    from generator.pipeline import stage_grid as run
    from generator.pipeline import stage_layout as layout
    from generator.progress import Reporter

    cfg, act = _config(work, n), _act_folder(work, n)
    layout_folder = layout(cfg, LAYER, act, Path(cfg.cache), Reporter())  # cached by the layout stage's run
    start = time.perf_counter()
    levels = run(cfg, LAYER, act, layout_folder, Path(cfg.cache), Reporter())
    return {"seconds": time.perf_counter() - start, "cells": {lv.size: len(lv.cells) for lv in levels}}


def stage_tiles(work: Path, n: int) -> dict:
    import numpy as np

    from generator.icons import RenderedIcons
    from generator.pipeline import stage_grid as grid
    from generator.pipeline import stage_layout as layout
    from generator.progress import Reporter
    from generator.tiles import write_atlas, write_manifest

    cfg, act = _config(work, n), _act_folder(work, n)
    cache = Path(cfg.cache)
    levels = grid(cfg, LAYER, act, layout(cfg, LAYER, act, cache, Reporter()), cache, Reporter())
    size = cfg.icons.size_px
    rendered = []
    for lv in levels:
        colours = (np.abs(lv.directions[:, :3]) / (np.abs(lv.directions[:, :3]).max() + 1e-9) * 255).astype(np.uint8)
        icons = np.broadcast_to(colours[:, None, None, :], (len(colours), size, size, 3))
        ones = np.ones(len(colours), np.float32)
        rendered.append(RenderedIcons(np.ascontiguousarray(icons), ones, ones))
    data = work / f"tiles-{n}"
    import shutil

    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    start = time.perf_counter()
    entry = write_atlas(data, LAYER, "synthetic", (512, 1, 1), n, levels, rendered)
    write_manifest(data, [entry], [f"class {k}" for k in range(levels[0].scores.shape[1])], "scale")
    seconds = time.perf_counter() - start
    files = [p for p in data.rglob("*") if p.is_file()]
    return {"seconds": seconds, "files": len(files), "largest_kb": round(max(p.stat().st_size for p in files) / 1024),
            "total_mb": round(sum(p.stat().st_size for p in files) / 2**20, 1)}


def stage_classes(work: Path, n: int) -> dict:
    """The class stage's selection, for one class atlas and one comparison (1,000 classes)."""
    import numpy as np

    from generator.class_atlas import ClassView
    from generator.pipeline import stage_classes as run
    from generator.progress import Reporter

    cfg, act = _config(work, n), _act_folder(work, n)
    names = [f"class {k}" for k in range(np.load(act / "attributions.npy", mmap_mode="r").shape[1])]
    start = time.perf_counter()
    for view in (ClassView((0,)), ClassView((0, 1))):
        run(cfg, view, LAYER, act, names, Path(cfg.cache), Reporter())
    return {"seconds": time.perf_counter() - start}


def stage_links(work: Path, n: int) -> dict:
    """Ties from the stand-in layer (7 x 7 grid) to another of 14 x 14 at the same crops, and each cell's
    list of the other's cells at the levels links.py keeps, on stand-in layouts (uniform in the square)."""
    import numpy as np

    from generator import links
    from generator.grid import cell_index
    from synthetic import synthetic_positions

    act = _act_folder(work, n)
    positions_a, positions_b = np.load(act / "positions.npy"), synthetic_positions(n, 14, seed=1)
    rng = np.random.default_rng(0)
    xy_a, xy_b = rng.uniform(size=(n, 2)), rng.uniform(size=(n, 2))
    start = time.perf_counter()
    ties = links.tie_rows(positions_a, (512, 7, 7), positions_b, (512, 14, 14))
    for size in (s for s in LEVELS if s <= links.MAX_SIZE):
        cells_b = cell_index(xy_b, size)
        links.cell_links(cell_index(xy_a, size), np.where(ties >= 0, cells_b[ties], -1), size * size, size * size)
    return {"seconds": time.perf_counter() - start, "tied": int((ties >= 0).sum())}


STAGES = {"collect": stage_collect, "layout": stage_layout, "grid": stage_grid, "tiles": stage_tiles,
          "classes": stage_classes, "links": stage_links}


def run_child(stage: str, n: int, work: Path, timeout: float) -> dict:
    """One stage in a fresh process: its result, and its own peak RSS."""
    command = [sys.executable, __file__, "--child", stage, "--sizes", str(n), "--work", str(work)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"error": f"over {timeout:.0f} s"}
    if done.returncode:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1][:200]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def machine() -> str:
    name = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    amx = "AMX" if getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)() else "no AMX"
    return f"{name}, {os.cpu_count()} cores, {amx}, torch {torch.__version__}, Python {platform.python_version()}"


def _cell(result: dict | None) -> str:
    if result is None:
        return "not run"
    if "error" in result:
        return result["error"]
    return f"{result['seconds']:.1f} s, {result['peak_rss_mb'] / 1024:.2f} GB"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--collect-max", type=int, default=10000, help="largest N collected from real images")
    parser.add_argument("--work", default="/tmp/atlas-scale")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--child", default="")
    args = parser.parse_args()
    work = Path(args.work)
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.child:
        result = STAGES[args.child](work, sizes[0])
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    stages = args.stages.split(",")
    results: dict[tuple[str, int], dict | None] = {}
    for n in sizes:
        for stage in stages:
            if stage == "collect" and (n > args.collect_max or not SAMPLE.is_dir()):
                results[stage, n] = None
                continue
            results[stage, n] = run_child(stage, n, work, args.timeout)
            print(stage, n, json.dumps(results[stage, n]), flush=True)
    lines = [f"Seconds and peak resident memory per stage, each in a fresh process, on {machine()}; "
             f"command: `python benchmarks/bench_scale.py --sizes {args.sizes} --stages {args.stages} --write`.", "",
             "| stage | " + " | ".join(f"{n:,} activations" for n in sizes) + " |",
             "|---|" + "---|" * len(sizes)]
    names = {"collect": "collection (2 layers, real images)", "layout": "layout (512 channels)",
             "grid": f"grid ({', '.join(map(str, LEVELS))}; 1,000 classes)", "tiles": "tiles and cell metadata",
             "classes": "class atlas and comparison: selection", "links": "links to a 14 x 14 layer (level 20)"}
    for stage in stages:
        lines.append(f"| {names[stage]} | " + " | ".join(_cell(results[stage, n]) for n in sizes) + " |")
    table = "\n".join(lines)
    print(table)
    if args.write:
        from bench_build import write_section

        write_section("Growth with N", MARK_START, MARK_END, table)


if __name__ == "__main__":
    main()
