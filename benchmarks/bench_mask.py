"""Importance masks (icons.mask): what gathering them costs a step, and what they look like, in one run.

    python benchmarks/bench_mask.py            # print the table
    python benchmarks/bench_mask.py --write    # also update BENCHMARKS.md and docs/mask-<layer>.png

Per layer of the default model, 32 real directions (cells of the default atlas's 16 x 16
level) are rendered at 80 px in float32 by the layer's method under `icons.method = "auto"`
(MACO at blocks.4, Fourier at blocks.5), with and without the mask, in alternating rounds
of `--steps` steps from the same seed, so that both see the same machine; the figure is
the median of the rounds' seconds and their ratio. The icons are the same with the mask as
without it (tests/test_masks.py), so only time is compared. The contact sheet shows the first
16 icons after 128 steps, whole and cut by their masks over white, as the viewer draws them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_build import machine, write_section  # noqa: E402
from bench_icons import atlas_levels, spread  # noqa: E402

from generator.icons.param import natural_amplitude  # noqa: E402
from generator.icons.render import IconSpec, importance_mask, optimize_spec, prepare  # noqa: E402

MARK_START, MARK_END = "<!-- mask:start -->", "<!-- mask:end -->"
METHOD = {"blocks.4": "maco", "blocks.5": "fourier"}  # what `auto` picks at 128 steps (BENCHMARKS.md)


def timed(forward, targets, spec, amplitude, steps: int, masked: bool) -> tuple[float, torch.Tensor, torch.Tensor]:
    importance = torch.zeros(len(targets), spec.size_px, spec.size_px) if masked else None
    start = time.perf_counter()
    images, _ = optimize_spec(forward, targets, spec, torch.Generator().manual_seed(0), torch.device("cpu"),
                              steps=steps, amplitude=amplitude, importance=importance)
    return time.perf_counter() - start, images, importance


def sheet(images: torch.Tensor, mask: np.ndarray, path: Path, per_row: int = 16) -> None:
    """Two rows: the icons whole, and cut by their masks over white."""
    icons = (images[:per_row].permute(0, 2, 3, 1).clamp(0, 1).numpy() * 255).round()
    alpha = mask[:per_row, :, :, None].astype(np.float64) / 255
    cut = icons * alpha + 255 * (1 - alpha)
    size, title_w = icons.shape[1], 90
    out = Image.new("RGB", (title_w + per_row * (size + 4), 2 * (size + 8)), "white")
    draw = ImageDraw.Draw(out)
    for r, (title, rows) in enumerate((("whole", icons), ("masked", cut))):
        y = r * (size + 8) + 4
        draw.text((4, y + size // 2 - 6), title, fill="black")
        for i, icon in enumerate(rows):
            out.paste(Image.fromarray(icon.round().astype(np.uint8)), (title_w + i * (size + 4), y))
    out.save(path)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", default="blocks.4,blocks.5")
    parser.add_argument("--size", type=int, default=80)
    parser.add_argument("--count", type=int, default=32)
    parser.add_argument("--steps", type=int, default=16, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=6, help="rounds each way, alternating")
    parser.add_argument("--cache", default=str(ROOT / ".cache" / "bench"))
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()

    from generator.images import CropLoader, default_photos, plan_samples
    from generator.models import load_model

    model = load_model("efficientnet_lite0")
    plan = plan_samples(default_photos(), 4, 0)
    picks = np.unique(np.linspace(0, len(plan.crops) - 1, min(256, len(plan.crops))).round().astype(int))
    amplitude = natural_amplitude(CropLoader(plan, model.input_size).load(picks.tolist()), args.size)
    rows, sheets = [], []
    for layer in args.layers.split(","):
        levels, _ = atlas_levels(layer, args.cache)
        level16 = next(lv for lv in levels if lv.size == 16)
        targets = torch.nn.functional.normalize(torch.from_numpy(level16.directions[spread(level16, args.count)]), dim=1)
        method = METHOD.get(layer, "fourier")
        spec = IconSpec(size_px=args.size, steps=128, batch_size=args.count, param=method, precision="float32")
        forward, _, spec = prepare(model, layer, torch.device("cpu"), spec)
        timed(forward, targets, spec, amplitude, 2, True)  # warm-up: allocations, oneDNN's kernels
        seconds = {False: [], True: []}
        for _ in range(args.rounds):
            for masked in (False, True):
                seconds[masked].append(timed(forward, targets, spec, amplitude, args.steps, masked)[0])
        plain, masked = statistics.median(seconds[False]), statistics.median(seconds[True])
        rows.append(f"| {layer} | {method} | {args.count * args.steps / plain:.1f} | "
                    f"{args.count * args.steps / masked:.1f} | {masked / plain:.3f} |")
        print(rows[-1], flush=True)
        _, images, importance = timed(forward, targets, spec, amplitude, 128, True)
        sheets.append((layer, images, importance_mask(importance)))

    table = "\n".join(["| layer | method | icon-steps/s without masks | with masks | time ratio |",
                       "|---|---|---|---|---|", *rows])
    if args.write:
        text = (f"{args.count} directions per layer from the default atlas's 16 x 16 level, {args.size} px, float32, "
                f"batch {args.count}; median of {args.rounds} alternating rounds of {args.steps} steps each way; "
                f"{machine()}; command: `python benchmarks/bench_mask.py --write`.\n\n" + table)
        for layer, images, mask in sheets:
            name = f"mask-{layer.replace('.', '-')}.png"
            sheet(images, mask, ROOT / "docs" / name)
            text += f"\n\n![{layer}: 16 icons after 128 steps, whole and cut by their importance masks](docs/{name})"
        write_section("Icons: importance masks", MARK_START, MARK_END, text)
    print(table)


if __name__ == "__main__":
    main()
