"""What each part of the icon engine buys: icon-steps per second, one change added at a time.

    python benchmarks/bench_engine.py            # print the table
    python benchmarks/bench_engine.py --write    # also update BENCHMARKS.md

The malloc setting is process-wide and one-way, so every configuration runs in a fresh
process of its own; rounds alternate the configurations so that noise on a shared
machine hits all alike, and the table gives medians. Same layer and size as
bench_icons.py, at its batch (32) and at a build's on this CPU (64); random unit
directions (speed does not depend on them).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

MARK_START, MARK_END = "<!-- engine:start -->", "<!-- engine:end -->"
# name: (one-pass padding, oneDNN convolutions, keep freed memory, precision, resample's gradient by its
# inverse map, network as one autograd node, only the layer's centre through its last block);
# "baseline" rows run baseline_render. Every other row has the renderer's own step around the network
# (one resample for the transforms, fused Adam).
CONFIGS = {
    "baseline (plain port)": None,
    "baseline, freed memory kept": "keep",
    "folded, channels-last (float32)": (False, False, False, "float32", False, False, False),
    "+ padding in one pass": (True, False, False, "float32", False, False, False),
    "+ convolutions as oneDNN forward kernels both ways, clips fused": (True, True, False, "float32", False, False,
                                                                        False),
    "+ freed memory kept": (True, True, True, "float32", False, False, False),
    "+ bfloat16 (AMX)": (True, True, True, "bfloat16", False, False, False),
    "+ resample's gradient by its inverse map, normalized in the same pass": (True, True, True, "bfloat16", True,
                                                                              False, False),
    "+ the network as one autograd node (tape)": (True, True, True, "bfloat16", True, True, False),
    "+ only the layer's centre through its last block": (True, True, True, "bfloat16", True, True, True),
}
# The renderer as render_icons runs it, per precision (bench_icons.py times these).
RENDERER = {"bfloat16": "+ only the layer's centre through its last block", "float32": "the renderer in float32"}
_EXTRA = {"the renderer in float32": (True, True, True, "float32", True, True, True)}


def worker(name: str, layer: str, size: int, batch: int, steps: int) -> float:
    import torch

    from generator.icons import IconSpec, render, transform
    from generator.models import load_model
    from generator.speedups import network
    from generator.speedups.memory import bytes_per_icon, keep_freed_memory

    model = load_model("efficientnet_lite0")
    for p in model.net.parameters():
        p.requires_grad_(False)
    cpu = torch.device("cpu")
    config = {**CONFIGS, **_EXTRA}[name]
    if config is None or config == "keep":
        from baseline_render import baseline_render

        if config == "keep":
            # The most malloc will keep, not our renderer's sizing: the baseline's working set is larger
            # than ours, and a larger setting reads about 2% faster for it.
            keep_freed_memory(2**31 - 1)
        directions = torch.randn(batch, model.layer_shapes()[layer][0], generator=torch.Generator().manual_seed(0))
        baseline_render(model, layer, directions, size, 2)
        start = time.perf_counter()
        baseline_render(model, layer, directions, size, steps)
        return batch * steps / (time.perf_counter() - start)
    pad, fuse, keep, precision, inverse, tape, centre = config
    if not inverse:
        # The exact adjoint of the resample (autograd's scatter), and normalizing after it as its own ops.
        transform.TRANSFORMS["lucid"] = lambda images, g: torch.nn.functional.grid_sample(
            images, transform.random_views(len(images), images.shape[-1], g, images.device)[0], mode="bilinear",
            padding_mode="zeros", align_corners=False)
        network.LayerFn.signed = lambda self, images: self(images * 0.5 + 0.5)
    options = network.SpeedOptions(precision=precision, same_padding=pad, fuse=fuse, tape=tape, centre_only=centre)
    forward = network.build_forward(model, layer, cpu, options, reads="centre")
    if keep:
        keep_freed_memory(bytes_per_icon(forward, size, cpu) * batch)
    targets = torch.nn.functional.normalize(
        torch.randn(batch, model.layer_shapes()[layer][0], generator=torch.Generator().manual_seed(0)), dim=1)
    spec = IconSpec(size_px=size, steps=steps, batch_size=batch)
    render.optimize_spec(forward, targets, spec, torch.Generator().manual_seed(0), cpu, steps=2)
    start = time.perf_counter()
    render.optimize_spec(forward, targets, spec, torch.Generator().manual_seed(1), cpu)
    return batch * steps / (time.perf_counter() - start)


def fresh_process_rate(name: str, layer: str, size: int, batch: int, steps: int) -> float:
    """Icon-steps per second of configuration `name`, measured in a fresh process of its own."""
    out = subprocess.run([sys.executable, __file__, "--worker", name, "--layer", layer, "--size", str(size),
                          "--batch", str(batch), "--steps", str(steps)],
                         check=True, capture_output=True, text=True, cwd=ROOT)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layer", default="blocks.4")
    parser.add_argument("--size", type=int, default=80)
    parser.add_argument("--batches", default="32,64")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)  # a worker's
    parser.add_argument("--worker")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.layer, args.size, args.batch, args.steps)))
        return

    from bench_build import machine, write_section

    batches = [int(b) for b in args.batches.split(",")]
    rates: dict[tuple[str, int], list[float]] = {(name, b): [] for name in CONFIGS for b in batches}
    for _ in range(args.rounds):
        for name, batch in rates:
            rates[name, batch].append(fresh_process_rate(name, args.layer, args.size, batch, args.steps))
    median = {key: statistics.median(values) for key, values in rates.items()}
    lines = [
        f"Layer {args.layer} of EfficientNet-Lite0, {args.size} px; each configuration in a fresh process, medians "
        f"of {args.rounds} alternating rounds of {args.steps} steps; {machine()}; command: "
        "`python benchmarks/bench_engine.py --write`. Icon-steps per second, and against the baseline at the "
        "same batch:",
        "",
        "| configuration | " + " | ".join(f"batch {b}" for b in batches) + " |",
        "|---|" + "---|" * len(batches),
    ]
    for name in CONFIGS:
        lines.append(f"| {name} | " + " | ".join(
            f"{median[name, b]:.0f} ({median[name, b] / median['baseline (plain port)', b]:.2f}x)"
            for b in batches) + " |")
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_section("Icon renderer: what each part buys", MARK_START, MARK_END, text)


if __name__ == "__main__":
    main()
