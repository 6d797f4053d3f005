"""The icon renderer against a straightforward port of Lucid's recipe: speed and fidelity, one run.

    python benchmarks/bench_icons.py            # print the table
    python benchmarks/bench_icons.py --write    # also update BENCHMARKS.md and docs/contact-sheet.png

Both render the same 32 real directions (cells of the default atlas's 16 x 16 level at
blocks.4, from the embedded photographs) at 80 px for 256 steps, one after the other in
one process. Fidelity (the cosine between a direction and the centre activation of its
untransformed icon) is read every 8 steps of one long run of each. Speed comes from
short runs of each, alternating, so that noise on a shared machine hits both alike, each
in a fresh process with our malloc setting (bench_engine.py's workers): run in one
process, ours after the baseline is about 6% slower than before it, as the baseline's
larger heap is left behind (`--same-process` times them that way).
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

from baseline_render import baseline_render  # noqa: E402
from bench_build import machine, write_section  # noqa: E402
from bench_engine import RENDERER, fresh_process_rate  # noqa: E402

from generator.icons.render import IconSpec, fidelity, optimize_spec, pick_precision, prepare  # noqa: E402

CHECKPOINTS = (32, 64, 128, 256)
MARK_START, MARK_END = "<!-- icons:start -->", "<!-- icons:end -->"


def atlas_levels(layer: str, cache: str):
    """The grid levels of the default atlas at `layer`, built (or read from the cache) by the pipeline's stages."""
    from generator.config import load_config
    from generator.models import load_model
    from generator.pipeline import stage_activations, stage_grid, stage_images, stage_layout
    from generator.progress import Reporter

    cfg = load_config(None, {"cache": cache, "collect": {"layers": [layer]}})
    model = load_model(cfg.model.name)
    report = Reporter()
    plan, key = stage_images(cfg, cfg.path(cfg.cache), report)
    acts = stage_activations(cfg, model, [layer], plan, key, cfg.path(cfg.cache), report)[layer]
    layout = stage_layout(cfg, layer, acts, cfg.path(cfg.cache), report)
    return stage_grid(cfg, layer, acts, layout, cfg.path(cfg.cache), report), acts


def spread(level, count: int) -> np.ndarray:
    """Indices of `count` cells spread evenly over a level's cell list."""
    return np.linspace(0, len(level.cells) - 1, count).round().astype(int)


def warm_start_rows(model, layer, levels, size, batch, forward, scorer) -> list[str]:
    """Fidelity of 16 x 16 icons started from their 8 x 8 parents' icons against from noise, by step."""
    from generator.grid import parent_cells

    coarse, fine = (next(lv for lv in levels if lv.size == n) for n in (8, 16))
    settings = IconSpec(size_px=size, steps=128, batch_size=batch)
    unit = torch.nn.functional.normalize(torch.from_numpy(coarse.directions), dim=1)
    parents, _ = optimize_spec(forward, unit, settings, torch.Generator().manual_seed(0), torch.device("cpu"))
    pick = spread(fine, batch)
    pick = pick[parent_cells(fine, coarse)[pick] >= 0]
    targets = torch.nn.functional.normalize(torch.from_numpy(fine.directions[pick]), dim=1)
    start = (torch.arange(len(pick)), parents[parent_cells(fine, coarse)[pick]])
    runs = {}
    for name, begin in (("from noise", None), ("from the parent's icon", start)):
        runs[name] = Recorder(model, layer, targets, scorer=scorer)
        optimize_spec(forward, targets, settings, torch.Generator().manual_seed(1), torch.device("cpu"),
                 observe=runs[name], start=begin)
    steps = [16, 32, 48, 64, 96, 128]
    lines = ["| 16 x 16 icons, mean fidelity after | " + " | ".join(map(str, steps)) + " steps |",
             "|---|" + "---|" * len(steps)]
    for name, rec in runs.items():
        values = dict(rec.rows)
        lines.append(f"| {name} | " + " | ".join(f"{values[s]:.3f}" for s in steps) + " |")
    return lines


def whitening_rows(model, layer, act_folder, targets, plain, size, batch, forward, scorer):
    """Fidelity after 32, 64 and 128 steps of whitened icons, beside the plain run's."""
    from generator.icons.objectives import whitening

    s = torch.from_numpy(whitening(np.load(act_folder / "activations.npy", mmap_mode="r")))
    aims = torch.nn.functional.normalize(targets @ s, dim=1)
    run = Recorder(model, layer, targets, scorer=scorer)
    optimize_spec(forward, aims, IconSpec(size_px=size, steps=128, batch_size=batch),
             torch.Generator().manual_seed(0), torch.device("cpu"), observe=run)
    steps = [32, 64, 128]
    lines = ["| mean fidelity after | " + " | ".join(map(str, steps)) + " steps | min after 128 |",
             "|---|" + "---|" * (len(steps) + 1)]
    for name, rec in (("aimed at v", plain), ("aimed at S v", run)):
        values = dict(rec.rows)
        lines.append(f"| {name} | " + " | ".join(f"{values[k]:.3f}" for k in steps) +
                     f" | {rec.fid_at[128].min():.3f} |")
    return run, lines


class Recorder:
    """Mean fidelity every `every` steps, and the icons and per-icon fidelity at the checkpoints.

    `scorer` is a float32 network prepared once (prepare()'s); without one, each reading prepares its own.
    """

    def __init__(self, model, layer, targets, every=8, scorer=None):
        self.model, self.layer, self.targets, self.every, self.scorer = model, layer, targets, every, scorer
        self.rows: list[tuple[int, float]] = []  # step, mean fidelity
        self.images: dict[int, torch.Tensor] = {}
        self.fid_at: dict[int, np.ndarray] = {}

    def __call__(self, step, images):
        if step % self.every and step not in (16, 48):
            return
        with torch.no_grad():
            current = (images() if callable(images) else images).detach()
            fid = fidelity(self.model, self.layer, current, self.targets, forward=self.scorer)
        self.rows.append((step, float(fid.mean())))
        if step in CHECKPOINTS:
            self.images[step] = current.clone()
            self.fid_at[step] = fid.numpy()


def contact_sheet(rows: list[tuple[str, torch.Tensor, np.ndarray]], path: Path, per_row: int = 16) -> None:
    """Icons in rows, one row per method, each icon with its fidelity written under it."""
    size = rows[0][1].shape[-1]
    label_h, title_w = 14, 150
    width = title_w + per_row * (size + 4)
    height = len(rows) * (size + label_h + 8)
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (title, images, fid) in enumerate(rows):
        y = r * (size + label_h + 8) + 4
        draw.text((4, y + size // 2 - 6), title, fill="black")
        arrays = (images[:per_row].permute(0, 2, 3, 1).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
        for i, icon in enumerate(arrays):
            x = title_w + i * (size + 4)
            sheet.paste(Image.fromarray(icon), (x, y))
            draw.text((x + 2, y + size + 1), f"{fid[i]:.2f}", fill="black")
    sheet.save(path)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layer", default="blocks.4")
    parser.add_argument("--size", type=int, default=80)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--cache", default=str(ROOT / ".atlas-cache"))
    parser.add_argument("--timing-steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--precision", default="auto", choices=["auto", "float32", "bfloat16"])
    parser.add_argument("--same-process", action="store_true",
                        help="time both in this process, one after the other (the baseline's heap slows ours)")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    from generator.models import load_model

    model = load_model("efficientnet_lite0")
    for p in model.net.parameters():
        p.requires_grad_(False)
    levels, act_folder = atlas_levels(args.layer, args.cache)
    level16 = next(lv for lv in levels if lv.size == 16)
    directions = torch.from_numpy(level16.directions[spread(level16, args.batch)])
    targets = torch.nn.functional.normalize(directions, dim=1)

    # Ours as render_icons prepares it. Its malloc setting is process-wide, so the baseline,
    # in the same process, has it too.
    cpu = torch.device("cpu")
    precision = pick_precision(args.precision, cpu)
    settings = IconSpec(size_px=args.size, steps=args.steps, batch_size=args.batch)
    forward, scorer, settings = prepare(model, args.layer, cpu, settings.with_(precision=precision))

    # Fidelity along the way: one long run of each.
    base = Recorder(model, args.layer, targets, scorer=scorer)
    baseline_render(model, args.layer, directions, args.size, args.steps, seed=0, observe=base)
    ours = Recorder(model, args.layer, targets, scorer=scorer)
    optimize_spec(forward, targets, settings, torch.Generator().manual_seed(0), torch.device("cpu"), observe=ours)

    # Speed: short runs of each, alternating, so that noise on this shared machine hits both alike.
    base_s, ours_s = [], []
    if args.same_process:
        short = IconSpec(size_px=args.size, steps=args.timing_steps, batch_size=args.batch)
        for repeat in range(args.repeats):
            start = time.perf_counter()
            baseline_render(model, args.layer, directions, args.size, args.timing_steps, seed=repeat)
            base_s.append((time.perf_counter() - start) / args.timing_steps)
            start = time.perf_counter()
            optimize_spec(forward, targets, short, torch.Generator().manual_seed(repeat), torch.device("cpu"))
            ours_s.append((time.perf_counter() - start) / args.timing_steps)
    else:
        ours_config = RENDERER[precision]
        for _ in range(args.repeats):
            for config, times in (("baseline, freed memory kept", base_s), (ours_config, ours_s)):
                rate = fresh_process_rate(config, args.layer, args.size, args.batch, args.timing_steps)
                times.append(args.batch / rate)
    step_base, step_ours = statistics.median(base_s), statistics.median(ours_s)
    rate_base, rate_ours = args.batch / step_base, args.batch / step_ours
    target = dict(base.rows)[128]
    reach_step = next((st for st, f in ours.rows if f >= target), None)
    reach_s = reach_step * step_ours if reach_step else None
    base_128 = 128 * step_base
    lines = [
        f"Layer {args.layer} of EfficientNet-Lite0, {args.size} px, batch {args.batch}, {args.steps} steps, 32 "
        f"directions from the default atlas; ours in {precision} (the baseline in float32); {machine()}; "
        f"command: `python benchmarks/bench_icons.py --write`. "
        f"Speed: median over {args.repeats} alternating runs of {args.timing_steps} steps each, "
        f"{'both in this process' if args.same_process else 'each in a fresh process with our malloc setting'}; "
        f"fidelity: one "
        f"{args.steps}-step run each; time to a fidelity: steps needed times the median step time.",
        "",
        "| | baseline (Lucid recipe, plain port) | ours | ratio |",
        "|---|---|---|---|",
        f"| icon-steps per second | {rate_base:.0f} | {rate_ours:.0f} | **{rate_ours / rate_base:.2f}x** |",
    ]
    for step in CHECKPOINTS:
        fb, fo = base.fid_at[step], ours.fid_at[step]
        lines.append(f"| fidelity after {step} steps (mean / median / min) | {fb.mean():.3f} / {np.median(fb):.3f} / "
                     f"{fb.min():.3f} | {fo.mean():.3f} / {np.median(fo):.3f} / {fo.min():.3f} | |")
    reach = f"{reach_s:.1f} s ({reach_step} steps)" if reach_step else "not reached"
    lines.append(f"| time to the baseline's 128-step mean fidelity ({target:.3f}) | {base_128:.1f} s "
                 f"(128 steps) | {reach} | {'**%.2fx**' % (base_128 / reach_s) if reach_step else ''} |")
    lines += ["", "Warm start. Every icon above starts from noise. Here the 8 x 8 level is rendered for 128 steps, "
              "then 16 x 16 cells from noise and from their parent cell's icon; a build runs warm-started icons "
              "for three quarters of the steps, where they match the cold start's full-length fidelity:", ""]
    lines += warm_start_rows(model, args.layer, levels, args.size, args.batch, forward, scorer)
    whitened, whiten_lines = whitening_rows(model, args.layer, act_folder, targets, ours, args.size, args.batch,
                                            forward, scorer)
    lines += ["", "Whitening (Lucid's option, `icons.whiten`): the same directions, each icon aimed at S v, S the "
              "inverse of the layer's activation second moments (ridge 0.1 of the mean eigenvalue), 128 steps; "
              "fidelity is read against v in both rows:", ""] + whiten_lines
    text = "\n".join(lines)
    print(text)
    if args.write:
        sheet = ROOT / "docs" / "contact-sheet.png"
        sheet.parent.mkdir(exist_ok=True)
        contact_sheet([(f"baseline, {s} steps", base.images[s], base.fid_at[s]) for s in (128, 256)]
                      + [(f"ours, {s} steps", ours.images[s], ours.fid_at[s]) for s in (128, 256)]
                      + [("ours whitened, 128", whitened.images[128], whitened.fid_at[128])], sheet)
        text += "\n\n![Contact sheet: the first 16 icons of each run, fidelity under each](docs/contact-sheet.png)"
        write_section("Icon renderer against the baseline", MARK_START, MARK_END, text)


if __name__ == "__main__":
    main()
