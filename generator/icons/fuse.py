"""Convolutions fused with the clipping activation after them, for rendering on the CPU.

After batch norms are folded, most of a mobile network is conv -> ReLU6 (or ReLU).
Unfused, the activation reads and writes the convolution's whole output once more in
the forward pass and keeps both tensors for the backward pass. oneDNN applies the
activation as the convolution writes its output (the same fused kernel PyTorch's
compiler uses for inference), and the backward pass needs only the output: the
gradient passes where the output is strictly inside the activation's range, exactly
where the input was. One pass over the largest tensors of a step fewer (BENCHMARKS.md).

Pairs are found by watching one forward pass, as in fold.py: an activation module
called once, on the very tensor a Conv2d just returned. The fused copy is checked
against the unfused network on that input and discarded if they differ.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .surgery import run_watched, same_at_layer, set_module

# (oneDNN post-op name, its arguments, low, high) per activation: the gradient passes where low < y < high.
_CLIPS = {nn.ReLU: ("relu", [], 0.0, float("inf")), nn.ReLU6: ("hardtanh", [0.0, 6.0], 0.0, 6.0)}


def fusable(device: torch.device) -> bool:
    return device.type == "cpu" and torch.backends.mkldnn.is_available() and \
        hasattr(torch.ops.mkldnn, "_convolution_pointwise")


def _clip(act: nn.Module) -> tuple[str, list[float], float, float] | None:
    if type(act) in _CLIPS:
        return _CLIPS[type(act)]
    if type(act) is nn.Hardtanh:
        return "hardtanh", [float(act.min_val), float(act.max_val)], float(act.min_val), float(act.max_val)
    return None


class _ConvClip(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, conv: nn.Conv2d, clip):
        post, args, low, high = clip
        y = torch.ops.mkldnn._convolution_pointwise(
            x, weight, bias, list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups, post, args, "")
        ctx.save_for_backward(x, weight, y)
        ctx.conv, ctx.low, ctx.high = conv, low, high
        return y

    @staticmethod
    def backward(ctx, grad_y):
        x, weight, y = ctx.saved_tensors
        conv = ctx.conv
        if ctx.high == float("inf"):
            grad = torch.ops.aten.threshold_backward(grad_y, y, ctx.low)
        else:
            grad = torch.ops.aten.hardtanh_backward(grad_y, y, ctx.low, ctx.high)
        grad_x = torch.ops.aten.convolution_backward(
            grad, x, weight, None, list(conv.stride), list(conv.padding), list(conv.dilation), False, [0, 0],
            conv.groups, [True, False, False])[0] if ctx.needs_input_grad[0] else None
        return grad_x, None, None, None, None


class ConvClip(nn.Module):
    """A Conv2d and the clipping activation after it, as one oneDNN kernel forward."""

    def __init__(self, conv: nn.Conv2d, act: nn.Module):
        super().__init__()
        self.conv, self.clip = conv, _clip(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _ConvClip.apply(x, self.conv.weight, self.conv.bias, self.conv, self.clip)


def _pairs(net: nn.Module, layer: str, example: torch.Tensor) -> list[tuple[str, str]]:
    """(conv name, activation name) for each clipping activation called once, on a Conv2d's output."""
    produced: dict[int, tuple[str, torch.Tensor]] = {}
    seen: dict[str, list[str | None]] = {}
    handles = []
    for name, module in net.named_modules():
        if type(module) is nn.Conv2d and module.padding_mode == "zeros" and isinstance(module.padding, tuple):
            def after(_m, _i, out, name=name):
                produced[id(out)] = (name, out)  # keep the tensor alive so its id is not reused

            handles.append(module.register_forward_hook(after))
        elif _clip(module) is not None:
            def before(_m, args, name=name):
                source = produced.get(id(args[0]))
                seen.setdefault(name, []).append(source[0] if source is not None and source[1] is args[0] else None)

            handles.append(module.register_forward_pre_hook(before))
    run_watched(net, layer, example, handles)
    return [(calls[0], act) for act, calls in seen.items() if len(calls) == 1 and calls[0] is not None]


def fuse_clips(net: nn.Module, layer: str, example: torch.Tensor) -> nn.Module:
    """A copy of `net` with conv -> ReLU/ReLU6 pairs fused, valid up to `layer`; `net` itself if none fuse."""
    fused = copy.deepcopy(net)
    count = 0
    for conv_name, act_name in _pairs(fused, layer, example):
        if layer in (conv_name, act_name):
            continue  # the layer's own output must stay what the user named
        set_module(fused, conv_name, ConvClip(fused.get_submodule(conv_name), fused.get_submodule(act_name)))
        set_module(fused, act_name, nn.Identity())
        count += 1
    if not count:
        return net
    return fused if same_at_layer(net, fused, layer, example) else net
