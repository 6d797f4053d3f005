"""Icon-steps per second of the renderer against batch size: where larger batches stop paying.

    python benchmarks/bench_batch.py [--layer blocks.4] [--size 80] [--batches 8,16,32,64]

The batch sizes run interleaved, a few steps each, so machine noise hits all alike;
figures are medians over repeats. The CPU cap of the automatic batch size
(`generator/speedups/memory.py`) comes from this table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_build import machine  # noqa: E402

from generator.icons.render import IconSpec, optimize_spec, prepare  # noqa: E402
from generator.speedups import pick_precision  # noqa: E402
from generator.models import load_model  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--layer", default="blocks.4")
    parser.add_argument("--size", type=int, default=80)
    parser.add_argument("--batches", default="8,16,32,64")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (e.g. --device cuda --batches 100)")
    parser.add_argument("--precision", default="auto", choices=["auto", "float32", "bfloat16"])
    args = parser.parse_args()
    model = load_model("efficientnet_lite0")
    device = torch.device(args.device)
    channels = model.layer_shapes()[args.layer][0]
    batches = [int(b) for b in args.batches.split(",")]
    settings = IconSpec(size_px=args.size, steps=args.steps, batch_size=max(batches))
    precision = pick_precision(args.precision, device)
    forward, _, settings = prepare(model, args.layer, device, settings.with_(precision=precision))  # as render_icons runs it
    rates: dict[int, list[float]] = {b: [] for b in batches}
    for repeat in range(args.repeats + 1):
        for b in batches:
            g = torch.Generator().manual_seed(repeat)
            targets = torch.nn.functional.normalize(torch.randn(b, channels, generator=g), dim=1).to(device)
            start = time.perf_counter()
            optimize_spec(forward, targets, settings, g, device)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if repeat:  # the first round warms up
                rates[b].append(b * args.steps / (time.perf_counter() - start))
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else machine()
    command = " ".join(["python benchmarks/bench_batch.py", *sys.argv[1:]])
    print(f"{args.layer} of EfficientNet-Lite0, {args.size} px, {precision}, {where}; medians of {args.repeats} runs "
          f"of {args.steps} steps; command: `{command}`.\n")
    print("| batch | " + " | ".join(map(str, batches)) + " |")
    print("|---|" + "---|" * len(batches))
    print("| icon-steps per second | " + " | ".join(f"{statistics.median(rates[b]):.0f}" for b in batches) + " |")


if __name__ == "__main__":
    main()
