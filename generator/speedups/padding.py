"""TensorFlow's "SAME" padding (timm's Conv2dSame) in one pass.

Models ported from TensorFlow pad a strided convolution's input by one pixel more after
than before, which PyTorch's convolutions cannot do; timm pads with F.pad first, which
fills the whole output before copying the input in. Here the input is copied into an
empty tensor and only the border is zeroed, and a change of number format rides along.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from .surgery import same_at_layer, set_module


def memory_format(x: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format


def _same_pad(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow's "SAME" padding of one axis: (before, after), the odd pixel after."""
    total = max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def same_pads(conv: nn.Conv2d, height: int, width: int) -> tuple[int, int, int, int]:
    """(left, right, top, bottom), as F.pad orders them, for an input of height x width."""
    top, bottom = _same_pad(height, conv.kernel_size[0], conv.stride[0], conv.dilation[0])
    left, right = _same_pad(width, conv.kernel_size[1], conv.stride[1], conv.dilation[1])
    return left, right, top, bottom


def pad_zeros(x: torch.Tensor, pads: tuple[int, int, int, int], dtype: torch.dtype | None = None) -> torch.Tensor:
    """`x` zero-padded by (left, right, top, bottom), in `dtype`, in its memory format; not tracked by autograd."""
    left, right, top, bottom = pads
    n, c, h, w = x.shape
    out = torch.empty((n, c, h + top + bottom, w + left + right), dtype=dtype or x.dtype, device=x.device,
                      memory_format=memory_format(x))
    out[:, :, top:top + h, left:left + w].copy_(x)
    for border in (out[:, :, :top], out[:, :, top + h:], out[:, :, :, :left], out[:, :, :, left + w:]):
        if border.numel():
            border.zero_()
    return out


class _PadCast(torch.autograd.Function):
    """Zero padding and a change of number format in one pass, tracked by autograd."""

    @staticmethod
    def forward(ctx, x, pads: tuple[int, int, int, int], dtype: torch.dtype):
        left, _, top, _ = pads
        ctx.inner, ctx.dtype, ctx.fmt = (top, x.shape[-2], left, x.shape[-1]), x.dtype, memory_format(x)
        return pad_zeros(x, pads, dtype)

    @staticmethod
    def backward(ctx, grad):
        top, h, left, w = ctx.inner
        inner = grad[:, :, top:top + h, left:left + w]
        return torch.empty(inner.shape, dtype=ctx.dtype, device=grad.device,
                           memory_format=ctx.fmt).copy_(inner), None, None


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
        pads = same_pads(c, x.shape[-2], x.shape[-1])
        dtype = self.compute_dtype or x.dtype
        padded = _PadCast.apply(x, pads, dtype) if any(pads) or dtype != x.dtype else x
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
