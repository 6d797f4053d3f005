"""The optimization loop: icons for many directions at once, and their fidelity.

Artifact: `<cache>/icons/<layer>/<batch key>.npz` with `icons` (B, S, S, 3) uint8 and
`fidelity` (B,) float32, one file per batch of directions. A batch's key covers the
model, layer, its directions and the render settings, so unchanged batches are never
rendered twice and an interrupted build resumes at the first missing batch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..collect import capture
from ..models import LoadedModel
from ..store import array_digest, make_key
from .objectives import cosine_at_centre, direction_objective
from .param import FourierImage
from .transform import robust_transform


@dataclass(frozen=True)
class RenderSettings:
    size_px: int = 64
    steps: int = 128
    tries: int = 1
    learning_rate: float = 0.05
    cossim_power: float = 2.0
    batch_size: int = 32


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _layer_fn(model: LoadedModel, layer: str, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """Images in [0, 1] -> the layer's activations; the network stops at the layer.

    Channels-last memory makes the convolutions, depthwise ones above all, 1.3 to 1.5
    times faster on the CPU (BENCHMARKS.md).
    """
    net = model.net.to(device, memory_format=torch.channels_last)
    module = {layer: model.layer(layer)}

    def forward(images: torch.Tensor) -> torch.Tensor:
        x = model.normalize(images).contiguous(memory_format=torch.channels_last)
        return capture(net, module, x)[layer]

    return forward


def fidelity(model: LoadedModel, layer: str, icons: torch.Tensor, directions: torch.Tensor,
             device: torch.device | None = None) -> torch.Tensor:
    """Cosine between each direction and the activation at the centre of its untransformed icon.

    icons (N, 3, S, S) in [0, 1]; directions (N, C). Returns (N,) on the CPU.
    """
    device = device or icons.device
    forward = _layer_fn(model, layer, device)
    with torch.no_grad():
        acts = forward(icons.to(device))
    return cosine_at_centre(acts.float(), directions.to(device).float()).cpu()


def _render_batch(forward, model, layer, directions: torch.Tensor, s: RenderSettings, seed: int,
                  device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    generator = torch.Generator().manual_seed(seed)
    count = len(directions)
    unit = torch.nn.functional.normalize(directions.float(), dim=1).to(device)
    targets = unit.repeat(s.tries, 1)
    image = FourierImage(count * s.tries, s.size_px, generator).to(device)
    optimizer = torch.optim.Adam(image.parameters(), lr=s.learning_rate)
    for _ in range(s.steps):
        optimizer.zero_grad(set_to_none=True)
        view = robust_transform(image(), generator)
        objective = direction_objective(forward(view), targets, s.cossim_power)
        (-objective.sum()).backward()
        optimizer.step()
    with torch.no_grad():
        final = image()
    scores = fidelity(model, layer, final, targets, device).view(s.tries, count)
    best = scores.argmax(0)
    chosen = final.view(s.tries, count, *final.shape[1:])[best, torch.arange(count)]
    icons = (chosen.permute(0, 2, 3, 1).clamp(0, 1) * 255).round().byte().cpu().numpy()
    return icons, scores.max(0).values.numpy().astype(np.float32)


def render_icons(
    model: LoadedModel,
    layer: str,
    directions: np.ndarray,
    settings: RenderSettings,
    seed: int = 0,
    device: str = "auto",
    cache_dir: Path | None = None,
    progress: Callable[[int], None] = lambda n: None,
) -> tuple[np.ndarray, np.ndarray]:
    """Icons (M, S, S, 3) uint8 and their fidelity (M,) for directions (M, C).

    Each icon starts from seeded noise and follows Adam on the direction objective
    through random transforms; of `tries` starts, the one whose untransformed
    icon points closest to the direction is kept. `progress` is called with
    the number of icons finished.
    """
    dev = pick_device(device)
    for p in model.net.parameters():
        p.requires_grad_(False)
    forward = _layer_fn(model, layer, dev)
    icons, scores = [], []
    settings_key = asdict(settings)
    for start in range(0, len(directions), settings.batch_size):
        batch = np.ascontiguousarray(directions[start:start + settings.batch_size], dtype=np.float32)
        key = make_key("icons", model.spec, model.weights_id, layer, settings_key, seed, array_digest(batch))
        path = cache_dir / f"{key}.npz" if cache_dir else None
        if path is not None and path.is_file():
            with np.load(path) as saved:
                icons.append(saved["icons"])
                scores.append(saved["fidelity"])
            progress(len(batch))
            continue
        batch_seed = int(key[:15], 16)
        result = _render_batch(forward, model, layer, torch.from_numpy(batch), settings, batch_seed, dev)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, icons=result[0], fidelity=result[1])
            tmp.replace(path)
        icons.append(result[0])
        scores.append(result[1])
        progress(len(batch))
    if not icons:
        return np.zeros((0, settings.size_px, settings.size_px, 3), np.uint8), np.zeros(0, np.float32)
    model.net.to("cpu", memory_format=torch.contiguous_format)
    return np.concatenate(icons), np.concatenate(scores)
