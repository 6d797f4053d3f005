"""Time, peak memory and trustworthiness of the layout: a full UMAP fit against fit-on-a-sample-then-place.

    python benchmarks/bench_layout.py                  # print the table
    python benchmarks/bench_layout.py --write          # also update BENCHMARKS.md

Data: synthetic stand-ins for post-ReLU activations, written as (N, 512) float16 .npy memmaps
in a temporary folder the way `generator/collect.py` writes activations: a seeded mixture of
200 anisotropic clusters (20 groups of 10; each cluster spread along 8 random directions,
plus isotropic noise), clipped at zero. Each layout runs in a fresh child process, so its
peak RSS (`resource.getrusage`, which counts the memmap's pages it has read) is its own; the
child compiles UMAP's numba code on a small fit first, and that warm-up is not timed.
Trustworthiness (`sklearn.manifold.trustworthiness`, 10 neighbours, cosine) is computed on
one seeded sample of 5,000 rows, the same rows for every layout of one data set.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_build import machine, write_section  # noqa: E402

MARK_START, MARK_END = "<!-- layout:start -->", "<!-- layout:end -->"
DIMS, CLUSTERS, GROUPS, RANK = 512, 200, 20, 8
EVAL_ROWS = 5_000


def write_clustered(path: Path, n: int, seed: int = 0, chunk: int = 50_000) -> None:
    """(n, 512) float16 .npy memmap of the clustered stand-in, written chunk by chunk."""
    rng = np.random.default_rng(seed)
    groups = np.maximum(rng.normal(0, 1, (GROUPS, DIMS)), 0) * 2
    centres = np.maximum(groups[np.arange(CLUSTERS) % GROUPS] + rng.normal(0, 0.7, (CLUSTERS, DIMS)), 0)
    spreads = rng.normal(0, 1, (CLUSTERS, RANK, DIMS)) * rng.uniform(1, 6, (CLUSTERS, RANK, 1)) * 4 / np.sqrt(DIMS)
    weights = rng.dirichlet(np.full(CLUSTERS, 2.0))  # uneven cluster sizes, as classes of a data set are
    out = np.lib.format.open_memmap(path, "w+", np.float16, (n, DIMS))
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        label = rng.choice(CLUSTERS, m, p=weights)
        spread = np.einsum("nr,nrd->nd", rng.normal(0, 1, (m, RANK)), spreads[label])
        out[start:start + m] = np.maximum(centres[label] + spread + rng.normal(0, 0.3, (m, DIMS)), 0)
    out.flush()
    del out


def child(data: str, route: str, fit_sample: int, out: str) -> None:
    """Lay out one data set in this process and print seconds and peak RSS as JSON."""
    from generator import layout

    warm = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32)
    layout.fit_layout(warm, "umap", 20, 0.25, 0, fit_sample=300)  # numba compiles here, untimed
    vectors = np.load(data, mmap_mode="r")
    start = time.perf_counter()
    if route == "transform":
        xy = umap_transform(vectors, fit_sample)
    else:
        xy = layout.fit_layout(vectors, "umap", 20, 0.25, 0, fit_sample=fit_sample)
    seconds = time.perf_counter() - start
    np.save(out, xy)
    print(json.dumps({"seconds": seconds, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def umap_transform(vectors, fit_sample: int, rows: int = 50_000) -> np.ndarray:
    """The alternative to neighbour placement: UMAP fitted on the same sample, `transform` on the rest."""
    import umap

    from generator.layout import normalize_layout

    n = len(vectors)
    fitted = np.sort(np.random.default_rng([0, 3]).choice(n, fit_sample, replace=False))
    reducer = umap.UMAP(n_components=2, metric="cosine", n_neighbors=20, min_dist=0.25, random_state=0, n_jobs=1)
    xy = np.empty((n, 2))
    xy[fitted] = reducer.fit_transform(np.asarray(vectors[fitted], np.float32))
    rest = np.setdiff1d(np.arange(n), fitted)
    for start in range(0, len(rest), rows):
        part = rest[start:start + rows]
        xy[part] = reducer.transform(np.asarray(vectors[part], np.float32))
    return normalize_layout(xy, 1.0)


def run(data: Path, route: str, fit_sample: int, folder: Path) -> dict:
    out = folder / f"xy-{route}-{fit_sample}-{data.stem}.npy"
    done = subprocess.run([sys.executable, __file__, "--child", str(data), route, str(fit_sample), str(out)],
                          check=True, capture_output=True, text=True, cwd=ROOT)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["xy"] = np.load(out)
    return result


def trust(data: Path, xy: np.ndarray) -> float:
    from sklearn.manifold import trustworthiness

    vectors = np.load(data, mmap_mode="r")
    rows = np.sort(np.random.default_rng(1).choice(len(vectors), EVAL_ROWS, replace=False))
    return float(trustworthiness(np.asarray(vectors[rows], np.float32), xy[rows], n_neighbors=10, metric="cosine"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--compare", type=int, default=100_000, help="rows of the set where the full fit runs too")
    parser.add_argument("--samples", default="25000,50000", help="fit_sample values tried on that set")
    parser.add_argument("--large", type=int, default=1_000_000, help="rows of the large set (0 skips it)")
    parser.add_argument("--large-sample", type=int, default=50_000, help="fit_sample on the large set")
    parser.add_argument("--no-transform", action="store_true", help="skip the umap.transform row")
    parser.add_argument("--write", action="store_true", help="update the layout table in BENCHMARKS.md")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        data, route, fit_sample, out = args.child
        child(data, route, int(fit_sample), out)
        return
    samples = [int(s) for s in args.samples.split(",") if s]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        small = folder / f"clustered-{args.compare}.npy"
        write_clustered(small, args.compare)
        plan = [("full UMAP fit", "place", args.compare)]
        plan += [(f"fit {s:,} + place by neighbours", "place", s) for s in samples]
        if not args.no_transform:
            plan.append((f"fit {max(samples):,} + `umap.transform`", "transform", max(samples)))
        for name, route, fit_sample in plan:
            result = run(small, route, fit_sample, folder)
            rows.append((name, args.compare, result, trust(small, result["xy"])))
            print(f"{name}, {args.compare} rows: {result['seconds']:.0f} s", flush=True)
        if args.large:
            large = folder / f"clustered-{args.large}.npy"
            write_clustered(large, args.large)
            name = f"fit {args.large_sample:,} + place by neighbours"
            result = run(large, "place", args.large_sample, folder)
            rows.append((name, args.large, result, trust(large, result["xy"])))
            print(f"{name}, {args.large} rows: {result['seconds']:.0f} s", flush=True)
    command = " ".join(["python benchmarks/bench_layout.py", *sys.argv[1:]])
    lines = ["| route | rows | seconds | peak RSS (MB) | trustworthiness (10 neighbours) |", "|---|---|---|---|---|"]
    for name, n, result, tw in rows:
        lines.append(f"| {name} | {n:,} | {result['seconds']:.0f} | {result['rss_mb']:.0f} | {tw:.4f} |")
    text = (f"UMAP layouts of ({DIMS}-d, float16 memmap) clustered synthetic activations, "
            f"20 neighbours, min_dist 0.25, on {machine()}; command: `{command}`.\n\n" + "\n".join(lines))
    print(text)
    if args.write:
        write_section("Layout at scale", MARK_START, MARK_END, text)


if __name__ == "__main__":
    main()
