"""The icon renderer on a CUDA GPU: icon-steps per second and fidelity by number format and batch size.

    python benchmarks/bench_gpu.py                      # on the GPU, the issue's 80 px icons
    python benchmarks/bench_gpu.py --device cpu --smoke # the same code path, small, to try it first

Rows: float32 with TF32 off (exact), float32 with TF32 on for convolutions and matrix
products (cuDNN's default), and bfloat16; each at several batch sizes. Speed is the
median over `--repeats` timed runs of `--steps` steps after a warm-up; fidelity is read
after `--fidelity-steps` steps at the first batch size, in float32, against the same
directions for every row, so the rows compare. The goal on an H100/H200 is 50,000
icon-steps/s at 80 px (a layer of 25,600 icons x 1,024 steps in under 10 minutes a try).
Prints a markdown table and, with --json, writes the figures for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np
import torch

from generator.collect import capture
from generator.icons.render import IconSpec, fidelity, optimize_spec
from generator.images import CropLoader, default_photos, plan_samples
from generator.models import load_model
from generator.speedups import SpeedOptions, build_forward


def directions(model, layer: str, count: int) -> torch.Tensor:
    """Centre activations of `count` crops of the embedded photographs: real directions, the same every run."""
    plan = plan_samples(default_photos(), max(1, -(-count // len(default_photos()))), seed=0)
    x = model.normalize(CropLoader(plan, model.input_size).load(range(min(count, len(plan.crops)))))
    with torch.no_grad():
        acts = capture(model.net, {layer: model.layer(layer)}, x)[layer]
    h, w = acts.shape[2:]
    vectors = acts[:, :, h // 2, w // 2]
    return vectors.repeat(-(-count // len(vectors)), 1)[:count]


def set_tf32(on: bool) -> None:
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def steps_per_second(forward, targets: torch.Tensor, s: IconSpec, device, steps: int, repeats: int) -> float:
    optimize_spec(forward, targets, s, torch.Generator().manual_seed(0), device, steps=2)  # warm-up: kernels, caches
    times = []
    for r in range(repeats):
        sync(device)
        start = time.perf_counter()
        optimize_spec(forward, targets, s, torch.Generator().manual_seed(r), device, steps=steps)
        sync(device)
        times.append(time.perf_counter() - start)
    return len(targets) * steps / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--layer", default="blocks.4")
    parser.add_argument("--size", type=int, default=80)
    parser.add_argument("--batches", default="128,256,512,1024")
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fidelity-steps", type=int, default=256)
    parser.add_argument("--smoke", action="store_true", help="small sizes, to try the script on a CPU")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    if args.smoke:
        args.size, args.batches, args.steps, args.repeats, args.fidelity_steps = 32, "4,8", 2, 1, 4
    device = torch.device(args.device)
    batches = [int(b) for b in args.batches.split(",")]
    model = load_model("efficientnet_lite0")
    for p in model.net.parameters():
        p.requires_grad_(False)
    vectors = directions(model, args.layer, max(batches))
    scorer = build_forward(model, args.layer, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
    rows = []
    formats = [("float32, TF32 off", "float32", False), ("float32, TF32 on", "float32", True),
               ("bfloat16", "bfloat16", False)]
    for label, precision, tf32 in formats:
        if device.type == "cpu" and tf32:
            continue  # TF32 is a CUDA number format
        set_tf32(tf32)
        forward = build_forward(model, args.layer, device, SpeedOptions(precision=precision), reads="centre")
        for batch in batches:
            targets = torch.nn.functional.normalize(vectors[:batch].float(), dim=1).to(device)
            s = IconSpec(size_px=args.size, steps=args.steps, batch_size=batch)
            try:
                speed = steps_per_second(forward, targets, s, device, args.steps, args.repeats)
            except torch.OutOfMemoryError:
                rows.append({"format": label, "batch": batch, "icon_steps_per_s": None})
                torch.cuda.empty_cache()
                continue
            row = {"format": label, "batch": batch, "icon_steps_per_s": round(speed)}
            if batch == batches[0]:
                s = IconSpec(size_px=args.size, steps=args.fidelity_steps, batch_size=batch)
                images, _ = optimize_spec(forward, targets, s, torch.Generator().manual_seed(0), device)
                set_tf32(False)  # fidelity is read in exact float32 for every row
                f = fidelity(model, args.layer, images, targets, device, scorer).numpy()
                set_tf32(tf32)
                row["fidelity_mean"], row["fidelity_min"] = round(float(f.mean()), 3), round(float(f.min()), 3)
            rows.append(row)
            print(json.dumps(row), flush=True)
    set_tf32(False)
    print(f"\nLayer {args.layer} of EfficientNet-Lite0, {args.size} px, on {name}, torch {torch.__version__}; "
          f"median of {args.repeats} runs of {args.steps} steps; fidelity after {args.fidelity_steps} steps at "
          f"batch {batches[0]}; command: `python benchmarks/bench_gpu.py`.\n")
    print("| number format | batch | icon-steps/s | fidelity mean / min |")
    print("|---|---|---|---|")
    for r in rows:
        speed = "out of memory" if r["icon_steps_per_s"] is None else f"{r['icon_steps_per_s']:,}"
        fid = f"{r['fidelity_mean']:.3f} / {r['fidelity_min']:.3f}" if "fidelity_mean" in r else ""
        print(f"| {r['format']} | {r['batch']} | {speed} | {fid} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": name, "torch": torch.__version__, "size_px": args.size, "layer": args.layer,
                       "rows": rows}, f, indent=1)


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
