"""Folding eval-mode batch norms into the convolutions before them, for rendering.

In eval mode a batch norm is a per-channel affine map, so a convolution followed by one
is a single convolution with rescaled weights and a bias. Removing the batch norm
removes its forward and backward kernels and their copies: about 1.5 times more
icon-steps per second on EfficientNet-Lite0 (BENCHMARKS.md).

Pairs are found by watching one forward pass: a batch norm whose input is the very
tensor a Conv2d just returned. The folded copy is checked against the original on
that input and discarded if they differ, so a model where the pattern does not hold
(a convolution output also used elsewhere) still renders, only without the speed-up.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .surgery import run_watched, same_at_layer, set_module


def _replacement(bn: nn.Module) -> nn.Module | None:
    """What a batch norm becomes once its affine map lives in the convolution, or None if unknown."""
    if type(bn) in (nn.BatchNorm2d,):
        return nn.Identity()
    # timm's BatchNormAct2d: batch norm, then dropout and activation modules of its own.
    if isinstance(bn, nn.BatchNorm2d) and isinstance(getattr(bn, "act", None), nn.Module) \
            and isinstance(getattr(bn, "drop", None), nn.Module):
        return nn.Sequential(bn.drop, bn.act)
    return None


def _pairs(net: nn.Module, layer: str, example: torch.Tensor) -> list[tuple[str, str]]:
    """(conv name, batch norm name) for each batch norm fed directly by a convolution, up to `layer`."""
    produced: dict[int, tuple[str, torch.Tensor]] = {}
    pairs: list[tuple[str, str]] = []
    handles = []
    for name, module in net.named_modules():
        if isinstance(module, nn.Conv2d):
            def after(_m, _i, out, name=name):
                produced[id(out)] = (name, out)  # keep the tensor alive so its id is not reused

            handles.append(module.register_forward_hook(after))
        elif isinstance(module, nn.BatchNorm2d) and not module.training and module.track_running_stats:
            def before(_m, args, name=name):
                source = produced.get(id(args[0]))
                if source is not None and source[1] is args[0]:
                    pairs.append((source[0], name))

            handles.append(module.register_forward_pre_hook(before))
    run_watched(net, layer, example, handles)
    return pairs


def fold_batchnorm(net: nn.Module, layer: str, example: torch.Tensor) -> nn.Module:
    """A copy of `net` with conv -> batch norm pairs folded, valid up to `layer`; `net` itself if none fold."""
    folded = copy.deepcopy(net)
    count = 0
    with torch.no_grad():
        for conv_name, bn_name in _pairs(folded, layer, example):
            conv, bn = folded.get_submodule(conv_name), folded.get_submodule(bn_name)
            replacement = _replacement(bn)
            if replacement is None or bn_name == layer:
                continue
            scale = torch.rsqrt(bn.running_var + bn.eps)
            if bn.weight is not None:
                scale = scale * bn.weight
            shift = -bn.running_mean * scale
            if bn.bias is not None:
                shift = shift + bn.bias
            if conv.bias is not None:
                shift = shift + conv.bias * scale
            conv.weight.mul_(scale.view(-1, *([1] * (conv.weight.dim() - 1))))
            conv.bias = nn.Parameter(shift, requires_grad=False)
            set_module(folded, bn_name, replacement)
            count += 1
    if not count:
        return net
    if not same_at_layer(net, folded, layer, example):
        return net
    for p in folded.parameters():
        p.requires_grad_(False)
    return folded
