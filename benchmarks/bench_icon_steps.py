"""Icon-steps per second of the renderer's inner step, contiguous against channels-last memory.

    python benchmarks/bench_icon_steps.py [--layers blocks.4,blocks.5] [--sizes 48,64] [--batch 32]

Both variants run interleaved in one process, so machine noise hits both alike;
the figure is the median over repeats.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from generator.collect import capture
from generator.icons.objectives import direction_objective
from generator.icons.param import FourierImage
from generator.icons.transform import robust_transform
from generator.models import load_model


def step_seconds(model, layer, size, batch, channels_last, steps=4):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = model.net.to(memory_format=fmt)
    g = torch.Generator().manual_seed(0)
    image = FourierImage(batch, size, g)
    opt = torch.optim.Adam(image.parameters(), lr=0.05)
    v = torch.nn.functional.normalize(torch.randn(batch, model.layer_shapes()[layer][0], generator=g), dim=1)
    modules = {layer: model.layer(layer)}

    def step():
        opt.zero_grad()
        x = model.normalize(robust_transform(image(), g)).contiguous(memory_format=fmt)
        (-direction_objective(capture(net, modules, x)[layer], v, 2).sum()).backward()
        opt.step()

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", default="blocks.4,blocks.5")
    parser.add_argument("--sizes", default="48,64")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    model = load_model("efficientnet_lite0")
    for p in model.net.parameters():
        p.requires_grad_(False)
    print("| layer | icon px | contiguous icon-steps/s | channels-last icon-steps/s | ratio |")
    print("|---|---|---|---|---|")
    for layer in args.layers.split(","):
        for size in map(int, args.sizes.split(",")):
            plain, last = [], []
            for _ in range(args.repeats):
                plain.append(step_seconds(model, layer, size, args.batch, False))
                last.append(step_seconds(model, layer, size, args.batch, True))
            a = args.batch / statistics.median(plain)
            b = args.batch / statistics.median(last)
            print(f"| {layer} | {size} | {a:.0f} | {b:.0f} | {b / a:.2f} |", flush=True)


if __name__ == "__main__":
    main()
