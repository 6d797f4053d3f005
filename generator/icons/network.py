"""The network as the renderer runs it: cut at the layer, folded, fused, channels-last, in a chosen precision.

Every change here keeps the layer's activations (each is checked against the network
as loaded, or exact by construction) and only changes how fast a step is
(BENCHMARKS.md, "what each part buys").
"""

from __future__ import annotations

import copy
import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..collect import capture
from ..models import LoadedModel
from .fold import fold_batchnorm
from .fuse import ConvClip, fusable, fuse_clips
from .surgery import same_at_layer, set_module

PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def pick_precision(name: str, device: torch.device) -> str:
    """"auto": bfloat16 on a CPU with AMX tiles, where it is faster at the same fidelity (BENCHMARKS.md); else float32.

    CUDA stays at float32 (cuDNN's convolutions use TF32 already) until bfloat16 is
    measured there.
    """
    if name != "auto":
        return name
    amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    return "bfloat16" if device.type == "cpu" and torch.backends.mkldnn.is_available() and amx() else "float32"


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format


class _PadCast(torch.autograd.Function):
    """Zero padding and a change of number format in one pass; F.pad would fill the whole output first."""

    @staticmethod
    def forward(ctx, x, pads: tuple[int, int, int, int], dtype: torch.dtype):
        left, right, top, bottom = pads
        n, c, h, w = x.shape
        fmt = _memory_format(x)
        out = torch.empty((n, c, h + top + bottom, w + left + right), dtype=dtype, device=x.device,
                          memory_format=fmt)
        out[:, :, top:top + h, left:left + w].copy_(x)
        for border in (out[:, :, :top], out[:, :, top + h:], out[:, :, :, :left], out[:, :, :, left + w:]):
            if border.numel():
                border.zero_()
        ctx.inner, ctx.dtype, ctx.fmt = (top, h, left, w), x.dtype, fmt
        return out

    @staticmethod
    def backward(ctx, grad):
        top, h, left, w = ctx.inner
        inner = grad[:, :, top:top + h, left:left + w]
        return torch.empty(inner.shape, dtype=ctx.dtype, device=grad.device,
                           memory_format=ctx.fmt).copy_(inner), None, None


def _same_pad(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow's "SAME" padding of one axis: (before, after), the odd pixel after."""
    total = max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class SamePadConv(nn.Module):
    """A convolution with TensorFlow's "SAME" padding (timm's Conv2dSame), padded in one pass.

    `compute_dtype` runs the convolution in another number format than the network's,
    cast in the same pass as the padding.
    """

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.conv = conv
        self.compute_dtype: torch.dtype | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv
        top, bottom = _same_pad(x.shape[-2], c.kernel_size[0], c.stride[0], c.dilation[0])
        left, right = _same_pad(x.shape[-1], c.kernel_size[1], c.stride[1], c.dilation[1])
        dtype = self.compute_dtype or x.dtype
        padded = _PadCast.apply(x, (left, right, top, bottom), dtype) if top or bottom or left or right \
            or dtype != x.dtype else x
        return F.conv2d(padded, c.weight, c.bias, c.stride, 0, c.dilation, c.groups).to(x.dtype)


def static_same_padding(net: nn.Module, layer: str, example: torch.Tensor) -> nn.Module:
    """A copy of `net` with timm's Conv2dSame modules as SamePadConv; `net` itself if it has none or they differ."""
    names = [name for name, m in net.named_modules()
             if type(m).__name__ == "Conv2dSame" and isinstance(m, nn.Conv2d) and m.padding_mode == "zeros"]
    if not names:
        return net
    padded = copy.deepcopy(net)
    for name in names:
        set_module(padded, name, SamePadConv(padded.get_submodule(name)))
    return padded if same_at_layer(net, padded, layer, example, exact=True) else net


class _Float32(nn.Module):
    """A module run in float32 inside a bfloat16 network."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x.float()).to(x.dtype)


def _strided_depthwise(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d) and 1 < m.groups == m.in_channels and max(m.stride) > 1


def layer_fn(model: LoadedModel, layer: str, device: torch.device,
             precision: str = "float32") -> Callable[[torch.Tensor], torch.Tensor]:
    """Images in [0, 1] -> the layer's activations; the network stops at the layer.

    Batch norms are folded into the convolutions before them, clipping activations are
    fused into the convolutions before them (on the CPU), TensorFlow-style padding takes
    one pass, and channels-last memory makes the convolutions, depthwise ones above all,
    faster on the CPU (BENCHMARKS.md).
    """
    example = model.normalize(torch.rand(2, 3, model.input_size, model.input_size,
                                         generator=torch.Generator().manual_seed(0)))
    net = fold_batchnorm(model.net, layer, example)
    if fusable(device):
        net = fuse_clips(net, layer, example)
    net = static_same_padding(net, layer, example)
    dtype = PRECISIONS[precision]
    net = net.to(device, dtype, memory_format=torch.channels_last)
    for name, m in list(net.named_modules()):
        # An in-place activation on a channels-last tensor that autograd tracks copies its
        # result back: out of place, a step is a few per cent faster.
        if getattr(m, "inplace", False):
            m.inplace = False
        # oneDNN's bfloat16 backward pass of a strided depthwise convolution is about 20
        # times slower than its float32 one on the CPU; those few stay in float32.
        if dtype == torch.float32 or device.type != "cpu" or \
                isinstance(net.get_submodule(name.rpartition(".")[0]), (ConvClip, SamePadConv, _Float32)):
            continue
        if isinstance(m, SamePadConv) and _strided_depthwise(m.conv):
            m.conv.float()
            m.compute_dtype = torch.float32
        elif _strided_depthwise(m.conv if isinstance(m, ConvClip) else m):
            set_module(net, name, _Float32(m))
    module = {layer: net.get_submodule(layer)}

    def forward(images: torch.Tensor) -> torch.Tensor:
        x = model.normalize(images).to(dtype).contiguous(memory_format=torch.channels_last)
        return capture(net, module, x)[layer]

    return forward
