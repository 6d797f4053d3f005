"""A build of 50,000 activations a layer on this machine, on the local engine and then on Ray.

    python benchmarks/bench_distill.py                 # local, then Ray on a 2-node cluster here
    python benchmarks/bench_distill.py --engines local
    python benchmarks/bench_distill.py --write         # also update BENCHMARKS.md

The build: the ImageNet sample (`../shared/data/imagenet-sample`, 500 images), 13 crops an
image and 8 positions a crop (52,000 activations for each of the default model's two
layers), grid levels 20, 40, 80 and 160, and the quick preset's icons (40 px, 32 steps).
Each engine builds from an empty cache of its own, in a fresh process, one after the other.
For Ray the script starts a cluster of two nodes on this machine (ray.cluster_utils.Cluster,
one CPU each) and the build joins it by address, as `atlas build --engine ray --ray-address`
does. The two builds' sites and activation arrays are then compared file by file.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

# Ray would name this machine by its network address; on the loopback the cluster stays on it.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
SAMPLE = ROOT.parent / "shared" / "data" / "imagenet-sample"
MARK_START, MARK_END = "<!-- distill:start -->", "<!-- distill:end -->"
CROPS, POSITIONS, LEVELS = 13, 8, [20, 40, 80, 160]

TOML = """\
preset = "quick"
out = "{out}"
cache = "{cache}"

[images]
dir = "{images}"
crops_per_image = {crops}

[collect]
positions_per_image = {positions}

[grid]
levels = {levels}
min_count = 3
"""


def child(work: Path, engine: str, address: str) -> dict:
    """One build, as `atlas build --config atlas.toml [--engine ray --ray-address ADDR]` runs it."""
    from generator.config import load_config
    from generator.pipeline import build
    from generator.progress import Reporter

    overrides = {"engine": engine, **({"ray_address": address} if address else {})}
    cfg = load_config(work / "atlas.toml", overrides)
    start = time.perf_counter()
    result = build(cfg, Reporter())
    total = time.perf_counter() - start
    atlases = result.manifest["atlases"]
    return {"total": total, "timings": result.timings,
            "activations": {a["layer"]: a["activations"] for a in atlases},
            "icons": sum(lv["cell_count"] for a in atlases for lv in a["level_data"]),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run(work: Path, engine: str, crops: int, positions: int, address: str = "") -> dict:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / "atlas.toml").write_text(TOML.format(out=work / "site", cache=work / "cache", images=SAMPLE, crops=crops,
                                                 positions=positions, levels=LEVELS))
    command = [sys.executable, __file__, "--child", str(work), "--engines", engine, "--address", address]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"{engine} build failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def compare(a: Path, b: Path) -> dict:
    """How many site files and activation arrays the two builds share byte for byte, of how many."""
    site_a, site_b = files(a / "site"), files(b / "site")
    arrays_a = {f"{p.parent.name}/{p.name}": p.read_bytes() for p in sorted((a / "cache").glob("activations/*/*.npy"))}
    arrays_b = {f"{p.parent.name}/{p.name}": p.read_bytes() for p in sorted((b / "cache").glob("activations/*/*.npy"))}
    differ = sorted(set(site_a) ^ set(site_b)) + [k for k in site_a if k in site_b and site_a[k] != site_b[k]]
    differ += sorted(set(arrays_a) ^ set(arrays_b)) + [k for k in arrays_a if k in arrays_b and arrays_a[k] != arrays_b[k]]
    return {"site_files": len(site_a), "arrays": len(arrays_a), "differ": differ}


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:02.0f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engines", default="local,ray")
    parser.add_argument("--work", default="/tmp/atlas-distill")
    parser.add_argument("--address", default="")
    parser.add_argument("--crops", type=int, default=CROPS, help="crops an image")
    parser.add_argument("--positions", type=int, default=POSITIONS, help="positions a crop")
    parser.add_argument("--child", default="")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(Path(args.child), args.engines, args.address)))
        return
    if not SAMPLE.is_dir():
        raise SystemExit(f"no ImageNet sample at {SAMPLE}")
    from bench_build import STAGES, write_section
    from bench_scale import machine

    results = {}
    for engine in args.engines.split(","):
        if engine == "ray":
            from ray.cluster_utils import Cluster

            cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
            try:
                cluster.add_node(num_cpus=1)
                cluster.wait_for_nodes()
                results[engine] = run(Path(args.work) / engine, engine, args.crops, args.positions, cluster.address)
            finally:
                cluster.shutdown()
        else:
            results[engine] = run(Path(args.work) / engine, engine, args.crops, args.positions)
        print(engine, json.dumps(results[engine]), flush=True)

    lines = [f"On {machine()}; command: `python benchmarks/bench_distill.py --write`. "
             f"{' and '.join(f'{n:,} activations of {layer}' for layer, n in next(iter(results.values()))['activations'].items())}, "
             f"levels {', '.join(map(str, LEVELS))}, {next(iter(results.values()))['icons']:,} icons of 40 px and 32 steps. "
             "Seconds per stage:", "",
             "| engine | " + " | ".join(STAGES) + " | total | peak RSS of the build's process |",
             "|---|" + "---|" * (len(STAGES) + 2)]
    for engine, r in results.items():
        cells = " | ".join(f"{r['timings'].get(s, 0.0):.0f}" for s in STAGES)
        where = "ray (2 nodes of 1 CPU here)" if engine == "ray" else engine
        lines.append(f"| {where} | {cells} | **{minutes(r['total'])}** | {r['peak_rss_mb'] / 1024:.2f} GB |")
    if len(results) == 2:
        same = compare(*(Path(args.work) / e for e in results))
        verdict = ("identical" if not same["differ"] else f"{len(same['differ'])} differ: {', '.join(same['differ'][:5])}")
        lines += ["", f"The two builds' {same['site_files']:,} site files and {same['arrays']} activation arrays, "
                      f"compared byte for byte: {verdict}."]
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_section("A build of 50,000 activations a layer", MARK_START, MARK_END, text)


if __name__ == "__main__":
    main()
