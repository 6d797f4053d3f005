"""Time every stage of a full build, from an empty cache, for the given presets.

    python benchmarks/bench_build.py                  # quick and default
    python benchmarks/bench_build.py --presets quick  # one preset
    python benchmarks/bench_build.py --write          # also update BENCHMARKS.md

Each preset runs in a fresh temporary folder with its own cache, so the
figures include UMAP's first-call compilation, as a user's first build does. Builds
run one after the other, never side by side.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import tempfile
import time
from pathlib import Path

STAGES = ["model", "images", "activations", "layout", "grid", "icons", "trust", "names", "examples", "links",
          "classes", "tiles", "site"]
ROOT = Path(__file__).resolve().parent.parent
MARK_START, MARK_END = "<!-- build-stages:start -->", "<!-- build-stages:end -->"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), {platform.python_version()}"


def run(preset: str) -> tuple[dict[str, float], float, dict]:
    from generator.config import load_config
    from generator.pipeline import build

    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(None, {"preset": preset, "out": f"{tmp}/site", "cache": f"{tmp}/cache"})
        start = time.perf_counter()
        result = build(cfg)
        total = time.perf_counter() - start
        # the class atlases' layouts, icons and the rest count in those stages' columns, and their icons here
        every = result.manifest["atlases"] + result.manifest.get("class_atlases", [])
        cells = {a["id"]: sum(lv["cell_count"] for lv in a["level_data"]) for a in every}
        facts = {"icons": sum(cells.values()), "activations": sum(a["activations"] for a in result.manifest["atlases"]),
                 "layers": len(result.manifest["atlases"]), "size": cfg.icons.size_px, "steps": cfg.icons.steps}
        return result.timings, total, facts


def table(rows: list[tuple[str, dict, float, dict]]) -> str:
    head = "| preset | " + " | ".join(STAGES) + " | total | icons rendered | activation vectors |"
    lines = [head, "|" + "---|" * (len(STAGES) + 4)]
    for preset, timings, total, facts in rows:
        cells = " | ".join(f"{timings.get(s, 0.0):.1f}" for s in STAGES)
        lines.append(f"| {preset} ({facts['size']} px, {facts['steps']} steps) | {cells} | **{total:.0f}** | "
                     f"{facts['icons']} | {facts['activations']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--presets", default="quick,default")
    parser.add_argument("--write", action="store_true", help="update the build table in BENCHMARKS.md")
    args = parser.parse_args()
    rows = []
    for preset in args.presets.split(","):
        timings, total, facts = run(preset)
        rows.append((preset, timings, total, facts))
        print(f"{preset}: {total:.1f} s", flush=True)
    text = (f"Seconds per stage, from an empty cache, on {machine()}; "
            f"command: `python benchmarks/bench_build.py --write`.\n\n{table(rows)}")
    print(text)
    if args.write:
        write_section("Build stages", MARK_START, MARK_END, text)


def write_section(title: str, start: str, end: str, text: str) -> None:
    """Put `text` between the markers `start` and `end` of BENCHMARKS.md, adding a section if they are absent."""
    path = ROOT / "BENCHMARKS.md"
    current = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{start}\n{text}\n{end}"
    if start in current:
        current = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _m: block, current, flags=re.S)
    else:
        current += f"\n## {title}\n\n{block}\n"
    path.write_text(current)

if __name__ == "__main__":
    main()
