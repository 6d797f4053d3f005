"""Where one optimization step of the renderer spends its time, timed inside the step.

    python benchmarks/profile_step.py                # batch 32, the precision render_icons picks
    python benchmarks/profile_step.py --threads 1    # the same on one thread

Wall-clock timers around each part of a step, CPU only (its ops are synchronous): the
Fourier image, the resample, the network forward (the input's normalization and cast
included), the objective, the backward pass and Adam; inside the network, the
convolutions' forward passes, the clips' backward passes and the input gradients.
torch.profiler's per-op figures run about 1.5x high on small ops here, so they are not
used. Medians over the timed steps; random unit directions.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from generator.icons.objectives import direction_objective  # noqa: E402
from generator.icons.param import FourierImage  # noqa: E402
from generator.icons.transform import random_views, resample  # noqa: E402
from generator.speedups import fuse, input_grad, network  # noqa: E402
from generator.speedups.memory import bytes_per_icon, keep_freed_memory  # noqa: E402

inside: dict[str, float] = defaultdict(float)


def _timed_forward(*args, _plain=fuse.conv_forward):
    start = time.perf_counter()
    out = _plain(*args)
    inside["convolutions, forward"] += time.perf_counter() - start
    return out


def _timed_backward(*args, _plain=fuse.conv_backward):
    """A convolution's backward pass, split into its clip's and its input gradient's."""
    start = time.perf_counter()
    before = inside["input gradients"]
    out = _plain(*args)
    inside["clips, backward"] += time.perf_counter() - start - (inside["input gradients"] - before)
    return out


def _timed_input_grad(grad, how, _plain=input_grad.input_grad):
    start = time.perf_counter()
    out = _plain(grad, how)
    inside["input gradients"] += time.perf_counter() - start
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layer", default="blocks.4")
    parser.add_argument("--size", type=int, default=80)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=0, help="0: torch's default")
    parser.add_argument("--precision", default="auto", choices=["auto", "float32", "bfloat16"])
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from generator.models import load_model

    model = load_model("efficientnet_lite0")
    for p in model.net.parameters():
        p.requires_grad_(False)
    cpu = torch.device("cpu")
    precision = network.pick_precision(args.precision, cpu)
    fuse.conv_forward, fuse.conv_backward = _timed_forward, _timed_backward
    input_grad.input_grad = _timed_input_grad
    forward = network.build_forward(model, args.layer, cpu, network.SpeedOptions(precision=precision), reads="centre")
    keep_freed_memory(bytes_per_icon(forward, args.size, cpu) * args.batch)
    channels = model.layer_shapes()[args.layer][0]
    generator = torch.Generator().manual_seed(0)
    targets = torch.nn.functional.normalize(torch.randn(args.batch, channels, generator=generator), dim=1)
    image = FourierImage(args.batch, args.size, generator)
    optimizer = torch.optim.Adam(image.parameters(), lr=0.05, fused=True)

    parts: dict[str, list[float]] = defaultdict(list)
    warmup = 5
    for step in range(warmup + args.steps):
        inside.clear()
        marks = [time.perf_counter()]
        optimizer.zero_grad(set_to_none=True)
        signed = image.signed()
        marks.append(time.perf_counter())
        view = resample(signed, *random_views(args.batch, args.size, generator))
        marks.append(time.perf_counter())
        acts = forward.signed(view)
        marks.append(time.perf_counter())
        loss = -direction_objective(acts.float(), targets, 2.0).sum()
        marks.append(time.perf_counter())
        loss.backward()
        marks.append(time.perf_counter())
        optimizer.step()
        marks.append(time.perf_counter())
        if step < warmup:
            continue
        names = ("Fourier image", "resample", "network forward", "objective", "backward pass", "Adam")
        for name, begin, end in zip(names, marks, marks[1:]):
            parts[name].append(end - begin)
        parts["whole step"].append(marks[-1] - marks[0])
        for name, seconds in inside.items():
            parts["  " + name].append(seconds)

    print(f"{args.layer}, {args.size} px, batch {args.batch}, {precision}, {torch.get_num_threads()} threads; "
          f"medians of {args.steps} steps, ms (backward pass: of all parts above it)")
    for name, seconds in parts.items():
        print(f"{name:28s} {statistics.median(seconds) * 1000:7.2f}")


if __name__ == "__main__":
    main()
