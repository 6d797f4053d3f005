"""The renderer's step now against the step at an earlier commit, interleaved in one process.

    python benchmarks/ab_step.py HEAD~1            # batch 32, blocks.4, 80 px
    python benchmarks/ab_step.py 8c3637d --rounds 24

The earlier commit's `generator/` package is unpacked (git archive) under another name,
so both renderers load side by side; short runs alternate between them, so that the
noise of this shared machine hits both alike. Fresh processes per run (bench_engine.py)
differ from one another by more than a change of a few per cent; in one process the
ratio of medians repeats to about 1%. Both use the malloc setting of the newer one.
"""

from __future__ import annotations

import argparse
import importlib
import io
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def load_base(rev: str, folder: Path):
    """The `generator` package as it was at `rev`, importable as `generator_base`."""
    archive = subprocess.run(["git", "archive", rev, "generator"], cwd=ROOT, check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    (folder / "generator").rename(folder / "generator_base")
    sys.path.insert(0, str(folder))
    return importlib.import_module("generator_base")


def step_runner(package: str, model, args):
    """(targets, generator) -> None: `steps` steps of the renderer as `package` runs it, in the precision it
    picks on this CPU, through the commit's own API (IconSpec and speedups/, or RenderSettings and icons/network)."""
    cpu = torch.device("cpu")
    render = importlib.import_module(f"{package}.icons.render")
    if hasattr(render, "optimize_spec"):
        speedups = importlib.import_module(f"{package}.speedups")
        precision = speedups.pick_precision("auto", cpu)
        forward = speedups.build_forward(model, args.layer, cpu, speedups.SpeedOptions(precision=precision),
                                         reads="centre")
        spec = render.IconSpec(size_px=args.size, steps=args.steps, batch_size=args.batch)
        return lambda targets, g: render.optimize_spec(forward, targets, spec, g, cpu)
    network = importlib.import_module(f"{package}.icons.network")
    forward = network.layer_fn(model, args.layer, cpu, network.pick_precision("auto", cpu))
    settings = render.RenderSettings(size_px=args.size, steps=args.steps, batch_size=args.batch)
    return lambda targets, g: render.optimize(forward, targets, settings, g, cpu)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("rev", help="the earlier commit")
    parser.add_argument("--layer", default="blocks.4")
    parser.add_argument("--size", type=int, default=80)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=16)
    args = parser.parse_args()
    from generator.speedups.memory import bytes_per_icon, keep_freed_memory

    cpu = torch.device("cpu")
    with tempfile.TemporaryDirectory() as folder:
        load_base(args.rev, Path(folder))
        runs = {}
        for name, package in (("base", "generator_base"), ("now", "generator")):
            model = importlib.import_module(f"{package}.models").load_model("efficientnet_lite0")
            for p in model.net.parameters():
                p.requires_grad_(False)
            channels = model.layer_shapes()[args.layer][0]
            targets = torch.nn.functional.normalize(
                torch.randn(args.batch, channels, generator=torch.Generator().manual_seed(0)), dim=1)
            runs[name] = (step_runner(package, model, args), targets)
        forward = importlib.import_module("generator.speedups").build_forward(
            importlib.import_module("generator.models").load_model("efficientnet_lite0"), args.layer, cpu)
        keep_freed_memory(bytes_per_icon(forward, args.size, cpu) * args.batch)
        rates: dict[str, list[float]] = {name: [] for name in runs}
        for r in range(args.rounds + 1):
            for name in (("base", "now") if r % 2 else ("now", "base")):
                run, targets = runs[name]
                start = time.perf_counter()
                run(targets, torch.Generator().manual_seed(r))
                if r:  # the first round warms up
                    rates[name].append(args.batch * args.steps / (time.perf_counter() - start))
    median = {name: statistics.median(v) for name, v in rates.items()}
    print(f"{args.layer}, {args.size} px, batch {args.batch}, {args.rounds} interleaved rounds of {args.steps} "
          f"steps; icon-steps per second, medians: {args.rev} {median['base']:.0f}, now {median['now']:.0f}, "
          f"ratio {median['now'] / median['base']:.3f}")


if __name__ == "__main__":
    main()
