"""Activation vectors at sampled positions, with each one's attribution to every class.

Per layer, in `<cache>/activations/<layer>/`:
  activations.npy   (N, C) float16   the layer's channel vector at one spatial position
  attributions.npy  (N, K) float16   sum over channels of activation x d(logit_k)/d(activation)
                                     (either in float32 where its values pass float16's range)
  positions.npy     (N, 3) int32     crop index, row, column of each vector
with N = crops x positions per image, rows in crop order.

The work is cut into shards of `shard_size` crops. `collect_shard` computes one shard and
returns its rows as arrays: a pure function of the model, the crops and the seed, so that
any engine can run shards anywhere and hand the rows back. `collect_activations` is the
driver on one machine: it decodes crops in worker processes, runs the shards on the
chosen device, writes each shard as it finishes (shards.py) and, when killed, resumes at
the first missing shard. A crop's positions come from (seed, layer, crop index) alone,
so a shard's rows do not depend on the shards run before it, nor on the shard size.

With `positions = 1`, the article's setting, each image costs one forward pass for all
layers plus one tangent through the part after the first layer (attribution.py).
"""

from __future__ import annotations

import hashlib
import itertools
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from .attribution import Attributor, capture  # noqa: F401  (capture: used by icons)
from .errors import AtlasError
from .images import CropLoader, SamplePlan, crop_batches
from .models import LoadedModel
from .shards import LayerShards, ShardResult

DEVICES = ("auto", "cpu", "cuda")


def pick_device(name: str = "auto") -> torch.device:
    """The device `collect.device` names: auto is CUDA when there is one."""
    if name not in DEVICES:
        raise AtlasError(f"collect.device = {name!r}: must be one of {', '.join(DEVICES)}")
    if name == "cuda" and not torch.cuda.is_available():
        raise AtlasError("collect.device = 'cuda' but torch sees no CUDA device: set collect.device to auto or cpu")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _margin(height: int, width: int) -> int:
    return 1 if min(height, width) >= 5 else 0


def positions_per_image(shape: tuple[int, ...], wanted: int) -> int:
    _, height, width = shape
    margin = _margin(height, width)
    return min(wanted, (height - 2 * margin) * (width - 2 * margin))


def crop_positions(seed: int, layer: str, shape: tuple[int, ...], wanted: int, crops: range) -> np.ndarray:
    """Distinct (row, column) positions away from the border for each crop in `crops`, as (n, P, 2) int64.

    Each crop's positions are a uniformly random subset of the layer's inner grid, chosen
    by the smallest of one random word per grid position. The words of crop i are the
    Philox stream, keyed by (seed, layer), from counter i x stride on: any range of crops
    reads them directly, in one call.
    """
    _, height, width = shape
    margin = _margin(height, width)
    rows, cols = np.arange(margin, height - margin), np.arange(margin, width - margin)
    grid = np.stack(np.meshgrid(rows, cols, indexing="ij"), -1).reshape(-1, 2)
    count = positions_per_image(shape, wanted)
    stride = -(-len(grid) // 4)  # Philox counter steps per crop: each gives 4 words
    key = int.from_bytes(hashlib.sha256(f"positions:{seed}:{layer}".encode()).digest()[:16], "little")
    words = np.random.Philox(key=key, counter=crops.start * stride).random_raw(len(crops) * stride * 4)
    words = words.reshape(len(crops), stride * 4)[:, :len(grid)]
    chosen = np.sort(np.argsort(words, axis=1, kind="stable")[:, :count], axis=1)
    return grid[chosen]


def collect_shard(
    model: LoadedModel,
    layers: list[str],
    plan: SamplePlan,
    crops: range,
    positions: int,
    seed: int,
    device: torch.device | str = "cpu",
    batch_size: int = 16,
    images: Iterable[torch.Tensor] | None = None,
    progress: Callable[[int], None] = lambda n: None,
) -> dict[str, ShardResult]:
    """The rows of every layer for the crops in `crops`, as float32 / int32 numpy arrays on the CPU.

    `images` yields the crops in batches of `batch_size` from `crops.start` on, as
    (n, 3, S, S) uint8 (`images.crop_batches`); without it they are decoded here.
    Moves `model.net` to `device` and leaves it there. Same arguments, same rows.
    """
    device = torch.device(device)
    model.net.to(device)
    shapes = model.layer_shapes()
    counts = {name: positions_per_image(shapes[name], positions) for name in layers}
    attributor = Attributor(model, layers, counts)
    chosen = {name: torch.from_numpy(crop_positions(seed, name, shapes[name], positions, crops)) for name in layers}
    if images is None:
        loader = CropLoader(plan, model.input_size)
        images = (loader.load_uint8(range(s, min(s + batch_size, crops.stop)))
                  for s in range(crops.start, crops.stop, batch_size))
    parts: dict[str, list] = {name: [] for name in layers}
    done = 0
    for batch in images:
        n = len(batch)
        x = model.normalize(batch.to(device, non_blocking=True).float().div_(255))
        pos = {name: chosen[name][done:done + n].to(device, non_blocking=True) for name in layers}
        for name, (vectors, attributions) in attributor(x, pos).items():
            parts[name].append((vectors, attributions))  # kept on the device: one copy back per shard
        done += n
        progress(n)
    if done != len(crops):
        raise RuntimeError(f"shard {crops} got {done} crops")
    out = {}
    ids = np.arange(crops.start, crops.stop, dtype=np.int32)
    for name in layers:
        vectors = torch.cat([v for v, _ in parts[name]]).float().cpu().numpy()
        attributions = torch.cat([a for _, a in parts[name]]).float().cpu().numpy()
        where = chosen[name].numpy().astype(np.int32)
        rows = np.concatenate([np.repeat(ids, counts[name])[:, None], where.reshape(-1, 2)], 1)
        out[name] = ShardResult(vectors, attributions, rows)
    return out


def collect_rows(source, plan: SamplePlan, positions: int, seed: int, device: str, batch_size: int, crops: range,
                 layers: list[str]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """One shard as an engine's task: `collect_shard`'s rows for `layers`, in that order, as plain tuples.

    The model is made from `source` once per worker process (engine.load_model_cached);
    `device` is resolved where the task runs, so a cluster's GPU nodes collect on CUDA.
    """
    from .engine import load_model_cached

    model = load_model_cached(source)
    result = collect_shard(model, layers, plan, crops, positions, seed, pick_device(device), batch_size)
    return [tuple(result[name]) for name in layers]


def shard_ranges(n_crops: int, shard_size: int) -> list[range]:
    return [range(s, min(s + shard_size, n_crops)) for s in range(0, n_crops, shard_size)]


def collect_activations(
    model: LoadedModel,
    layers: list[str],
    plan: SamplePlan,
    folders: dict[str, Path],
    positions: int,
    batch_size: int,
    seed: int,
    progress: Callable[[int], None] = lambda n: None,
    device: str = "auto",
    workers: int = -1,
    shard_size: int = 1024,
    engine=None,
    source=None,
) -> dict[str, int]:
    """Write activations, attributions and positions for every layer into `folders[layer]`; N per layer.

    Resumes a collection that stopped part way with the same settings, computing only
    the shards missing; `progress` hears the crops of shards already done at once.
    Memory stays bounded by one shard's rows whatever the number of crops.
    `workers` decoding processes: 0 decodes in this one, -1 picks (images.auto_workers).
    On an `engine` other than the local one, each shard is a task (`collect_rows`) that
    makes the model again from `source` (engine.ModelSource) and decodes its own crops,
    so every node must read the images at the paths in `plan`; the rows come back to
    this process, which writes them as they arrive.
    """
    if shard_size < 1 or batch_size < 1:
        raise AtlasError("collect.shard_size and collect.batch_size must be at least 1")
    remote = engine is not None and engine.name != "local"
    # On an engine, `device` is resolved where each task runs: this machine may have no GPU.
    dev = None if remote else pick_device(device)
    if remote and device not in DEVICES:
        pick_device(device)  # the one-line message for a name that is no device
    shapes = model.layer_shapes()
    counts = {name: positions_per_image(shapes[name], positions) for name in layers}
    n_crops = len(plan.crops)
    shards = shard_ranges(n_crops, shard_size)
    settings = {"crops": n_crops, "shard_size": shard_size, "batch_size": batch_size,
                "device": f"{engine.name}:{device}" if remote else dev.type}
    stores = {name: LayerShards(folders[name], name, n_crops * counts[name], shapes[name][0], len(model.class_names),
                                settings) for name in layers}
    todo = [i for i in range(len(shards)) if any(i not in stores[name].done for name in layers)]
    progress(n_crops - sum(len(shards[i]) for i in todo))
    try:
        if remote:
            _collect_on(engine, source, stores, shards, todo, layers, plan, positions, seed, device, batch_size,
                        counts, progress)
        else:
            _collect_here(model, stores, shards, todo, layers, plan, positions, seed, dev, batch_size, workers,
                          counts, progress)
    finally:
        for store in stores.values():
            store.close()
    for store in stores.values():
        store.finish()
    return {name: n_crops * counts[name] for name in layers}


def _collect_on(engine, source, stores, shards, todo, layers, plan, positions, seed, device, batch_size, counts,
                progress) -> None:
    """Each shard a task on `engine`; rows written as they come back, in whatever order."""
    items = [(shards[i], [name for name in layers if i not in stores[name].done]) for i in todo]
    for k, rows in engine.map(collect_rows, items, (source, plan, positions, seed, device, batch_size)):
        i = todo[k]
        _write(stores, i, shards[i].start, dict(zip(items[k][1], (ShardResult(*r) for r in rows))), counts)
        progress(len(shards[i]))


def _collect_here(model, stores, shards, todo, layers, plan, positions, seed, dev, batch_size, workers, counts,
                  progress) -> None:
    """Every shard in this process on `dev`, crops decoded by `workers` processes."""
    batches = [range(s, min(s + batch_size, shards[i].stop)) for i in todo for s in range(shards[i].start,
                                                                                         shards[i].stop, batch_size)]
    images = crop_batches(plan, model.input_size, batches, workers, pin_memory=dev.type == "cuda")
    home = next((p.device for p in model.net.parameters()), torch.device("cpu"))
    pending: Future | None = None
    try:
        # Shard k's rows are written on a thread while shard k + 1 is computed.
        with ThreadPoolExecutor(1) as writer:
            for i in todo:
                crops = shards[i]
                wanted = [name for name in layers if i not in stores[name].done]
                n_batches = -(-len(crops) // batch_size)
                result = collect_shard(model, wanted, plan, crops, positions, seed, dev, batch_size,
                                       itertools.islice(images, n_batches), progress)
                if pending is not None:
                    pending.result()
                pending = writer.submit(_write, stores, i, crops.start, result, counts)
            if pending is not None:
                pending.result()
    finally:
        model.net.to(home)


def _write(stores: dict[str, LayerShards], shard: int, first_crop: int, result: dict[str, ShardResult],
           counts: dict[str, int]) -> None:
    for name, rows in result.items():
        stores[name].write(shard, first_crop * counts[name], rows)
