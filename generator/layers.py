"""A layer's output read as a feature map (C, H, W), whatever layout the network keeps it in.

Every stage after the model (collection, attribution, examples, icons) works on maps of
(batch, channels, rows, columns). Networks keep their layers in three layouts:
  map            (B, C, H, W), convolutional networks
  channels_last  (B, H, W, C), Swin and other timm models that say output_fmt = "NHWC"
  tokens         (B, T, C), vision transformers: `prefix` tokens first (the class token,
                 DeiT's distillation token, registers), then the H x W patches row by row

`view_of` tells them apart from one traced output. It assumes square inputs (every
stage feeds square crops), so a map's rows equal its columns. Prefix tokens are no place
in the image: a map leaves them out, and they are never sampled, scaled or optimized,
though attributions flow through them, since the network still runs them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

KINDS = ("map", "channels_last", "tokens")
MAX_PREFIX = 8  # most prefix tokens looked for when a model does not say (ViTs with registers have 5)


@dataclass(frozen=True)
class LayerView:
    kind: str = "map"
    prefix: int = 0  # tokens before the patches

    def to_map(self, out: torch.Tensor) -> torch.Tensor:
        """The layer's output -> (B, C, H, W)."""
        if self.kind == "map":
            return out
        if self.kind == "channels_last":
            return out.permute(0, 3, 1, 2)
        patches = out[:, self.prefix:]
        side = math.isqrt(patches.shape[1])
        return patches.transpose(1, 2).reshape(out.shape[0], out.shape[2], side, side)

    def from_map(self, fmap: torch.Tensor) -> torch.Tensor:
        """A map (B, C, H, W) in the layer's own layout; prefix tokens, if any, are zero."""
        if self.kind == "map":
            return fmap
        if self.kind == "channels_last":
            return fmap.permute(0, 2, 3, 1)
        patches = fmap.flatten(2).transpose(1, 2)
        prefix = torch.zeros(fmap.shape[0], self.prefix, fmap.shape[1], dtype=fmap.dtype, device=fmap.device)
        return torch.cat([prefix, patches], 1)

    def scale(self, out: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """The layer's output with each place multiplied by s (B, 1, H, W); prefix tokens as they are."""
        if self.kind == "map":
            return out * s
        if self.kind == "channels_last":
            return out * s.permute(0, 2, 3, 1)
        return torch.cat([out[:, :self.prefix], out[:, self.prefix:] * s.flatten(2).transpose(1, 2)], 1)

    def describe(self) -> str:
        """A few words for `atlas layers`; empty for a plain map."""
        if self.kind == "channels_last":
            return "channels last"
        if self.kind == "tokens":
            left = {0: "", 1: "; the class token left out"}.get(
                self.prefix, f"; {self.prefix} prefix tokens (class, distillation, registers) left out")
            return f"tokens on their grid of patches{left}"
        return ""


def _square(n: int) -> bool:
    return n >= 1 and math.isqrt(n) ** 2 == n


def view_of(shape: tuple[int, ...], prefix_hint: int | None = None,
            channels_last_hint: bool = False) -> LayerView | None:
    """How to read an output of `shape` (batch first) as a map, or None if it is no layer of places.

    `prefix_hint` is the model's own count of prefix tokens (timm's `num_prefix_tokens`),
    tried first; `channels_last_hint` breaks the tie of a map whose three sizes agree.
    """
    if len(shape) == 4:
        _, a, b, c = shape
        if b == c and not (channels_last_hint and a == b):
            return LayerView("map")
        if a == b:
            return LayerView("channels_last")
        return LayerView("map")  # not square: a map all the same, as the network's author laid it out
    if len(shape) == 3:
        tokens = shape[1]
        tries = ([prefix_hint] if prefix_hint is not None else []) + list(range(MAX_PREFIX + 1))
        for prefix in tries:
            if _square(tokens - prefix):
                return LayerView("tokens", prefix)
    return None


def model_hints(net: torch.nn.Module) -> tuple[int | None, bool]:
    """What a network says of its layout: its prefix token count, and whether its maps are channels-last."""
    prefix = getattr(net, "num_prefix_tokens", None)
    if prefix is None and isinstance(getattr(net, "class_token", None), torch.Tensor):
        prefix = 1  # torchvision's VisionTransformer
    return (int(prefix) if isinstance(prefix, int) else None,
            str(getattr(net, "output_fmt", "")).upper() == "NHWC")
