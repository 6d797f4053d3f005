"""The network up to the layer as one autograd node, where it is only fused convolutions and sums.

Run module by module, every step pays a Python call per module (EfficientNet-Lite0 keeps
94 identities where batch norms and activations were folded and fused) and an autograd
node per convolution and per sum: 1 to 2 ms of a step on the CPU, whatever the batch
(BENCHMARKS.md). Where a trace of the network up to the layer holds nothing but ConvClip
modules, identities and sums of two tensors, the tape runs the same kernels in the same
order, keeps the same tensors for the backward pass, and runs the backward pass itself,
in reverse. It is used only if it gives the network's activations and input gradient
bit for bit (network.py checks on an example).

The renderer's objective reads only the layer's centre, so for the renderer the tape
also skips what the centre does not depend on: the sums and 1 x 1 convolutions at the
end run on the centre pixel, and the spatial convolution before them on its window
(`Tape.centre`; 1.03x a step at blocks.4, checked bit for bit per input shape).
"""

from __future__ import annotations

import operator
from typing import Callable, NamedTuple

import torch
import torch.fx as fx
from torch import nn

from . import fuse
from .fuse import ConvClip


class _Stop(Exception):
    pass


class _Tracer(fx.Tracer):
    """Traces up to the module named `layer` and stops there; ConvClip modules are single nodes."""

    def __init__(self, layer: str):
        super().__init__()
        self.layer, self.output = layer, None

    def is_leaf_module(self, m: nn.Module, name: str) -> bool:
        return isinstance(m, ConvClip) or super().is_leaf_module(m, name)

    def call_module(self, m, forward, args, kwargs):
        out = super().call_module(m, forward, args, kwargs)
        if self.path_of_module(m) == self.layer:
            self.output = out
            raise _Stop
        return out


def _program(net: nn.Module, layer: str) -> tuple[list, int, int] | None:
    """The layer's computation as (kind, module, sources, destination) steps over numbered slots; None if
    the network up to it holds anything else or cannot be traced."""
    tracer = _Tracer(layer)
    try:
        tracer.trace(net)
    except _Stop:
        pass
    except Exception:  # noqa: BLE001 - a network FX cannot trace runs module by module instead
        return None
    if tracer.output is None:
        return None
    slot: dict[fx.Node, int] = {}
    steps, count = [], 0
    for node in tracer.graph.nodes:
        if node.op == "placeholder" and not slot:
            slot[node], count = 0, 1
            continue
        args = [a for a in node.args if isinstance(a, fx.Node)]
        if len(args) != len(node.args) or node.kwargs or any(a not in slot for a in args):
            return None
        module = net.get_submodule(node.target) if node.op == "call_module" else None
        if type(module) in (nn.Identity, nn.Dropout) and len(args) == 1:
            slot[node] = slot[args[0]]  # the same tensor (a dropout in eval mode too): no step
        elif isinstance(module, ConvClip) and len(args) == 1:
            steps.append(("conv", module, (slot[args[0]],), count))
            slot[node], count = count, count + 1
        elif node.op == "call_function" and node.target in (operator.add, torch.add) and len(args) == 2:
            steps.append(("add", None, (slot[args[0]], slot[args[1]]), count))
            slot[node], count = count, count + 1
        else:
            return None
        if node is tracer.output.node:
            return (steps, slot[node], count) if steps and slot[node] else None
    return None


class _Run(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, tape: "Tape"):
        values: list[torch.Tensor | None] = [None] * tape.slots
        values[0] = x
        plans, saved = [], []
        for index, (kind, module, sources, dest) in enumerate(tape.steps):
            source = values[sources[0]]
            if kind == "add":
                plans.append(None)
                values[dest] = source + values[sources[1]]
            elif kind == "crop":
                plans.append(source.shape)
                values[dest] = _centre(source).contiguous(memory_format=torch.channels_last)
            else:
                conv, full = (module.conv, source.shape) if kind == "window" else (module, None)
                if full is not None:
                    rows, cols = _window(full, module.pad)
                    source = source[:, :, rows, cols].contiguous(memory_format=torch.channels_last)
                plan = conv.plan(source)
                values[dest] = fuse.conv_forward(source, conv.conv.bias, conv, plan)
                plans.append((plan.back, full))
                if conv.clip:
                    saved.append(values[dest])
            for done in tape.last_use[index]:
                values[done] = None  # freed as the module path would free it
        ctx.tape, ctx.plans = tape, plans
        ctx.save_for_backward(*saved)
        return values[tape.output]

    @staticmethod
    def backward(ctx, grad):
        tape = ctx.tape
        saved = iter(reversed(ctx.saved_tensors))
        grads: list[torch.Tensor | None] = [None] * tape.slots
        grads[tape.output] = grad
        for (kind, module, sources, dest), plan in zip(reversed(tape.steps), reversed(ctx.plans)):
            g, grads[dest] = grads[dest], None
            if kind in ("conv", "window"):
                conv = module.conv if kind == "window" else module
                y = next(saved) if conv.clip else None
                if g is None:
                    continue
                back, full = plan
                g = fuse.conv_backward(g, y, conv.clip, back)
                if full is not None:
                    g = _placed(g, full, _window(full, module.pad))
                _add(grads, sources[0], g)
            elif g is None:
                continue
            elif kind == "crop":
                _add(grads, sources[0], _placed(g, plan, _window(plan, (0, 0))))
            else:
                _add(grads, sources[0], g)
                _add(grads, sources[1], g)
        return grads[0], None


def _window(shape: tuple, pad: tuple[int, int]) -> tuple[slice, slice]:
    """Rows and columns within `pad` of the centre of a map of `shape`."""
    cy, cx = shape[-2] // 2, shape[-1] // 2
    return slice(cy - pad[0], cy + pad[0] + 1), slice(cx - pad[1], cx + pad[1] + 1)


def _centre(x: torch.Tensor) -> torch.Tensor:
    return x[(slice(None), slice(None), *_window(x.shape, (0, 0)))]


def _placed(g: torch.Tensor, shape: tuple, where: tuple[slice, slice]) -> torch.Tensor:
    """`g` at `where` in zeros of `shape` (the gradient of cutting out `where`)."""
    if tuple(g.shape) == tuple(shape):
        return g
    out = torch.empty(shape, dtype=g.dtype, device=g.device, memory_format=torch.channels_last).zero_()
    out[:, :, where[0], where[1]] = g
    return out


def _add(grads: list, slot: int, g: torch.Tensor) -> None:
    grads[slot] = g if grads[slot] is None else grads[slot] + g


class _Valid(NamedTuple):
    """A stride-1 convolution computed on a window around the centre only: `conv` is its unpadded twin."""

    conv: ConvClip
    pad: tuple[int, int]


def _pointwise(m: ConvClip) -> bool:
    c = m.conv
    return c.kernel_size == (1, 1) and c.stride == (1, 1) and c.padding == (0, 0) and c.dilation == (1, 1)


def _centred_pad(m: ConvClip) -> tuple[int, int] | None:
    """The padding of a stride-1 convolution that keeps the map's size, symmetric; None for others."""
    c = m.conv
    if c.stride != (1, 1) or c.dilation != (1, 1) or any(k % 2 == 0 for k in c.kernel_size):
        return None
    pad = tuple((k - 1) // 2 for k in c.kernel_size)
    return pad if c.padding == ((0, 0) if m.same else pad) else None


def _unpadded(m: ConvClip) -> ConvClip:
    c = m.conv
    conv = nn.Conv2d(c.in_channels, c.out_channels, c.kernel_size, groups=c.groups, bias=c.bias is not None)
    conv.weight, conv.bias = c.weight, c.bias  # the same parameters
    valid = ConvClip(conv)
    valid.clip, valid.post = m.clip, m.post
    return valid


def _centre_steps(steps: list, output: int, slots: int, size: tuple[int, int]) -> tuple[list, int] | None:
    """`steps` computing only the centre pixel of the output (size `size`), where that saves work.

    From the output back, sums and 1 x 1 convolutions whose results feed nothing else run on
    the centre pixel, and so does the spatial convolution before them (stride 1, its window
    around the centre inside the map), on that window; the tensors they read from the rest
    are cut to their centre. The same numbers as the full steps at the centre: a convolution's
    centre output reads only its window.
    """
    consumers: dict[int, list[int]] = {}
    for index, (_, _, sources, _) in enumerate(steps):
        for src in sources:
            consumers.setdefault(src, []).append(index)
    centre, tail, window = {output}, set(), None
    for index in reversed(range(len(steps))):
        kind, module, sources, dest = steps[index]
        if dest not in centre or any(c not in tail for c in consumers.get(dest, [])):
            continue
        pad = _centred_pad(module) if kind == "conv" and window is None else None
        if kind == "add" or (kind == "conv" and _pointwise(module)):
            tail.add(index)
            centre.update(sources)
        elif pad is not None and all(p <= min(n // 2, n - 1 - n // 2) for p, n in zip(pad, size)):
            tail.add(index)
            window = index
    if window is None:
        return None  # sums and 1 x 1 convolutions alone save too little to bother
    cut: dict[int, int] = {}
    head = [step for index, step in enumerate(steps) if index not in tail]
    crops = []
    for index in sorted(tail):
        for src in steps[index][2]:
            if index != window and src not in cut and not any(steps[t][3] == src for t in tail):
                cut[src] = slots + len(crops)
                crops.append(("crop", None, (src,), cut[src]))
    rest = []
    for index in sorted(tail):
        kind, module, sources, dest = steps[index]
        if index == window:
            rest.append(("window", _Valid(_unpadded(module), _centred_pad(module)), sources, dest))
        else:
            rest.append((kind, module, tuple(cut.get(src, src) for src in sources), dest))
    return head + crops + rest, slots + len(crops)


class Tape:
    """The network up to `layer` as one autograd node; `make` returns None where it does not apply."""

    def __init__(self, steps: list, output: int, slots: int):
        self.steps, self.output, self.slots = steps, output, slots
        # After which step each slot is last read, so the forward pass holds no more than the module path.
        last: dict[int, int] = {}
        for index, (_, _, sources, _) in enumerate(steps):
            for s in sources:
                last[s] = index
        self.last_use: list[list[int]] = [[] for _ in steps]
        for s, index in last.items():
            if s != output:
                self.last_use[index].append(s)
        self._centred: dict[tuple, Tape | None] = {}

    @classmethod
    def make(cls, net: nn.Module, layer: str) -> "Tape | None":
        program = _program(net, layer)
        return cls(*program) if program is not None else None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return _Run.apply(x, self)

    def centre(self, x: torch.Tensor) -> torch.Tensor:
        """The activations at the layer's centre only, (N, C, 1, 1): all the renderer's objective reads.

        Per input shape, a tape that skips what the centre does not depend on is made and
        checked once against this one (activation and input gradient, bit for bit); where
        there is none, the full activations are cut to their centre.
        """
        key = (tuple(x.shape), x.dtype, x.device)
        if key not in self._centred:
            try:
                self._centred[key] = self._centred_tape(x)
            except RuntimeError:  # a geometry oneDNN refuses: the full tape does the job
                self._centred[key] = None
        tape = self._centred[key]
        return tape(x) if tape is not None else _centre(self(x))

    def _centred_tape(self, x: torch.Tensor) -> "Tape | None":
        probe = torch.randn(x.shape, generator=torch.Generator().manual_seed(0)).to(x)
        with torch.no_grad():
            size = tuple(self(probe).shape[-2:])
        made = _centre_steps(self.steps, self.output, self.slots, size)
        if made is None:
            return None
        tape = Tape(made[0], self.output, made[1])
        return tape if same_bits(lambda v: _centre(self(v)), tape, probe) else None


def same_bits(run: Callable, other: Callable, x: torch.Tensor) -> bool:
    """Whether `run` and `other` give the same output and input gradient for `x`, bit for bit."""
    results = []
    for fn in (run, other):
        v = x.detach().clone().requires_grad_(True)
        out = fn(v)
        weights = torch.linspace(-1, 1, out.numel(), device=out.device).view(out.shape)
        (grad,) = torch.autograd.grad((out.float() * weights).sum(), v)
        results.append((out.detach(), grad))
    return all(torch.equal(a, b) for a, b in zip(*results))
