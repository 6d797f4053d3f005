"""Activation collection: compute alone, the whole collection, the attribution routes, and memory.

    python benchmarks/bench_collect.py             # print the tables
    python benchmarks/bench_collect.py --write     # also update BENCHMARKS.md
    python benchmarks/bench_collect.py --memory    # peak memory against N (wide model), instead

Throughput is in activations per second per layer (each layer gets crops x positions
rows), on the default model (efficientnet_lite0) and its default layers:
  compute   forward and attribution on batches decoded beforehand, for each route:
            "before" is the previous route (every image's activation repeated once per
            position, forward-mode AD on all copies, one pass per layer after a capture
            pass), "after" the shared primal (attribution.py); rounds alternate the
            routes.
  full      collect_activations on the ImageNet sample (decode, compute, write), per
            number of decoding workers, from an empty folder each time.
Each round times every row once, one after another, and the table gives medians.
The ratio full / compute says how much of the compute speed a collection keeps.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))
SAMPLE = ROOT.parent / "shared" / "data" / "imagenet-sample"
MARK_START, MARK_END = "<!-- collect:start -->", "<!-- collect:end -->"


def compute_rates(model, layers, x_batches, positions: int) -> dict[str, float]:
    """Activations per second per layer of each route, one timing each, on preloaded normalized batches."""
    import torch

    from generator.attribution import Attributor, RepeatedAttributor
    from generator.collect import crop_positions, positions_per_image

    shapes = model.layer_shapes()
    counts = {name: positions_per_image(shapes[name], positions) for name in layers}
    routes = {"before": RepeatedAttributor(model, layers), "after": Attributor(model, layers, counts)}
    batch = len(x_batches[0])
    pos = [{name: torch.from_numpy(crop_positions(0, name, shapes[name], positions, range(i * batch, (i + 1) * batch)))
            for name in layers} for i in range(len(x_batches))]
    rates = {}
    for name, route in routes.items():
        start = time.perf_counter()
        for x, p in zip(x_batches, pos):
            route(x, p)
        rates[name] = len(x_batches) * batch * positions / (time.perf_counter() - start)
    assert routes["after"].fallback is None, "the shared-primal route fell back"
    return rates


def full_rate(model, layers, plan, positions: int, batch_size: int, workers: int) -> float:
    from generator.collect import collect_activations

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        collect_activations(model, layers, plan, {name: Path(tmp) / name for name in layers}, positions, batch_size,
                            0, workers=workers, device="cpu")
        return len(plan.crops) * positions / (time.perf_counter() - start)


def throughput(args) -> str:
    from bench_build import machine
    from generator.images import CropLoader, find_images, plan_samples
    from generator.models import load_model

    model = load_model("efficientnet_lite0")
    layers = list(model.default_layers)
    if not SAMPLE.is_dir():
        print(f"skipped: {SAMPLE.name} is absent (see tests/conftest.py)")
        sys.exit(0)
    plan = plan_samples(find_images(SAMPLE), 1, seed=0, max_images=args.images)
    loader = CropLoader(plan, model.input_size)
    x_batches = [model.normalize(loader.load(range(i * args.batch, (i + 1) * args.batch)))
                 for i in range(args.compute_batches)]
    # Rounds alternate every measurement, so that load from other tenants falls on all alike.
    runs: dict[tuple, list[float]] = {}
    for _ in range(args.rounds):
        for positions in args.positions:
            for route, rate in compute_rates(model, layers, x_batches, positions).items():
                runs.setdefault((positions, route), []).append(rate)
            for workers in args.workers:
                runs.setdefault((positions, workers), []).append(
                    full_rate(model, layers, plan, positions, args.batch, workers))
            print({k: [round(r, 1) for r in v] for k, v in runs.items() if k[0] == positions}, flush=True)
    rate = {key: statistics.median(values) for key, values in runs.items()}
    text = [f"efficientnet_lite0, layers {', '.join(layers)}, batch {args.batch}, on the CPU: {machine()}; "
            f"command: `python benchmarks/bench_collect.py{f' --images {args.images}' if args.images else ''} --write`. Activations per second per layer, medians of "
            f"{args.rounds} rounds, each timing every row once; compute: {args.compute_batches} batches of the "
            f"ImageNet sample decoded beforehand; full: {'the first' if args.images else 'all'} {len(plan.crops)} images of the sample, with "
            f"{', '.join(map(str, args.workers))} decoding processes.", "",
            "| positions per image | compute, before | compute, after | after / before |"
            + "".join(f" full, {w} worker{'s' * (w != 1)} (full / compute) |" for w in args.workers),
            "|---|---|---|---|" + "---|" * len(args.workers)]
    for positions in args.positions:
        after = rate[(positions, "after")]
        row = f"| {positions} | {rate[(positions, 'before')]:.1f} | {after:.1f} | " \
              f"{after / rate[(positions, 'before')]:.2f}x |"
        for workers in args.workers:
            row += f" {rate[(positions, workers)]:.1f} ({rate[(positions, workers)] / after:.2f}) |"
        text.append(row)
    return "\n".join(text)


_PEAK = """
import json, sys, torch
from pathlib import Path
import numpy as np
from PIL import Image
from generator.collect import collect_activations
from generator.images import SamplePlan
from generator.models import load_model
folder, crops = Path(sys.argv[1]), int(sys.argv[2])
Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(folder / "a.png")
model = load_model(sys.argv[3])
plan = SamplePlan([str(folder / "a.png")], [(40, 40)], [(0, 0, 0, 40, 40)] * crops, 0)
start = __import__("time").perf_counter()
collect_activations(model, ["conv"], plan, {"conv": folder / "conv"}, 9, 64, 0, workers=0)
seconds = __import__("time").perf_counter() - start
peak = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({"peak_kb": int(peak), "bytes": sum(p.stat().st_size for p in (folder / "conv").iterdir()),
                  "seconds": seconds}))
"""


def memory(args) -> str:
    from bench_build import machine

    lines = ["| activations | arrays on disk | peak resident memory | seconds |", "|---|---|---|---|"]
    for n in args.memory_rows:
        crops = -(-n // 9)
        with tempfile.TemporaryDirectory() as tmp:
            done = subprocess.run([sys.executable, "-c", _PEAK, tmp, str(crops), f"{ROOT / 'tests' / 'wide_model.py'}:wide"],
                                  capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
        if done.returncode:
            sys.exit(done.stderr[-3000:])
        run = json.loads(done.stdout.strip().splitlines()[-1])
        lines.append(f"| {crops * 9:,} | {run['bytes'] / 1e9:.2f} GB | {run['peak_kb'] / 1e6:.2f} GB | "
                     f"{run['seconds']:.0f} |")
        print(lines[-1], flush=True)
    return (f"Peak resident memory (VmHWM) of a collection in a process of its own, against the number of "
            f"activations: tests/wide_model.py:wide (one layer of 512 channels, 3 x 3 positions, all taken; "
            f"1,000 classes), batch 64, shards of 1,024 crops, on {machine()}; command: "
            f"`python benchmarks/bench_collect.py --memory`.\n\n" + "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", action="store_true", help="update the collection tables in BENCHMARKS.md")
    parser.add_argument("--memory", action="store_true", help="measure peak memory against N instead")
    parser.add_argument("--memory-rows", type=int, nargs="+", default=[62_500, 250_000, 1_000_000])
    parser.add_argument("--positions", type=int, nargs="+", default=[4, 1])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--images", type=int, default=0, help="the first N images of the sample (0: all)")
    parser.add_argument("--compute-batches", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from bench_build import write_section

    if args.memory:
        text = memory(args)
        start, end, title = "<!-- collect-memory:start -->", "<!-- collect-memory:end -->", "Activation collection: memory"
    else:
        text, start, end, title = throughput(args), MARK_START, MARK_END, "Activation collection"
    print(text)
    if args.write:
        write_section(title, start, end, text)


if __name__ == "__main__":
    main()
