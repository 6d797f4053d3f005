"""Convolutions as single oneDNN kernels both ways, for rendering on the CPU.

Forward, a convolution and the clipping activation after it (ReLU, ReLU6) are one
kernel that clips as it writes (the fused kernel PyTorch's compiler uses for
inference); TensorFlow-style padding is done in the same module. Backward, the gradient
passes where the output is strictly inside the clip's range, which needs only the
output, and the input's gradient is computed with forward kernels too (input_grad.py).
Nothing but the output (for the clip) is kept for the backward pass. Kernels are
reordered into oneDNN's layout once per input shape, not on every call.

Convolutions are found by watching one forward pass, as in fold.py; an activation is
fused when it is called once, on the very tensor a convolution just returned. The
result is checked against the network as it was on that input and discarded if they
differ.
"""

from __future__ import annotations

import copy
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from . import input_grad
from .input_grad import InputGrad
from .padding import SamePadConv, pad_zeros, same_pads
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


class _Plan(NamedTuple):
    """A ConvClip's geometry for one input size and number format, worked out once."""

    pads: tuple[int, int, int, int]  # TensorFlow "SAME" padding (left, right, top, bottom), or zeros
    conv_args: tuple[list[int], list[int], list[int], int]  # padding, stride, dilation, groups
    back: InputGrad
    weight: torch.Tensor


def _plan(conv: nn.Conv2d, same: bool, shape: tuple[int, ...]) -> _Plan:
    height, width = shape[-2:]
    pads = same_pads(conv, height, width) if same else (0, 0, 0, 0)
    before = (pads[2] + conv.padding[0], pads[0] + conv.padding[1])
    after = (pads[3] + conv.padding[0], pads[1] + conv.padding[1])
    out = tuple((n + b + a - k) // s + 1 for n, b, a, k, s in
                zip((height, width), before, after, conv.kernel_size, conv.stride))
    back = input_grad.plan(conv.weight, conv.groups, conv.stride, before, (height, width), out, shape[0])
    weight, padding = conv.weight.detach(), list(conv.padding)
    if after == (before[0] + 1, before[1] + 1) and padding == [0, 0]:
        # TensorFlow's odd pixel after: a zero row and column before the kernel make the padding
        # symmetric, so the convolution pads as it reads instead of the input being copied.
        # (The gradient's plan keeps the kernel as it is: the zero taps would only add work.)
        weight, padding, pads = F.pad(weight, (1, 0, 1, 0)), list(after), (0, 0, 0, 0)
    padded = [shape[0], shape[1], height + pads[2] + pads[3], width + pads[0] + pads[1]]
    return _Plan(pads, (padding, list(conv.stride), [1, 1], conv.groups), back,
                 input_grad.pack(weight, padding, list(conv.stride), conv.groups, padded))


def conv_forward(x: torch.Tensor, bias: torch.Tensor | None, module: "ConvClip", plan: _Plan) -> torch.Tensor:
    """A ConvClip's output for input `x`: padding, convolution and clip, as `plan` says."""
    padded = pad_zeros(x, plan.pads) if any(plan.pads) else x
    return torch.ops.mkldnn._convolution_pointwise(padded, plan.weight, bias, *plan.conv_args, *module.post, "")


def conv_backward(grad: torch.Tensor, saved: torch.Tensor | None, clip: tuple | None, back: InputGrad) -> torch.Tensor:
    """A ConvClip's input gradient from its output's `grad`; `saved` is the output, where it clips."""
    if clip and clip[3] == float("inf"):
        grad = torch.ops.aten.threshold_backward(grad, saved, clip[2])
    elif clip:
        grad = torch.ops.aten.hardtanh_backward(grad, saved, clip[2], clip[3])
    return input_grad.input_grad(grad, back)


class _ConvClip(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, bias, module: "ConvClip", plan: _Plan):
        y = conv_forward(x, bias, module, plan)
        ctx.save_for_backward(*([y] if module.clip else []))
        ctx.clip, ctx.back = module.clip, plan.back
        return y

    @staticmethod
    def backward(ctx, grad_y):
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        saved = ctx.saved_tensors[0] if ctx.clip else None
        return conv_backward(grad_y, saved, ctx.clip, ctx.back), None, None, None


class ConvClip(nn.Module):
    """A Conv2d (with TensorFlow "SAME" padding when `same`) and the clipping activation after it, if any."""

    def __init__(self, conv: nn.Conv2d, act: nn.Module | None = None, same: bool = False):
        super().__init__()
        self.conv, self.clip, self.same = conv, _clip(act) if act is not None else None, same
        self.post = (self.clip[0], self.clip[1]) if self.clip else ("none", [])
        self._plans: dict[tuple, _Plan] = {}

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_plans": {}}  # oneDNN's reordered kernels cannot be copied; they are remade

    def plan(self, x: torch.Tensor) -> _Plan:
        """The plan for inputs shaped like `x`, made on first use."""
        weight = self.conv.weight
        key = (tuple(x.shape), weight.dtype, weight.device, weight.data_ptr(), weight._version)
        if key not in self._plans:
            # Plans for a former weight go, and all of them once there are many shapes (a build has two or three).
            if len(self._plans) >= 16 or any(k[3:] != key[3:] for k in self._plans):
                self._plans = {}
            self._plans[key] = _plan(self.conv, self.same, tuple(x.shape))
        return self._plans[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _ConvClip.apply(x, self.conv.bias, self, self.plan(x))


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
