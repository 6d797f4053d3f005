"""The icon renderer on a CUDA GPU: icon-steps per second and fidelity by model, number format and batch size.

    python benchmarks/bench_gpu.py                      # on the GPU, the issue's 80 px icons
    python benchmarks/bench_gpu.py --device cpu --smoke # the same code path, small, to try it first

Models: the default EfficientNet-Lite0 at blocks.4, and a ViT-S/16 at blocks.8 with seeded
random weights (benchmarks/vit_small.py; speed does not depend on the weights, and nothing
is downloaded; its icons are enlarged to its 224 px input). Rows: float32 with TF32 off
(exact), float32 with TF32 on for convolutions and matrix products (cuDNN's default), and
bfloat16; each at batch 32, 100 and the largest that fits ("max": the renderer's own memory
estimate, halved until a run succeeds). Speed is the median over `--repeats` timed runs of
`--steps` steps after a warm-up; fidelity is read after `--fidelity-steps` steps at the
first batch size, in float32, against the same directions for every row, so the rows
compare. Prints a markdown table per model and, with --json, writes the figures for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np
import torch

from generator.icons.render import IconSpec, fidelity, optimize_spec
from generator.images import CropLoader, default_photos, plan_samples
from generator.models import load_model
from generator.speedups import SpeedOptions, build_forward, bytes_per_icon, total_memory

MODELS = ("efficientnet_lite0=blocks.4", "benchmarks/vit_small.py:vit_small=blocks.8")


def directions(model, layer: str, count: int) -> torch.Tensor:
    """Centre activations of `count` crops of the embedded photographs: real directions, the same every run."""
    plan = plan_samples(default_photos(), max(1, -(-count // len(default_photos()))), seed=0)
    x = model.normalize(CropLoader(plan, model.input_size).load(range(min(count, len(plan.crops)))))
    with torch.no_grad():
        acts = model.capture([layer], x)[layer]  # as a map (N, C, H, W), a transformer's tokens too
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


def measure(model, layer: str, device, args) -> list[dict]:
    """One model's rows: every number format at every batch size ("max" resolved per format)."""
    for p in model.net.parameters():
        p.requires_grad_(False)
    scorer = build_forward(model, layer, device)
    formats = [("float32, TF32 off", "float32", False), ("float32, TF32 on", "float32", True),
               ("bfloat16", "bfloat16", False)]
    rows, vectors = [], None
    for label, precision, tf32 in formats:
        if device.type == "cpu" and tf32:
            continue  # TF32 is a CUDA number format
        set_tf32(tf32)
        forward = build_forward(model, layer, device, SpeedOptions(precision=precision), reads="centre")
        # The build keeps to a quarter of the memory and 128 icons (speedups/memory.py); here the most that fits.
        largest = max(1, int(total_memory(device) * 0.9 // bytes_per_icon(forward, args.size, device)))
        batches = [largest if b == "max" else int(b) for b in args.batches.split(",")]
        if vectors is None or len(vectors) < max(batches):
            vectors = directions(model, layer, max(batches))
        for batch, asked in zip(batches, args.batches.split(",")):
            while True:
                targets = torch.nn.functional.normalize(vectors[:batch].float(), dim=1).to(device)
                s = IconSpec(size_px=args.size, steps=args.steps, batch_size=batch, precision=precision)
                try:
                    speed = steps_per_second(forward, targets, s, device, args.steps, args.repeats)
                    break
                except torch.OutOfMemoryError:
                    torch.cuda.empty_cache()
                    if asked != "max" or batch == 1:
                        speed = None
                        break
                    batch //= 2  # the estimate was too hopeful: the largest that fits is below it
            row = {"format": label, "batch": batch, "asked": asked,
                   "icon_steps_per_s": None if speed is None else round(speed)}
            if speed is not None and asked == args.batches.split(",")[0]:
                s = IconSpec(size_px=args.size, steps=args.fidelity_steps, batch_size=batch, precision=precision)
                images, _ = optimize_spec(forward, targets, s, torch.Generator().manual_seed(0), device)
                set_tf32(False)  # fidelity is read in exact float32 for every row
                f = fidelity(model, layer, images, targets, device, scorer).numpy()
                set_tf32(tf32)
                row["fidelity_mean"], row["fidelity_min"] = round(float(f.mean()), 3), round(float(f.min()), 3)
            rows.append(row)
            print(json.dumps(row), flush=True)
        del forward
        if device.type == "cuda":
            torch.cuda.empty_cache()
    set_tf32(False)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", default=",".join(MODELS), help="model=layer, comma-separated")
    parser.add_argument("--size", type=int, default=80)
    parser.add_argument("--batches", default="32,100,max")
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fidelity-steps", type=int, default=256)
    parser.add_argument("--smoke", action="store_true", help="small sizes, to try the script on a CPU")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    if args.smoke:
        args.size, args.batches, args.steps, args.repeats, args.fidelity_steps = 32, "4,8", 2, 1, 4
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
    results = []
    for entry in args.models.split(","):
        spec, layer = entry.rsplit("=", 1)
        model = load_model(spec)
        results.append({"model": spec, "layer": layer, "rows": measure(model, layer, device, args)})
        del model
    for result in results:
        print(f"\nLayer {result['layer']} of {result['model']}, {args.size} px, on {name}, torch {torch.__version__}; "
              f"median of {args.repeats} runs of {args.steps} steps; fidelity after {args.fidelity_steps} steps at "
              f"the first batch size; command: `python benchmarks/bench_gpu.py`.\n")
        print("| number format | batch | icon-steps/s | fidelity mean / min |")
        print("|---|---|---|---|")
        for r in result["rows"]:
            speed = "out of memory" if r["icon_steps_per_s"] is None else f"{r['icon_steps_per_s']:,}"
            fid = f"{r['fidelity_mean']:.3f} / {r['fidelity_min']:.3f}" if "fidelity_mean" in r else ""
            batch = f"{r['batch']} (largest that fits)" if r["asked"] == "max" else str(r["batch"])
            print(f"| {r['format']} | {batch} | {speed} | {fid} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": name, "torch": torch.__version__, "size_px": args.size, "results": results}, f,
                      indent=1)


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
