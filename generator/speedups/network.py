"""The network as the renderer runs it: cut at the layer, folded, fused, channels-last, in a chosen precision.

Every change here keeps the layer's activations (each is checked against the network
as loaded, or exact by construction) and only changes how fast a step is
(BENCHMARKS.md, "what each part buys"). `SpeedOptions` switches each one, for
benchmarks and for tests; the renderer uses them all.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..collect import capture
from ..models import LoadedModel
from .fold import fold_batchnorm
from .fuse import ConvClip, fusable, fuse_convolutions
from .padding import SamePadConv, static_same_padding
from .surgery import set_module
from .tape import Tape, same_bits

PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16}
READS = ("all", "centre")  # what part of the layer an objective reads (icons/objectives.py)


@dataclass(frozen=True)
class SpeedOptions:
    """How the forward pass is built. Only `precision` changes what a step computes beyond float rounding."""

    precision: str = "float32"  # "float32" or "bfloat16"; "auto" is resolved by pick_precision first
    fold_batchnorm: bool = True  # batch norms into the convolutions before them (fold.py)
    same_padding: bool = True  # TensorFlow "SAME" padding in one pass (padding.py)
    fuse: bool = True  # convolutions and their clips as oneDNN kernels both ways, on the CPU (fuse.py)
    tape: bool = True  # the fused network as one autograd node (tape.py)
    centre_only: bool = True  # for an objective that reads only the centre, only what the centre depends on


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


class _SignedInput(torch.autograd.Function):
    """Images in (-1, 1) as the network's input: normalized, in its number format, channels-last, in one pass."""

    @staticmethod
    def forward(ctx, signed, scale, shift, dtype):
        # Laid out channels-last after the cast: a third faster than casting into channels-last.
        out = torch.empty(signed.shape, dtype=dtype, device=signed.device)
        torch.addcmul(shift, signed, scale, out=out)
        ctx.scale, ctx.dtype = scale, signed.dtype
        return out.contiguous(memory_format=torch.channels_last)

    @staticmethod
    def backward(ctx, grad):
        out = torch.empty(grad.shape, dtype=ctx.dtype, device=grad.device)
        return torch.mul(grad, ctx.scale, out=out), None, None, None


class LayerFn:
    """Images -> the layer's activations, through the network as layer_fn prepared it."""

    def __init__(self, model: LoadedModel, net: nn.Module, layer: str, device: torch.device, dtype: torch.dtype,
                 tape: Tape | None = None, centre_only: bool = False):
        self.model, self.net, self.layer, self.dtype, self.tape = model, net, layer, dtype, tape
        self.view = model.view(layer)
        self.centre_only = centre_only and tape is not None
        self.module = {layer: net.get_submodule(layer)}
        self.fits: dict[int, bool] = {}  # input size -> whether the network takes it as it is
        mean = torch.tensor(model.mean, device=device).view(1, -1, 1, 1)
        std = torch.tensor(model.std, device=device).view(1, -1, 1, 1)
        # normalize((s + 1) / 2) = s * scale + shift for images s in (-1, 1).
        self.scale, self.shift = 0.5 / std, (0.5 - mean) / std

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1]."""
        x = self.model.normalize(self.sized(images)).to(self.dtype)
        return self.run(x.contiguous(memory_format=torch.channels_last))

    def sized(self, images: torch.Tensor) -> torch.Tensor:
        """`images` at a size the network takes: as they are, or enlarged to its input size.

        Convolutional networks take any size; a vision transformer's position embedding
        fixes it, so an icon is shown to it enlarged (bilinear, so gradients reach every pixel).
        """
        size = images.shape[-1]
        if size == self.model.input_size:
            return images
        if size not in self.fits:
            probe = torch.zeros(1, *images.shape[1:], dtype=self.dtype, device=images.device)
            try:
                with torch.no_grad():
                    self.run(probe.contiguous(memory_format=torch.channels_last))
                self.fits[size] = True
            except Exception:  # the network refuses the size (timm's PatchEmbed asserts it)
                self.fits[size] = False
        if self.fits[size]:
            return images
        return torch.nn.functional.interpolate(images, size=self.model.input_size, mode="bilinear",
                                               align_corners=False)

    def signed(self, images: torch.Tensor) -> torch.Tensor:
        """Images in (-1, 1), float32 (N, C, H, W), normalized and cast in one pass (the renderer's step).

        Built for an objective that reads only the centre, and through a tape, only the
        activations at the layer's centre, (N, C, 1, 1).
        """
        x = _SignedInput.apply(self.sized(images), self.scale, self.shift, self.dtype)
        return self.tape.centre(x) if self.centre_only and self.tape is not None else self.run(x)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        """The network's input, normalized, in its number format, channels-last -> the layer's map (N, C, H, W)."""
        if self.tape is not None:
            return self.tape(x)  # made only for layers that are maps already
        return self.view.to_map(capture(self.net, self.module, x)[self.layer])

    def tape_matches(self, example: torch.Tensor) -> bool:
        """Whether the tape gives the module path's activations and input gradient for `example`, bit for bit."""
        x = example.to(self.dtype).contiguous(memory_format=torch.channels_last)
        return same_bits(lambda v: capture(self.net, self.module, v)[self.layer], self.tape, x)


def build_forward(model: LoadedModel, layer: str, device: torch.device, options: SpeedOptions = SpeedOptions(),
                  reads: str = "all") -> LayerFn:
    """Images -> the layer's activations; the network stops at the layer.

    `reads` is the part of the layer the objective reads (icons/objectives.py): only
    with "centre" may `LayerFn.signed` compute the centre alone. Batch norms are folded into the convolutions before them, TensorFlow-style padding
    takes one pass, convolutions run as oneDNN kernels both ways with the clipping
    activations after them fused (on the CPU), and channels-last memory makes the
    convolutions, depthwise ones above all, faster on the CPU (BENCHMARKS.md).
    """
    example = model.normalize(torch.rand(2, model.channels, model.input_size, model.input_size,
                                         generator=torch.Generator().manual_seed(0)))
    if reads not in READS:
        raise ValueError(f"reads must be one of {READS}, not {reads!r}")
    net = fold_batchnorm(model.net, layer, example) if options.fold_batchnorm else model.net
    if options.same_padding:
        net = static_same_padding(net, layer, example)
    fused = options.fuse and fusable(device)
    if fused:
        net = fuse_convolutions(net, layer, example)
    dtype = PRECISIONS[options.precision]
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
    tape = Tape.make(net, layer) if fused and options.tape and model.view(layer).kind == "map" else None
    fn = LayerFn(model, net, layer, device, dtype, tape, options.centre_only and reads == "centre")
    if fn.tape is not None and not fn.tape_matches(example.to(device)):
        fn.tape = None
    return fn
