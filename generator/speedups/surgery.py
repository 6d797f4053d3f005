"""Replacing a network's modules by name, and checking that the layer still gives the same output."""

from __future__ import annotations

import torch
from torch import nn

from ..collect import capture


def set_module(net: nn.Module, name: str, module: nn.Module) -> None:
    """Put `module` at the dotted `name` inside `net`."""
    parent, _, child = name.rpartition(".")
    setattr(net.get_submodule(parent) if parent else net, child, module)


def run_watched(net: nn.Module, layer: str, example: torch.Tensor, handles: list) -> None:
    """One forward pass of `example` up to `layer`, for the hooks in `handles`, which are removed after."""
    try:
        with torch.no_grad():
            capture(net, {layer: net.get_submodule(layer)}, example)
    finally:
        for h in handles:
            h.remove()


def same_at_layer(net: nn.Module, changed: nn.Module, layer: str, example: torch.Tensor, exact: bool = False) -> bool:
    """Whether `changed` gives `net`'s output at `layer` for `example`: equal, or within float32 rounding."""
    with torch.no_grad():
        want = capture(net, {layer: net.get_submodule(layer)}, example)[layer]
        got = capture(changed, {layer: changed.get_submodule(layer)}, example)[layer]
    if want.shape != got.shape:
        return False
    if exact:
        return torch.equal(want, got)
    return torch.allclose(want, got, rtol=1e-3, atol=1e-4 * float(want.abs().max()) + 1e-6)
