"""Activation vectors at sampled positions, with each one's attribution to every class.

Per layer, in `<cache>/activations/<layer>/`:
  activations.npy   (N, C) float16   the layer's channel vector at one spatial position
  attributions.npy  (N, K) float16   sum over channels of activation x d(logit_k)/d(activation)
                                     (either in float32 where its values pass float16's range)
  positions.npy     (N, 3) int32     crop index, row, column of each vector

The attribution of a position is the directional derivative of the logits along
that position's own activation, so one forward-mode pass gives all K classes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.autograd.forward_ad as fwAD
from torch import nn

from .errors import AtlasError
from .images import CropLoader, SamplePlan
from .models import LoadedModel
from .store import allocate_array

FLOAT16_MAX = float(np.finfo(np.float16).max)


class _Stop(Exception):
    """Raised from a forward hook to end a forward pass early."""


def capture(net: nn.Module, modules: dict[str, nn.Module], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The outputs of `modules` for input `x`; the forward pass stops once all have run."""
    out: dict[str, torch.Tensor] = {}
    handles = []
    for name, module in modules.items():
        def hook(_m, _i, o, name=name):
            out[name] = o
            if len(out) == len(modules):
                raise _Stop

        handles.append(module.register_forward_hook(hook))
    try:
        net(x)
    except _Stop:
        pass
    finally:
        for h in handles:
            h.remove()
    return out


def sample_positions(height: int, width: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` distinct (row, column) positions away from the border, as (count, 2)."""
    margin = 1 if min(height, width) >= 5 else 0
    rows = np.arange(margin, height - margin)
    cols = np.arange(margin, width - margin)
    grid = np.stack(np.meshgrid(rows, cols, indexing="ij"), -1).reshape(-1, 2)
    chosen = rng.choice(len(grid), size=min(count, len(grid)), replace=False)
    return grid[np.sort(chosen)]


def positions_per_image(shape: tuple[int, ...], wanted: int) -> int:
    _, height, width = shape
    margin = 1 if min(height, width) >= 5 else 0
    return min(wanted, (height - 2 * margin) * (width - 2 * margin))


class _Column:
    """A .npy memmap of float16 rows that turns into float32 once a value would not fit float16 (|x| > 65504)."""

    def __init__(self, path: Path, shape: tuple[int, int], what: str):
        self.path, self.what = path, what
        self.array = allocate_array(path, np.float16, shape)

    def write(self, rows: slice, values: np.ndarray) -> None:
        if not np.isfinite(values).all():
            raise AtlasError(f"{self.what} holds infinite or NaN values: the model overflows float32 on these "
                             "images; check its weights, or choose another layer")
        if self.array.dtype == np.float16 and len(values) and np.abs(values).max() > FLOAT16_MAX:
            tmp = self.path.with_name(self.path.name + ".tmp.npy")
            wider = allocate_array(tmp, np.float32, self.array.shape)
            wider[:rows.start] = self.array[:rows.start]  # float16 to float32 is exact
            tmp.replace(self.path)  # the mapping follows the file
            self.array = wider
        self.array[rows] = values.astype(self.array.dtype)


class Attributor:
    """Class attributions for activations of one layer, by forward-mode differentiation.

    The layer's output is replaced, through a hook, by a dual tensor whose tangent is
    the activation at one position and zero elsewhere; the logits' tangent is then the
    attribution of that position to every class. Each image's activation is repeated
    once per position *after* the layer, so the layers before it run once per image;
    models whose skip connections cross the layer cannot take that and fall back to
    repeating the input.
    """

    def __init__(self, model: LoadedModel, layer: str):
        self.net, self.module = model.net, model.layer(layer)
        self.repeat_input = False

    def __call__(self, x: torch.Tensor, acts: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """x (B, 3, H, W) network input, acts (B, C, h, w), positions (B, P, 2) -> (B * P, K)."""
        batch, count = positions.shape[:2]
        primal = acts.repeat_interleave(count, 0)
        rows = positions[..., 0].reshape(-1)
        cols = positions[..., 1].reshape(-1)
        index = torch.arange(batch * count)
        tangent = torch.zeros_like(primal)
        tangent[index, :, rows, cols] = primal[index, :, rows, cols]
        if not self.repeat_input:
            try:
                return self._run(x, primal, tangent)
            except RuntimeError:
                self.repeat_input = True
        return self._run(x.repeat_interleave(count, 0), primal, tangent)

    def _run(self, x: torch.Tensor, primal: torch.Tensor, tangent: torch.Tensor) -> torch.Tensor:
        with fwAD.dual_level():
            dual = fwAD.make_dual(primal, tangent)
            handle = self.module.register_forward_hook(lambda _m, _i, _o: dual)
            try:
                logits = self.net(x)
            finally:
                handle.remove()
            result = fwAD.unpack_dual(logits).tangent
        if result is None or result.shape[0] != primal.shape[0]:
            raise RuntimeError("layer output did not reach the logits batch for batch")
        return result


def collect_activations(
    model: LoadedModel,
    layers: list[str],
    plan: SamplePlan,
    folders: dict[str, Path],
    positions: int,
    batch_size: int,
    seed: int,
    progress: Callable[[int], None] = lambda n: None,
) -> dict[str, int]:
    """Write activations, attributions and positions for every layer into `folders[layer]`.

    Streams crops in batches of `batch_size`, writing into preallocated .npy memmaps,
    so memory stays bounded whatever the number of images. Returns N per layer.
    """
    shapes = model.layer_shapes()
    modules = {name: model.layer(name) for name in layers}
    attributors = {name: Attributor(model, name) for name in layers}
    per_image = {name: positions_per_image(shapes[name], positions) for name in layers}
    n_crops = len(plan.crops)
    num_classes = len(model.class_names)
    outputs = {}
    for name in layers:
        folders[name].mkdir(parents=True, exist_ok=True)
        n = n_crops * per_image[name]
        outputs[name] = (
            _Column(folders[name] / "activations.npy", (n, shapes[name][0]), f"layer {name}'s activations"),
            _Column(folders[name] / "attributions.npy", (n, num_classes), f"layer {name}'s class attributions"),
            allocate_array(folders[name] / "positions.npy", np.int32, (n, 3)),
        )
    # Seeded by the layer's name, not its place in `layers`: a layer's positions must not depend on which
    # other layers are collected with it (a rebuild collects only the layers whose cache is missing).
    rngs = {name: np.random.default_rng([seed, 2, int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)])
            for name in layers}
    loader = CropLoader(plan, model.input_size)
    for start in range(0, n_crops, batch_size):
        crop_ids = range(start, min(start + batch_size, n_crops))
        x = model.normalize(loader.load(crop_ids))
        with torch.no_grad():
            acts = capture(model.net, modules, x)
        for name in layers:
            layer_acts = acts[name].detach()
            _, _, height, width = layer_acts.shape
            count = per_image[name]
            pos = np.stack([sample_positions(height, width, count, rngs[name]) for _ in crop_ids])
            pos_t = torch.from_numpy(pos).long()
            with torch.no_grad():
                attr = attributors[name](x, layer_acts, pos_t)
            b = torch.arange(len(crop_ids)).repeat_interleave(count)
            vectors = layer_acts[b, :, pos_t[..., 0].reshape(-1), pos_t[..., 1].reshape(-1)]
            rows = slice(start * count, (start + len(crop_ids)) * count)
            act_out, attr_out, pos_out = outputs[name]
            act_out.write(rows, vectors.numpy())
            attr_out.write(rows, attr.numpy())
            pos_out[rows] = np.concatenate([np.repeat(np.asarray(crop_ids)[:, None], count, 0),
                                            pos.reshape(-1, 2)], 1)
        progress(len(crop_ids))
    for act_out, attr_out, pos_out in outputs.values():
        for array in (act_out.array, attr_out.array, pos_out):
            array.flush()
    return {name: n_crops * per_image[name] for name in layers}
