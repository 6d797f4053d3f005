"""UMAP against t-SNE on the same real activations, by the layout-trust measures the site shows.

    python benchmarks/bench_trust.py                 # print the table
    python benchmarks/bench_trust.py --write         # also update BENCHMARKS.md
    python benchmarks/bench_trust.py --crops 4       # crops per image of the ImageNet sample

Data: `../shared/data/imagenet-sample` (500 images), `--crops` crops an image and the default
preset's positions per crop, collected at the default model's default layers through the
pipeline's own stages (cached in `--cache`). Each layer is laid out by both methods with the
build's settings and seed; then, on the same seeded rows for both: the share of each row's 10
nearest neighbours in activation space (cosine, trust.py) kept among its 10 nearest on the map,
and scikit-learn's trustworthiness (10 neighbours, cosine, 5,000 rows).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_build import machine, write_section  # noqa: E402

MARK_START, MARK_END = "<!-- trust:start -->", "<!-- trust:end -->"
SAMPLE = ROOT.parent / "shared" / "data" / "imagenet-sample"
ROWS = 5_000


def collect(crops: int, cache: Path) -> tuple[dict[str, Path], object]:
    from generator import pipeline
    from generator.config import load_config
    from generator.models import load_model
    from generator.progress import Reporter

    cfg = load_config(None, {"images": {"dir": str(SAMPLE), "crops_per_image": crops}, "cache": str(cache)})
    report = Reporter()
    model = load_model(cfg.model.name)
    plan, key = pipeline.stage_images(cfg, cache, report)
    return pipeline.stage_activations(cfg, model, list(model.default_layers), plan, key, cache, report), cfg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crops", type=int, default=4)
    parser.add_argument("--cache", default=str(ROOT / ".atlas-cache"))
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    if not SAMPLE.is_dir():
        sys.exit("needs ../shared/data/imagenet-sample")
    from generator import trust
    from generator.layout import fit_layout

    folders, cfg = collect(args.crops, Path(args.cache))
    lay = cfg.layout
    rows = []
    for layer, folder in folders.items():
        vectors = np.load(folder / "activations.npy", mmap_mode="r")
        n = len(vectors)
        sample = np.sort(np.random.default_rng([cfg.seed, 5]).choice(n, min(n, ROWS), replace=False))
        for method in ("umap", "tsne"):
            start = time.perf_counter()
            xy = fit_layout(vectors, method, lay.n_neighbors, lay.min_dist, cfg.seed, lay.clip_percentile,
                            fit_sample=lay.fit_sample)
            seconds = time.perf_counter() - start
            kept = trust.neighbours_kept(vectors, xy, sample)
            tw = trust.global_trustworthiness(vectors, xy, cfg.seed)
            rows.append((layer, method, n, seconds, tw, float(kept.mean()) * trust.K, float((kept <= 0.1).mean())))
            print(rows[-1], flush=True)
    lines = [f"Machine: {machine()}. `python benchmarks/bench_trust.py --crops {args.crops}`: the ImageNet sample, "
             f"{args.crops} crops an image, the default preset's layout settings (seed {cfg.seed}); measures on the "
             f"same {ROWS:,} seeded rows (or all) for both methods. The first UMAP fit of a process includes numba's "
             "compilation (about 20 s).", "",
             "| layer | method | activations | layout s | trustworthiness | neighbours kept (of 10), mean | "
             "rows keeping at most 1 |", "|---|---|---|---|---|---|---|"]
    for layer, method, n, seconds, tw, mean, poor in rows:
        lines.append(f"| {layer} | {method} | {n:,} | {seconds:.1f} | {tw:.3f} | {mean:.2f} | {poor:.0%} |")
    table = "\n".join(lines)
    print(table)
    if args.write:
        write_section("Layout trust: UMAP and t-SNE on the same activations", MARK_START, MARK_END, table)


if __name__ == "__main__":
    main()
