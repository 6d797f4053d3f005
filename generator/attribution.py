"""Layer activations and their class attributions, computed from one batch of network inputs.

The attribution of a position (image b, row r, column c) of a layer to class k is, as in
the article, the sum over channels of activation x d(logit_k)/d(activation) there. That
is the derivative of the logits along the tangent that is the position's activation and
zero elsewhere, or equally the derivative at s = 1 along the one-hot of (r, c) when the
layer's output `a` is replaced by `a * s`, with `s` (B, 1, h, w) a spatial scale. Forward
mode gives all K classes at once.

The main route, `Attributor`, runs the network once under `torch.func.vmap` of
`torch.func.jvp`, batching only the tangents (one per sampled position): the primal
(every activation of the network) is computed once per image, the tangents once per
position, and the layers before the first one collected run once, with no tangent at
all. Several layers share a pass when that is cheaper (`plan_passes`). A network that
the func transforms cannot run (an `autograd.Function` without `setup_context`, for
one) falls back to `RepeatedAttributor`, plain forward-mode AD on a batch in which each
image's activation is repeated once per position; that one in turn repeats the input
when a skip connection crosses the layer.
"""

from __future__ import annotations

import contextlib
import warnings

import torch
import torch.autograd.forward_ad as fwAD
from torch import nn
from torch.func import jvp, vmap

from .models import LoadedModel


@contextlib.contextmanager
def _composite_attention():
    """Attention as matrix products and a softmax: the fused kernels have no forward-mode derivative.

    Covers F.scaled_dot_product_attention (timm) and nn.MultiheadAttention's fast path (torchvision).
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel

    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel([SDPBackend.MATH]):
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)


class _Stop(Exception):
    """Raised from a forward hook to end a forward pass early."""


def capture(net: nn.Module, modules: dict[str, nn.Module], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The outputs of `modules` for input `x`; the forward pass stops once all have run."""
    out: dict[str, torch.Tensor] = {}
    handles = []
    for name, module in modules.items():
        def hook(_m, _i, o, name=name):
            out[name] = o
            if len(out) == len(modules):
                raise _Stop

        handles.append(module.register_forward_hook(hook))
    try:
        net(x)
    except _Stop:
        pass
    finally:
        for h in handles:
            h.remove()
    return out


def multiply_adds(model: LoadedModel, layers: list[str]) -> tuple[int, dict[str, int]]:
    """Multiply-adds of one image through the whole network, and through the part after each of `layers`.

    Counts convolutions and linear layers, the bulk of any classifier's work; a tangent
    costs about what the primal does over the same part.
    """
    done = [0]
    at: dict[str, int] = {}
    wanted = {model.layer(name): name for name in layers}

    def count(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            done[0] += output[0].numel() * module.in_channels // module.groups * module.weight[0, 0].numel()
        elif isinstance(module, nn.Linear):
            done[0] += output[0].numel() * module.in_features
        if module in wanted and wanted[module] not in at:
            at[wanted[module]] = done[0]

    like = next(model.net.parameters(), torch.zeros(()))
    handles = [m.register_forward_hook(count) for m in model.net.modules()]
    try:
        with torch.no_grad():
            model.net(torch.zeros(1, model.channels, model.input_size, model.input_size, device=like.device,
                                  dtype=like.dtype))
    finally:
        for h in handles:
            h.remove()
    return done[0], {name: done[0] - at[name] for name in layers}


def plan_passes(model: LoadedModel, layers: list[str], counts: dict[str, int]) -> list[list[str]]:
    """`layers` in network order, split into the groups that share one pass, the cheapest split.

    A pass costs one primal forward plus, for each of its tangents, the part of the network
    after the group's first layer (tangents of a deeper layer are zero until it). With one
    position per image one pass for all layers is cheapest; with many, and layers far
    apart, a pass each.
    """
    total, after = multiply_adds(model, layers)
    ordered = sorted(layers, key=lambda name: -after[name])
    best: list[tuple[float, list[list[str]]]] = [(0.0, [])]  # best[i]: cheapest split of ordered[:i]
    for end in range(1, len(ordered) + 1):
        options = []
        for start in range(end):
            group = ordered[start:end]
            cost = total + sum(counts[name] for name in group) * after[group[0]]
            options.append((best[start][0] + cost, best[start][1] + [group]))
        best.append(min(options, key=lambda option: option[0]))
    return best[-1][1]


class Attributor:
    """Activations and attributions of `layers` at given positions, by vmap over forward-mode tangents.

    Call with x (B, 3, H, W), the network input, and positions {layer: (B, P, 2) long};
    returns {layer: (vectors (B * P, C), attributions (B * P, K))}, rows image-major.
    """

    def __init__(self, model: LoadedModel, layers: list[str], counts: dict[str, int]):
        self.model = model
        self.modules = {name: model.layer(name) for name in layers}
        self.views = {name: model.view(name) for name in layers}
        self.passes = plan_passes(model, layers, counts)
        self.fallback: RepeatedAttributor | None = None

    def __call__(self, x: torch.Tensor, positions: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        if self.fallback is None:
            try:
                out = {}
                for group in self.passes:
                    out.update(self._pass(x, {name: positions[name] for name in group}))
                return out
            except torch.cuda.OutOfMemoryError:
                raise  # the fallback needs more memory, not less
            except Exception:  # an op the func transforms cannot run; plain forward-mode AD can
                self.fallback = RepeatedAttributor(self.model, list(self.modules))
        return self.fallback(x, positions)

    def _pass(self, x: torch.Tensor, positions: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        batch = x.shape[0]
        names = list(positions)
        counts = [positions[name].shape[1] for name in names]
        slots = sum(counts)
        scales, tangents, start = [], [], 0
        image = torch.arange(batch, device=x.device)
        for name, count in zip(names, counts):
            _, height, width = self.model.layer_shapes()[name]
            scales.append(torch.ones(batch, 1, height, width, device=x.device))
            # Tangent slot start + p is the one-hot of image b's p-th position, for every b.
            tangent = torch.zeros(slots, batch, 1, height, width, device=x.device)
            rows, cols = positions[name][..., 0], positions[name][..., 1]
            slot = start + torch.arange(count, device=x.device)
            tangent[slot[None, :], image[:, None], 0, rows, cols] = 1
            tangents.append(tangent)
            start += count

        def logits(*scale: torch.Tensor):
            seen: dict[str, torch.Tensor] = {}
            handles = []
            for name, s in zip(names, scale):
                def hook(_m, _i, o, name=name, s=s):
                    if name in seen:  # a module called twice: its first output is the layer's
                        return None
                    seen[name] = o
                    return self.views[name].scale(o, s)

                handles.append(self.modules[name].register_forward_hook(hook))
            try:
                return self.model.net(x), seen
            finally:
                for h in handles:
                    h.remove()

        with torch.no_grad(), warnings.catch_warnings(), _composite_attention():
            # An op without a batching rule runs once per tangent; slower, not wrong, not the user's to fix.
            warnings.filterwarnings("ignore", message="There is a performance drop because we have not yet")
            _, tangent, acts = vmap(lambda *t: jvp(logits, tuple(scales), t, has_aux=True),
                                    out_dims=(None, 0, None))(*tangents)
        if tangent.dim() != 3 or tangent.shape[:2] != (slots, batch) or set(acts) != set(names):
            raise RuntimeError("the logits are not (batch, classes), or a layer did not run")
        out, start = {}, 0
        for name, count in zip(names, counts):
            attributions = tangent[start:start + count].transpose(0, 1).reshape(batch * count, -1)
            out[name] = (_vectors(self.views[name].to_map(acts[name]), positions[name]), attributions)
            start += count
        return out


class RepeatedAttributor:
    """The same results by plain forward-mode AD, one layer at a time: slower, runs on any network.

    The layer's output is replaced, through a hook, by a dual tensor whose tangent is
    the activation at one position and zero elsewhere; the logits' tangent is then the
    attribution of that position to every class. Each image's activation is repeated
    once per position *after* the layer, so the layers before it run once per image;
    models whose skip connections cross the layer cannot take that and fall back to
    repeating the input.
    """

    def __init__(self, model: LoadedModel, layers: list[str]):
        self.net = model.net
        self.modules = {name: model.layer(name) for name in layers}
        self.views = {name: model.view(name) for name in layers}
        self.repeat_input = {name: False for name in layers}

    def __call__(self, x: torch.Tensor, positions: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        with torch.no_grad():
            acts = capture(self.net, {name: self.modules[name] for name in positions}, x)
        return {name: (_vectors(self.views[name].to_map(acts[name]), pos), self.attribute(name, x, acts[name], pos))
                for name, pos in positions.items()}

    def attribute(self, name: str, x: torch.Tensor, acts: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """x (B, 3, H, W) network input, acts the layer's output as the network lays it out, positions (B, P, 2) -> (B * P, K)."""
        batch, count = positions.shape[:2]
        view = self.views[name]
        primal = acts.repeat_interleave(count, 0)
        fmap = view.to_map(primal)
        rows = positions[..., 0].reshape(-1)
        cols = positions[..., 1].reshape(-1)
        index = torch.arange(batch * count, device=acts.device)
        tangent = torch.zeros_like(fmap)
        tangent[index, :, rows, cols] = fmap[index, :, rows, cols]
        tangent = view.from_map(tangent).contiguous()
        with torch.no_grad():
            if not self.repeat_input[name]:
                try:
                    return self._run(name, x, primal, tangent)
                except RuntimeError:
                    self.repeat_input[name] = True
            return self._run(name, x.repeat_interleave(count, 0), primal, tangent)

    def _run(self, name: str, x: torch.Tensor, primal: torch.Tensor, tangent: torch.Tensor) -> torch.Tensor:
        with fwAD.dual_level(), _composite_attention():
            dual = fwAD.make_dual(primal, tangent)
            handle = self.modules[name].register_forward_hook(lambda _m, _i, _o: dual)
            try:
                logits = self.net(x)
            finally:
                handle.remove()
            result = fwAD.unpack_dual(logits).tangent
        if result is None or result.shape[0] != primal.shape[0]:
            raise RuntimeError("layer output did not reach the logits batch for batch")
        return result


def _vectors(acts: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """acts (B, C, h, w) at positions (B, P, 2) -> (B * P, C), rows image-major."""
    batch, count = positions.shape[:2]
    image = torch.arange(batch, device=acts.device).repeat_interleave(count)
    return acts[image, :, positions[..., 0].reshape(-1), positions[..., 1].reshape(-1)]
