"""The optimization loop: icons for many directions at once, and their fidelity.

Artifact: `<cache>/icons/<layer>/<batch key>.npz` with `icons` (B, S, S, C) uint8 (C, the model's input channels),
`fidelity` and `objective` (B,) float32, with `icons.mask` `mask` (B, S, S) uint8 (importance_mask),
and `digest`, their sha256, one file per batch
of directions. A batch's key covers the model, layer, its directions and starts, and the
IconSpec (spec.py) whole, so unchanged batches are never rendered twice and an
interrupted build resumes at the first missing batch; a batch that fails its digest is
rendered again.

`optimize` is the loop, and receives its parts: an objective (objectives.py), an image
parameterization (param.py) and transforms (transform.py), as Lucent's `render_vis`
does. The network it runs through comes from the engine (speedups/), built for the part
of the layer the objective reads. render_icons is the driver: it partitions the
directions into batches, derives each batch's seed from its key, and sends the batches
missing from the cache to an engine (engine.py; worker.py holds what runs there),
saving each as it comes back.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zipfile
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import torch

from ..engine import Engine, LocalEngine, ModelSource, remembered
from ..models import LoadedModel
from ..speedups import (LayerFn, SpeedOptions, auto_batch_size, build_forward, bytes_per_icon, keep_freed_memory,
                        pick_precision)
from ..store import array_digest, artifact_key, make_key, write_json
from . import worker
from .objectives import OBJECTIVES, Objective, cosine_at_centre
from .param import NEEDS_AMPLITUDE, PARAMS, ImageParam
from .spec import IconSpec
from .transform import TRANSFORMS, lucid_views

__all__ = ["IconSpec", "RenderedIcons", "fidelity", "optimize", "pick_device", "pick_precision", "render_icons"]


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def prepare(model: LoadedModel, layer: str, device: torch.device, spec: IconSpec) -> tuple[LayerFn, LayerFn, IconSpec]:
    """The network to optimize through, the float32 one to read fidelity with, and the spec with a batch size.

    The first is built for the part of the layer the spec's objective reads; the second
    for the whole layer (fidelity reads the centre of the full activations).
    """
    for p in model.net.parameters():
        p.requires_grad_(False)
    spec = spec.with_(precision=pick_precision(spec.precision, device))
    reads = OBJECTIVES[spec.objective](spec.cossim_power).reads
    forward = build_forward(model, layer, device, SpeedOptions(precision=spec.precision), reads)
    # Fidelity reads the full activations (LayerFn.__call__), which the optimizing network gives in float32.
    scorer = forward if spec.precision == "float32" else build_forward(model, layer, device)
    if not spec.batch_size:
        spec = spec.with_(batch_size=auto_batch_size(forward, spec.size_px, spec.tries, device))
    if device.type == "cpu":
        keep_freed_memory(bytes_per_icon(forward, spec.size_px, device) * spec.batch_size * spec.tries)
    return forward, scorer, spec


def fidelity(model: LoadedModel, layer: str, icons: torch.Tensor, directions: torch.Tensor,
             device: torch.device | None = None, forward: Callable | None = None) -> torch.Tensor:
    """Cosine between each direction and the activation at the centre of its untransformed icon.

    icons (N, C', S, S) in [0, 1]; directions (N, C). Returns (N,) on the CPU. `forward`
    reuses a renderer's prepared network.
    """
    device = device or icons.device
    forward = forward or build_forward(model, layer, device)
    with torch.no_grad():
        acts = forward(icons.to(device))
    return cosine_at_centre(acts.float(), directions.to(device).float()).cpu()


def optimize(forward: LayerFn, objective: Objective, image: ImageParam, targets: torch.Tensor, steps: int,
             learning_rate: float, generator: torch.Generator, device: torch.device,
             transforms: Callable[[torch.Tensor, torch.Generator], torch.Tensor] = lucid_views,
             observe: Callable[[int, ImageParam], None] | None = None,
             importance: torch.Tensor | None = None) -> torch.Tensor:
    """Ascend `objective` for `image` (on `device`), one target row (N, C) per image; returns the last scores (N,).

    Each step scores a random view of every image (`transforms`), through `forward`,
    which was built for what the objective reads. `observe(step, image)`, when given, is
    called after every step (benchmarks read fidelity along the way; its time is theirs).
    `importance`, when given, (N, S, S) on `device`, gains each step the objective's
    gradient with respect to the untransformed image, in absolute value, summed over its
    channels: MACO's importance (Fel et al. 2023), which importance_mask turns into a mask.
    """
    # One kernel for Adam's whole update instead of a dozen tensor ops (same arithmetic).
    optimizer = torch.optim.Adam(image.parameters(), lr=learning_rate, fused=device.type in ("cpu", "cuda"))
    score = torch.zeros(len(targets))
    for step in range(1, steps + 1):
        optimizer.zero_grad(set_to_none=True)
        signed = image.signed()
        if importance is not None:
            signed.retain_grad()
        score = objective(forward.signed(transforms(signed, generator)).float(), targets)
        (-score.sum()).backward()
        if importance is not None:
            importance += signed.grad.abs().sum(1)
        optimizer.step()
        if observe is not None:
            observe(step, image)
    return score.detach()


def optimize_spec(forward: LayerFn, targets: torch.Tensor, spec: IconSpec, generator: torch.Generator,
                  device: torch.device, start: tuple[torch.Tensor, torch.Tensor] | None = None,
                  steps: int | None = None, observe: Callable[[int, ImageParam], None] | None = None,
                  amplitude: torch.Tensor | None = None,
                  importance: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The images (N, C, S, S) in [0, 1] that `spec`'s parts reach for unit `targets` (N, C), and their last scores.

    Images start from seeded noise, except rows `start[0]`, which start from the images
    `start[1]` (K, C, S, S); `steps` overrides the spec's. `amplitude` is natural images'
    amplitude spectrum, for the parameterizations that fix it (param.NEEDS_AMPLITUDE).
    `importance` gathers where the gradient fell (optimize).
    """
    image = PARAMS[spec.param](len(targets), spec.size_px, generator, amplitude, forward.model.channels)
    if start is not None:
        image.start_from(*start)
    image = image.to(device)
    score = optimize(forward, OBJECTIVES[spec.objective](spec.cossim_power), image, targets, steps or spec.steps,
                     spec.learning_rate, generator, device, TRANSFORMS[spec.transforms], observe, importance)
    with torch.no_grad():
        return image(), score


MASK_PERCENTILE = 80  # as Horama shows MACO's masks: the top fifth of the importance is opaque


def importance_mask(importance: torch.Tensor) -> np.ndarray:
    """(N, S, S) uint8 alpha from gathered importance (optimize): each icon's clipped at its MASK_PERCENTILE-th
    percentile and divided by it, so the parts of an icon the objective leaned on most are opaque."""
    flat = importance.detach().float().cpu().flatten(1)
    top = torch.quantile(flat, MASK_PERCENTILE / 100, dim=1, keepdim=True).clamp_min(1e-12)
    alpha = (flat.clamp(max=top) / top).view(importance.shape)
    return (alpha * 255).round().byte().numpy()


def _render_batch(forward, model, layer, directions: torch.Tensor, s: IconSpec, seed: int,
                  device: torch.device, start: np.ndarray | None = None,
                  has_start: np.ndarray | None = None, whiten: np.ndarray | None = None,
                  scorer: Callable | None = None, amplitude: np.ndarray | None = None,
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    generator = torch.Generator().manual_seed(seed)
    count = len(directions)
    targets = torch.nn.functional.normalize(directions.float(), dim=1).to(device).repeat(s.tries, 1)
    # The objective may aim at the whitened direction; fidelity is always read against the cell's own.
    aims = targets if whiten is None else \
        torch.nn.functional.normalize(targets @ torch.from_numpy(whiten).to(device), dim=1)
    steps, begin = s.steps, None
    if has_start is not None and has_start.any():
        rows = torch.from_numpy(np.flatnonzero(np.tile(has_start, s.tries)))
        images = torch.from_numpy(np.tile(start[has_start], (s.tries, 1, 1, 1))).permute(0, 3, 1, 2).float() / 255
        begin = (rows, images)
        if has_start.all():
            steps = s.warm_steps()
    importance = torch.zeros(len(aims), s.size_px, s.size_px, device=device) if s.mask else None
    final, objective = optimize_spec(forward, aims, s, generator, device, start=begin, steps=steps,
                                     amplitude=None if amplitude is None else torch.from_numpy(amplitude),
                                     importance=importance)
    scores = fidelity(model, layer, final, targets, device, scorer or forward).view(s.tries, count)
    best = scores.argmax(0)
    pick = (best, torch.arange(count))
    chosen = final.view(s.tries, count, *final.shape[1:])[pick]
    icons = (chosen.permute(0, 2, 3, 1).clamp(0, 1) * 255).round().byte().cpu().numpy()
    part = (icons, scores[pick].numpy().astype(np.float32), objective.cpu().view(s.tries, count)[pick].numpy())
    if importance is not None:
        part += (importance_mask(importance.view(s.tries, count, s.size_px, s.size_px)[pick]),)
    return part


def _digest(part: tuple[np.ndarray, ...]) -> str:
    h = hashlib.sha256()
    for array in part:
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


PART = ("icons", "fidelity", "objective", "mask")  # a batch's arrays; the mask only where the spec asks for it


def save_batch(path: Path, part: tuple[np.ndarray, ...]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **dict(zip(PART, part)), digest=_digest(part))
    tmp.replace(path)


def _read_memo(path: Path | None) -> dict:
    try:
        known = json.loads(path.read_text()) if path is not None else {}
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}


def load_batch(path: Path, count: int, size_px: int, mask: bool = False) -> tuple[np.ndarray, ...] | None:
    """A cached batch of `count` icons (and their masks, with `mask`), or None where it is missing, truncated
    or damaged."""
    try:
        with np.load(path) as saved:
            part = tuple(saved[name] for name in PART[:4 if mask else 3])
            digest = str(saved["digest"])
    except (OSError, ValueError, KeyError, EOFError, struct.error, zipfile.BadZipFile):
        return None
    if digest != _digest(part) or part[0].shape[:3] != (count, size_px, size_px):
        return None
    return part


class RenderedIcons(NamedTuple):
    icons: np.ndarray  # (M, S, S, C) uint8, C the model's input channels (tiles.display_rgb shows them)
    fidelity: np.ndarray  # (M,) float32: cosine of direction and the untransformed icon's centre activation
    objective: np.ndarray  # (M,) float32: the objective at the last step
    mask: np.ndarray | None = None  # (M, S, S) uint8 alpha (importance_mask), where the spec asks for masks

    @classmethod
    def joined(cls, parts: list[tuple[np.ndarray, ...]]) -> "RenderedIcons":
        """Batches or levels, in order, as one."""
        return cls(*(None if any(a is None for a in arrays) else np.concatenate(arrays) for arrays in zip(*parts)))

    def stats(self) -> dict[str, float]:
        """Mean, median and minimum fidelity, and the mean final objective: how good a batch is."""
        if not len(self.fidelity):
            return {"count": 0}
        return {"count": len(self.fidelity), "fidelity_mean": float(np.mean(self.fidelity)),
                "fidelity_median": float(np.median(self.fidelity)), "fidelity_min": float(np.min(self.fidelity)),
                "objective_mean": float(np.mean(self.objective))}


def render_icons(
    model: LoadedModel,
    layer: str,
    directions: np.ndarray,
    spec: IconSpec,
    seed: int = 0,
    device: str = "auto",
    cache_dir: Path | None = None,
    progress: Callable[[int], None] = lambda n: None,
    start: np.ndarray | None = None,
    has_start: np.ndarray | None = None,
    whiten: np.ndarray | None = None,
    note: Callable[[str], None] = lambda m: None,
    engine: Engine | None = None,
    source: ModelSource | None = None,
    amplitude: np.ndarray | None = None,
) -> RenderedIcons:
    """Icons, their fidelity and final objective for directions (M, C).

    Each icon starts from seeded noise, or from `start[i]` (an (S, S, C) uint8 icon,
    its parent cell's) where `has_start[i]`, and follows Adam on the spec's objective
    through its transforms; of `tries` starts, the one whose untransformed icon points
    closest to the direction is kept. `progress` is called with the number of icons
    finished. With `whiten` (see objectives.whitening), the objective aims at
    `whiten @ direction` and fidelity is still read against the direction. `amplitude`
    (C, S, S // 2 + 1), natural images' amplitude spectrum (param.natural_amplitude), is
    needed by the parameterizations that fix it (MACO). The spec's
    precision ("auto", "float32", "bfloat16") and batch size (0: from memory) are decided
    where the work runs; fidelity is always read in float32. A damaged cached batch is
    named through `note`.

    The batches not in the cache run on `engine` (default: this process), which makes
    the model again from `source` where it runs elsewhere (default: `model.spec`, which
    serves a model without a checkpoint). Each batch is saved as it arrives, so an
    interrupted build loses only the batches still running.
    """
    engine = engine or LocalEngine()
    source = source or ModelSource.of(model)
    try:
        with remembered(source, model):
            return _render_all(engine, source, model, layer, directions, spec, seed, device, cache_dir, progress,
                               start, has_start, whiten, note, amplitude)
    finally:
        worker.release_networks()
        model.net.to("cpu", memory_format=torch.contiguous_format)


def decide(engine: Engine, source: ModelSource, model: LoadedModel, layer: str, spec: IconSpec, device: str,
           cache_dir: Path | None) -> tuple[str, IconSpec]:
    """The device, and the spec with its precision and batch size decided once, where the work runs: batches agree."""
    _, (device, precision, memory) = next(engine.map(worker.worker_facts, [(device, spec.precision)]))
    spec = spec.with_(precision=precision)
    if spec.batch_size:
        return device, spec
    memo = cache_dir / "batch-size.json" if cache_dir else None
    memo_key = make_key("batch size", model.spec, model.weights_id, layer, spec.size_px, spec.tries, spec.objective,
                        precision, torch.device(device).type, memory)
    known = _read_memo(memo)
    if memo_key in known:
        return device, spec.with_(batch_size=int(known[memo_key]))
    _, size = next(engine.map(worker.probe_batch_size, [(source, layer, device, spec)]))
    if memo is not None:
        memo.parent.mkdir(parents=True, exist_ok=True)
        write_json(memo, {**known, memo_key: size})
    return device, spec.with_(batch_size=size)


def _render_all(engine, source, model, layer, directions, spec, seed, device, cache_dir, progress, start,
                has_start, whiten, note, amplitude) -> RenderedIcons:
    if spec.param in NEEDS_AMPLITUDE and amplitude is None:
        raise ValueError(f"icons by {spec.param!r} need natural images' amplitude spectrum")
    amplitude = np.ascontiguousarray(amplitude, np.float32) if spec.param in NEEDS_AMPLITUDE else None
    device, spec = decide(engine, source, model, layer, spec, device, cache_dir)
    parts: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    todo, items = [], []  # (part index, cache path, count), and each one's arguments
    whitened = array_digest(whiten) if whiten is not None else ""
    for first in range(0, len(directions), spec.batch_size):
        rows = slice(first, first + spec.batch_size)
        batch = np.ascontiguousarray(directions[rows], dtype=np.float32)
        batch_start = np.ascontiguousarray(start[rows]) if start is not None else None
        batch_has = np.asarray(has_start[rows], bool) if has_start is not None else None
        warm = batch_has is not None and batch_has.any()
        starts = array_digest(batch_has) + array_digest(batch_start[batch_has]) if warm else ""
        inputs = (seed, array_digest(batch), starts, whitened, array_digest(amplitude) if amplitude is not None else "")
        key = artifact_key("icons", model.spec, model.weights_id, layer, spec.key_parts(), *inputs)
        # The seed is the key's without the mask, which only watches: the same icons with or without masks.
        unmasked = key if not spec.mask else \
            artifact_key("icons", model.spec, model.weights_id, layer, spec.with_(mask=False).key_parts(), *inputs)
        path = cache_dir / f"{key}.npz" if cache_dir else None
        part = load_batch(path, len(batch), spec.size_px, spec.mask) if path is not None and path.is_file() else None
        if part is None and path is not None and path.is_file():
            note(f"cache: icons/{path.parent.name}/{path.name} is damaged; rendering it again")
        if part is None:
            todo.append((len(parts) + len(todo), path, len(batch)))
            items.append((batch, int(unmasked[:15], 16), batch_start, batch_has))
        else:
            parts[len(parts) + len(todo)] = part
            progress(len(batch))
    common = (source, layer, device, spec, whiten, amplitude)
    for j, part in engine.map(worker.render_batch, items, common):
        index, path, count = todo[j]
        if path is not None:
            save_batch(path, part)
        parts[index] = part
        progress(count)
    if not parts:
        size = spec.size_px
        return RenderedIcons(np.zeros((0, size, size, model.channels), np.uint8), np.zeros(0, np.float32),
                             np.zeros(0, np.float32), np.zeros((0, size, size), np.uint8) if spec.mask else None)
    return RenderedIcons.joined([parts[i] for i in range(len(parts))])
