"""The network up to the layer as one autograd node, where it is only fused convolutions and sums.

Run module by module, every step pays a Python call per module (EfficientNet-Lite0 keeps
94 identities where batch norms and activations were folded and fused) and an autograd
node per convolution and per sum: 1 to 2 ms of a step on the CPU, whatever the batch
(BENCHMARKS.md). Where a trace of the network up to the layer holds nothing but ConvClip
modules, identities and sums of two tensors, the tape runs the same kernels in the same
order, keeps the same tensors for the backward pass, and runs the backward pass itself,
in reverse. It is used only if it gives the network's activations and input gradient
bit for bit (network.py checks on an example).
"""

from __future__ import annotations

import operator

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
            if kind == "conv":
                plan = module.plan(values[sources[0]])
                values[dest] = fuse.conv_forward(values[sources[0]], module.conv.bias, module, plan)
                plans.append(plan.back)
                if module.clip:
                    saved.append(values[dest])
            else:
                plans.append(None)
                values[dest] = values[sources[0]] + values[sources[1]]
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
        for (kind, module, sources, dest), back in zip(reversed(tape.steps), reversed(ctx.plans)):
            g, grads[dest] = grads[dest], None
            if kind == "conv":
                y = next(saved) if module.clip else None
                if g is not None:
                    _add(grads, sources[0], fuse.conv_backward(g, y, module.clip, back))
            elif g is not None:
                _add(grads, sources[0], g)
                _add(grads, sources[1], g)
        return grads[0], None


def _add(grads: list, slot: int, g: torch.Tensor) -> None:
    grads[slot] = g if grads[slot] is None else grads[slot] + g


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

    @classmethod
    def make(cls, net: nn.Module, layer: str) -> "Tape | None":
        program = _program(net, layer)
        return cls(*program) if program is not None else None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return _Run.apply(x, self)
