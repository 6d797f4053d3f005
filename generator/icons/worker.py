"""What an engine runs for render_icons: module-level functions of picklable arguments.

Each takes a ModelSource, not a model: a worker process loads the model once
(engine.load_model_cached) and keeps the network prepared for one (model, layer, device,
precision) until it is asked for another. The driver decides everything that batches
must agree on (device, precision, batch size, each batch's seed) and sends it with them,
so a batch's icons do not depend on the process that rendered it.
"""

from __future__ import annotations

import numpy as np
import torch

from ..engine import ModelSource, load_model_cached
from ..speedups import auto_batch_size, bytes_per_icon, keep_freed_memory, total_memory

# (source, layer, device, precision, objective) -> (model, forward, scorer, {(size_px, tries, batch_size) memory
# was kept for}): the network depends on the spec only through its precision and what its objective reads.
_PREPARED: dict = {}


def release_networks() -> None:
    """Forget the prepared network, and put its model back on the CPU in the layout it was loaded in."""
    for model, *_ in _PREPARED.values():
        model.net.to("cpu", memory_format=torch.contiguous_format)
    _PREPARED.clear()


def _networks(source: ModelSource, layer: str, device: str, spec):
    """(model, optimizing network, float32 scoring network, spec with a batch size), prepared once a process."""
    from . import render  # through the module: tests count and replace its parts

    dev = torch.device(device)
    key = (source, layer, device, spec.precision, spec.objective)
    if key not in _PREPARED:
        release_networks()
        model = load_model_cached(source)
        forward, scorer, spec = render.prepare(model, layer, dev, spec)
        _PREPARED[key] = (model, forward, scorer, {(spec.size_px, spec.tries, spec.batch_size)})
        return model, forward, scorer, spec
    model, forward, scorer, kept = _PREPARED[key]
    if not spec.batch_size:
        spec = spec.with_(batch_size=auto_batch_size(forward, spec.size_px, spec.tries, dev))
    shape = (spec.size_px, spec.tries, spec.batch_size)
    if dev.type == "cpu" and shape not in kept:
        keep_freed_memory(bytes_per_icon(forward, spec.size_px, dev) * spec.batch_size * spec.tries)
        kept.add(shape)
    return model, forward, scorer, spec


def worker_facts(device: str, precision: str) -> tuple[str, str, int]:
    """What "auto" means where this runs: (device, precision, that device's memory in bytes)."""
    from ..speedups import pick_precision
    from .render import pick_device

    dev = pick_device(device)
    return str(dev), pick_precision(precision, dev), total_memory(dev)


def probe_batch_size(source: ModelSource, layer: str, device: str, spec) -> int:
    """Directions per batch for `spec` (batch_size 0) on this device, from its memory."""
    return _networks(source, layer, device, spec)[3].batch_size


def render_batch(source: ModelSource, layer: str, device: str, spec, whiten: np.ndarray | None,
                 amplitude: np.ndarray | None, directions: np.ndarray, seed: int, start: np.ndarray | None,
                 has_start: np.ndarray | None):
    """One batch: icons (B, S, S, C) uint8, fidelity (B,) float32, objective (B,) float32, and with the spec's
    mask, masks (B, S, S) uint8 (see render._render_batch)."""
    from . import render

    model, forward, scorer, spec = _networks(source, layer, device, spec)
    # Arrays from Ray's object store are read-only; torch wants its own.
    directions = torch.from_numpy(np.array(directions, np.float32))
    whiten = None if whiten is None else np.array(whiten)
    amplitude = None if amplitude is None else np.array(amplitude)
    return render._render_batch(forward, model, layer, directions, spec, seed, torch.device(device), start,
                                has_start, whiten, scorer, amplitude)
