"""Icons on the local engine against the Ray engine on this machine: the same batches, side by side.

    python benchmarks/bench_ray.py            # print the table
    python benchmarks/bench_ray.py --write    # also update BENCHMARKS.md

One process renders the same directions with render_icons (no cache) on the local engine
and on a Ray instance started on this machine, alternating rounds so that noise on a
shared machine hits both alike; the table gives medians. Ray's tasks get the driver's
torch thread count, so on one machine the engine can only add overhead: this measures
that overhead (task dispatch, arguments and icons through the object store) and checks
that both engines give the same icons bit for bit. The first Ray round also starts a
worker process and loads the model there; it is shown apart.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

# Ray would name this machine by its network address; on the loopback the benchmark stays on it.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
MARK_START, MARK_END = "<!-- ray:start -->", "<!-- ray:end -->"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layer", default="blocks.4")
    parser.add_argument("--size", type=int, default=80)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()

    import numpy as np
    import ray
    import torch

    from bench_build import machine, write_section
    from generator.engine import LocalEngine, ModelSource, RayEngine
    from generator.icons import IconSpec, render_icons
    from generator.speedups import pick_precision
    from generator.models import load_model

    model = load_model("efficientnet_lite0")
    source = ModelSource(model.spec, weights_id=model.weights_id)
    channels = model.layer_shapes()[args.layer][0]
    directions = np.random.default_rng(0).normal(size=(args.batch * args.batches, channels)).astype(np.float32)
    settings = IconSpec(args.size, args.steps, batch_size=args.batch)
    precision = pick_precision("auto", torch.device("cpu"))

    start = time.perf_counter()
    # As RayEngine("") starts it, with an object store sized for this benchmark rather than 30% of the memory.
    ray.init(address="local", include_dashboard=False, log_to_driver=False, object_store_memory=256 * 2**20)
    ray_engine = RayEngine("")
    started = time.perf_counter() - start
    engines = {"local": LocalEngine(), "ray": ray_engine}
    seconds: dict[str, list[float]] = {name: [] for name in engines}
    icons: dict[str, bytes] = {}
    same = True
    try:
        for _ in range(args.rounds + 1):  # the first round warms both up and is reported apart
            for name, engine in engines.items():
                t = time.perf_counter()
                out = render_icons(model, args.layer, directions, settings, seed=0, device="cpu", engine=engine,
                                   source=source)
                seconds[name].append(time.perf_counter() - t)
                same = same and icons.setdefault(name, out.icons.tobytes()) == out.icons.tobytes()
        described = ray_engine.describe()
    finally:
        ray_engine.close()
        ray.shutdown()
    same = same and icons["local"] == icons["ray"]
    icon_steps = len(directions) * args.steps
    local_median = statistics.median(seconds["local"][1:])
    rows = ["| engine | first round (s) | median round (s) | icon-steps/s | against local |", "|---|---|---|---|---|"]
    for name, times in seconds.items():
        median = statistics.median(times[1:])
        label = "local (this process)" if name == "local" else f"ray ({described})"
        rows.append(f"| {label} | {times[0]:.2f} | {median:.2f} | {icon_steps / median:.0f} | "
                    f"{local_median / median:.2f}x |")
    text = (f"Layer {args.layer} of EfficientNet-Lite0, {args.size} px, {args.batches} batches of {args.batch} "
            f"directions, {args.steps} steps, {precision}; medians of {args.rounds} alternating rounds after a "
            f"first; {machine()}, ray {ray.__version__}; starting Ray on this machine took {started:.1f} s; "
            f"icons identical on both engines: {'yes' if same else 'NO'}; "
            f"command: `python benchmarks/bench_ray.py --write`.\n\n" + "\n".join(rows))
    print(text)
    if args.write:
        write_section("Ray engine", MARK_START, MARK_END, text)


if __name__ == "__main__":
    main()
