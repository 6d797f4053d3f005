"""Convolutions as single oneDNN kernels both ways, for rendering on the CPU.

Forward, a convolution and the clipping activation after it (ReLU, ReLU6) are one
kernel that clips as it writes (the fused kernel PyTorch's compiler uses for
inference); TensorFlow-style padding is done in the same module. Backward, the gradient
passes where the output is strictly inside the clip's range, which needs only the
output, and the gradient of the input is computed as a forward convolution of the
gradient with the flipped, transposed kernel (spread out by the stride): oneDNN's
forward kernels are about twice as fast as its backward-data ones for depthwise
convolutions, and for strided ones in bfloat16 about twenty times (BENCHMARKS.md).
Nothing but the output (for the clip) is kept for the backward pass.

Convolutions are found by watching one forward pass, as in fold.py; an activation is
fused when it is called once, on the very tensor a convolution just returned. The
result is checked against the network as it was on that input and discarded if they
differ.
"""

from __future__ import annotations

import copy
from typing import NamedTuple

import torch
from torch import nn

from .padding import SamePadConv, memory_format, pad_zeros, same_pads
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


def backward_kernel(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """The kernel whose forward convolution is `weight`'s transpose: in and out channels swapped per group, flipped."""
    out_ch, in_per_group, kh, kw = weight.shape
    swapped = weight.reshape(groups, out_ch // groups, in_per_group, kh, kw).transpose(1, 2)
    return swapped.reshape(groups * in_per_group, out_ch // groups, kh, kw).flip(-2, -1).contiguous()


class _Plan(NamedTuple):
    """A ConvClip's geometry for one input size, worked out once."""

    pads: tuple[int, int, int, int]  # TensorFlow "SAME" padding (left, right, top, bottom), or zeros
    conv_args: tuple[list[int], list[int], list[int], int]  # padding, stride, dilation, groups
    grid: tuple[int, int] | None  # the input gradient's zero grid (see _plan), None where the gradient itself serves
    spread: tuple[slice, slice, slice, slice]  # where the output's gradient goes on that grid, and which of it
    back_padding: list[int]


def _plan(conv: nn.Conv2d, same: bool, height: int, width: int) -> _Plan:
    """How to pad the input forward, and how to turn the output's gradient into the input's backward.

    Output pixel i reads input pixels s*i - b + a for a < k (b: padding before), so the
    input's gradient is a stride-1 convolution, with the flipped, transposed kernel and
    padding q, of a zero grid holding output pixel i's gradient at s*i + k - 1 - q - b;
    q is as large as keeps every position on the grid, so that the grid is the input's
    size and, at stride 1, is the gradient itself.
    """
    pads = same_pads(conv, height, width) if same else (0, 0, 0, 0)
    befores = (pads[2] + conv.padding[0], pads[0] + conv.padding[1])
    sizes = (height, width)
    outs = tuple((n + b + a - k) // s + 1 for n, b, a, k, s in
                 zip(sizes, befores, (pads[3] + conv.padding[0], pads[1] + conv.padding[1]),
                     conv.kernel_size, conv.stride))
    q_pads, lengths, places, keeps = [], [], [], []
    for n, k, s, b, o in zip(sizes, conv.kernel_size, conv.stride, befores, outs):
        q = max(0, min(k - 1 - b, n - 1 - s * (o - 1) + b))
        offset, length = k - 1 - q - b, n - 2 * q + k - 1
        # With q = 0, positions off the grid belong to outputs that read only padding: dropped.
        first, last = max(0, -(offset // s)), min(o, (length - 1 - offset) // s + 1)
        start = offset + s * first
        q_pads.append(q), lengths.append(length)
        places.append(slice(start, start + s * (last - first - 1) + 1, s)), keeps.append(slice(first, last))
    identity = conv.stride == (1, 1) and all(p.start == 0 and p.stop == n for p, n in zip(places, lengths)) and \
        tuple(lengths) == outs
    return _Plan(pads, (list(conv.padding), list(conv.stride), [1, 1], conv.groups),
                 None if identity else tuple(lengths), (*places, *keeps), q_pads)


class _ConvClip(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, kernel, module: "ConvClip", plan: _Plan):
        padded = pad_zeros(x, plan.pads) if any(plan.pads) else x
        y = torch.ops.mkldnn._convolution_pointwise(padded, weight, bias, *plan.conv_args, *module.post, "")
        ctx.save_for_backward(kernel, *([y] if module.clip else []))
        ctx.module, ctx.plan = module, plan
        return y

    @staticmethod
    def backward(ctx, grad_y):
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None, None
        kernel, *output = ctx.saved_tensors
        clip, plan = ctx.module.clip, ctx.plan
        grad = grad_y
        if clip and clip[3] == float("inf"):
            grad = torch.ops.aten.threshold_backward(grad_y, output[0], clip[2])
        elif clip:
            grad = torch.ops.aten.hardtanh_backward(grad_y, output[0], clip[2], clip[3])
        if plan.grid is not None:
            rows, cols, keep_rows, keep_cols = plan.spread
            grid = torch.empty((*grad.shape[:2], *plan.grid), dtype=grad.dtype, device=grad.device,
                               memory_format=memory_format(grad)).zero_()
            grid[:, :, rows, cols] = grad[:, :, keep_rows, keep_cols]
            grad = grid
        grad_x = torch.ops.mkldnn._convolution_pointwise(grad, kernel, None, plan.back_padding, [1, 1], [1, 1],
                                                         plan.conv_args[3], "none", [], "")
        return grad_x, None, None, None, None, None


class ConvClip(nn.Module):
    """A Conv2d (with TensorFlow "SAME" padding when `same`) and the clipping activation after it, if any."""

    def __init__(self, conv: nn.Conv2d, act: nn.Module | None = None, same: bool = False):
        super().__init__()
        self.conv, self.clip, self.same = conv, _clip(act) if act is not None else None, same
        self.post = (self.clip[0], self.clip[1]) if self.clip else ("none", [])
        self.register_buffer("kernel", backward_kernel(conv.weight.detach(), conv.groups), persistent=False)
        self._plans: dict[tuple[int, int], _Plan] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = (x.shape[-2], x.shape[-1])
        if size not in self._plans:
            self._plans[size] = _plan(self.conv, self.same, *size)
        return _ConvClip.apply(x, self.conv.weight, self.conv.bias, self.kernel, self, self._plans[size])


def _convertible(module: nn.Module) -> bool:
    conv = module.conv if type(module) is SamePadConv else module
    return type(module) in (nn.Conv2d, SamePadConv) and conv.padding_mode == "zeros" and \
        isinstance(conv.padding, tuple) and conv.dilation == (1, 1) and \
        (type(module) is nn.Conv2d or module.compute_dtype is None)


def _watch(net: nn.Module, layer: str, example: torch.Tensor) -> tuple[list[str], dict[str, str]]:
    """Convolutions called once up to `layer`, and for each, the clipping activation called once on its output."""
    produced: dict[int, tuple[str, torch.Tensor]] = {}
    calls: dict[str, int] = {}
    seen: dict[str, list[str | None]] = {}
    handles = []
    for name, module in net.named_modules():
        if _convertible(module):
            def after(_m, _i, out, name=name):
                calls[name] = calls.get(name, 0) + 1
                produced[id(out)] = (name, out)  # keep the tensor alive so its id is not reused

            handles.append(module.register_forward_hook(after))
        elif _clip(module) is not None:
            def before(_m, args, name=name):
                source = produced.get(id(args[0]))
                seen.setdefault(name, []).append(source[0] if source is not None and source[1] is args[0] else None)

            handles.append(module.register_forward_pre_hook(before))
    run_watched(net, layer, example, handles)
    convs = [name for name, count in calls.items() if count == 1]
    clips = {sources[0]: act for act, sources in seen.items() if len(sources) == 1 and sources[0] in convs}
    return convs, clips


def fuse_convolutions(net: nn.Module, layer: str, example: torch.Tensor) -> nn.Module:
    """A copy of `net` with its convolutions as ConvClip, clips fused, valid up to `layer`; `net` itself if none change."""
    fused = copy.deepcopy(net)
    convs, clips = _watch(fused, layer, example)
    count = 0
    for name in convs:
        if name == layer:
            continue  # the layer a user named keeps its own module
        act = clips.get(name) if clips.get(name) != layer else None
        module = fused.get_submodule(name)
        same = type(module) is SamePadConv
        set_module(fused, name, ConvClip(module.conv if same else module,
                                         fused.get_submodule(act) if act else None, same))
        if act:
            set_module(fused, act, nn.Identity())
        count += 1
    if not count:
        return net
    return fused if same_at_layer(net, fused, layer, example) else net
