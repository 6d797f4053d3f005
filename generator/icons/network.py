"""The network as the renderer runs it: cut at the layer, folded, fused, channels-last, in a chosen precision.

Every change here keeps the layer's activations (each is checked against the network
as loaded, or exact by construction) and only changes how fast a step is
(BENCHMARKS.md, "what each part buys").
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..collect import capture
from ..models import LoadedModel
from .fold import fold_batchnorm
from .fuse import ConvClip, fusable, fuse_convolutions
from .padding import SamePadConv, static_same_padding
from .surgery import set_module

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

    Batch norms are folded into the convolutions before them, TensorFlow-style padding
    takes one pass, convolutions run as oneDNN kernels both ways with the clipping
    activations after them fused (on the CPU), and channels-last memory makes the
    convolutions, depthwise ones above all, faster on the CPU (BENCHMARKS.md).
    """
    example = model.normalize(torch.rand(2, 3, model.input_size, model.input_size,
                                         generator=torch.Generator().manual_seed(0)))
    net = static_same_padding(fold_batchnorm(model.net, layer, example), layer, example)
    if fusable(device):
        net = fuse_convolutions(net, layer, example)
    dtype = PRECISIONS[precision]
    net = net.to(device, dtype, memory_format=torch.channels_last)
    for name, m in list(net.named_modules()):
        # An in-place activation on a channels-last tensor that autograd tracks copies its
        # result back: out of place, a step is a few per cent faster.
        if getattr(m, "inplace", False):
            m.inplace = False
        # oneDNN's bfloat16 backward pass of a strided depthwise convolution is about 20
        # times slower than its float32 one on the CPU. ConvClip computes it with forward
        # kernels; any such convolution left unconverted stays in float32.
        if dtype == torch.float32 or device.type != "cpu" or \
                isinstance(net.get_submodule(name.rpartition(".")[0]), (ConvClip, SamePadConv, _Float32)):
            continue
        if isinstance(m, SamePadConv) and _strided_depthwise(m.conv):
            m.conv.float()
            m.compute_dtype = torch.float32
        elif _strided_depthwise(m):
            set_module(net, name, _Float32(m))
    module = {layer: net.get_submodule(layer)}

    def forward(images: torch.Tensor) -> torch.Tensor:
        x = model.normalize(images).to(dtype).contiguous(memory_format=torch.channels_last)
        return capture(net, module, x)[layer]

    return forward
