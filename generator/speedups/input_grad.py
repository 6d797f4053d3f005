"""A convolution's input gradient, computed with oneDNN's forward kernels.

The gradient of a convolution's input is a convolution of its output's gradient with
the kernel transposed (in and out channels swapped per group) and flipped. oneDNN's
forward kernels run it about twice as fast as its backward-data ones for depthwise
convolutions, and about twenty times as fast for strided depthwise ones in bfloat16
(BENCHMARKS.md). A stride s needs one of two layouts:

- grid: each output pixel's gradient is spread onto a zero grid the input's size, s
  apart, and a stride-1 convolution finishes the job. Best for depthwise kernels.
- sub-pixel: the input's pixels fall into s*s phases by position mod s, each the
  correlation of the gradient (unspread) with the kernel taps of that phase; one
  convolution computes all phases as channels and a pixel shuffle interleaves them.
  s*s times less work than the grid where a group has several input channels, as in
  a network's first convolution; a depthwise one would become a slow grouped one.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import torch
import torch.nn.functional as F

from .padding import memory_format


class InputGrad(NamedTuple):
    """How to get one convolution's input gradient for one input size."""

    kernel: torch.Tensor
    padding: list[int]
    groups: int
    size: tuple[int, int]  # the input's height and width
    grid: tuple[int, int] | None = None  # grid layout: its size, where the gradient goes and which part of it
    spread: tuple[slice, slice, slice, slice] | None = None
    crop: tuple[slice, slice] | None = None  # sub-pixel layout: the phases' rows and columns, and s
    shuffle: int = 1


def _transposed(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """(in channels, out channels per group, kh, kw): in and out channels swapped within each group."""
    out_ch, in_per_group, kh, kw = weight.shape
    swapped = weight.reshape(groups, out_ch // groups, in_per_group, kh, kw).transpose(1, 2)
    return swapped.reshape(groups * in_per_group, out_ch // groups, kh, kw)


def pack(weight: torch.Tensor, padding: list[int], stride: list[int], groups: int, shape: list[int]) -> torch.Tensor:
    """`weight` reordered once into oneDNN's own layout for inputs of `shape`, as PyTorch's compiler does
    for inference. A plain weight is reordered on every call: about 1.5 ms of a step (BENCHMARKS.md)."""
    return torch._C._nn.mkldnn_reorder_conv2d_weight(weight.detach().contiguous().to_mkldnn(), padding, stride,
                                                    [1, 1], groups, shape)


def plan(weight: torch.Tensor, groups: int, stride: tuple[int, int], before: tuple[int, int],
         size: tuple[int, int], out_size: tuple[int, int], batch: int) -> InputGrad:
    """The plan for a convolution by `weight` whose output pixel i read input pixels s*i - before + a, a < k.

    `size` is the input's height and width, `out_size` the output's.
    """
    weight = weight.detach()
    kernel_size = tuple(weight.shape[-2:])
    if stride[0] == stride[1] > 1 and weight.shape[1] > 1:
        how = _sub_pixel(weight, groups, stride[0], before, size, out_size)
        return how._replace(kernel=pack(how.kernel, how.padding, [1, 1], groups,
                                        [batch, weight.shape[0], *out_size]))
    # Grid: output pixel i's gradient goes to s*i + k - 1 - q - b of a zero grid, which a
    # stride-1 convolution with padding q turns into the input's gradient; q is as large as
    # keeps every position on the grid, so that the grid is the input's size and, at
    # stride 1, is the gradient itself.
    pads, lengths, places, keeps = [], [], [], []
    for n, k, s, b, o in zip(size, kernel_size, stride, before, out_size):
        q = max(0, min(k - 1 - b, n - 1 - s * (o - 1) + b))
        offset, length = k - 1 - q - b, n - 2 * q + k - 1
        # With q = 0, positions off the grid belong to outputs that read only padding: dropped.
        first, last = max(0, -(offset // s)), min(o, (length - 1 - offset) // s + 1)
        start = offset + s * first
        pads.append(q), lengths.append(length)
        places.append(slice(start, start + s * (last - first - 1) + 1, s)), keeps.append(slice(first, last))
    kernel = _transposed(weight, groups).flip(-2, -1).contiguous(memory_format=torch.channels_last)
    same = stride == (1, 1) and all(p.start == 0 and p.stop == n for p, n in zip(places, lengths)) and \
        tuple(lengths) == tuple(out_size)
    kernel = pack(kernel, pads, [1, 1], groups, [batch, weight.shape[0], *lengths])
    if same:
        return InputGrad(kernel, pads, groups, size)
    return InputGrad(kernel, pads, groups, size, tuple(lengths), (*places, *keeps))


def _sub_pixel(weight: torch.Tensor, groups: int, s: int, before: tuple[int, int], size: tuple[int, int],
               out_size: tuple[int, int]) -> InputGrad:
    # Input pixel u = s*m + phase gets tap a from output pixel i = m + d, d = (phase + b - a) / s.
    transposed = _transposed(weight, groups)
    axes = []
    for k, b, n, o in zip(weight.shape[-2:], before, size, out_size):
        ds = [(phase + b - a) // s for phase in range(s) for a in range(k) if (phase + b - a) % s == 0]
        low, high = min(ds), max(ds)
        rows = -(-n // s)  # m per phase, enough to cover the input
        pad = max(0, -low, rows + high - o)
        axes.append((low, high - low + 1, rows, pad))
    (low_h, len_h, rows_h, pad_h), (low_w, len_w, rows_w, pad_w) = axes
    ins, outs_per_group = transposed.shape[:2]
    kernel = torch.zeros(ins, s, s, outs_per_group, len_h, len_w, dtype=weight.dtype, device=weight.device)
    for phase_h, phase_w, a, c in itertools.product(range(s), range(s), *map(range, weight.shape[-2:])):
        if (phase_h + before[0] - a) % s == 0 and (phase_w + before[1] - c) % s == 0:
            d_h, d_w = (phase_h + before[0] - a) // s, (phase_w + before[1] - c) // s
            kernel[:, phase_h, phase_w, :, d_h - low_h, d_w - low_w] = transposed[:, :, a, c]
    kernel = kernel.reshape(ins * s * s, outs_per_group, len_h, len_w).contiguous(memory_format=torch.channels_last)
    crop = (slice(pad_h + low_h, pad_h + low_h + rows_h), slice(pad_w + low_w, pad_w + low_w + rows_w))
    return InputGrad(kernel, [pad_h, pad_w], groups, size, crop=crop, shuffle=s)


def input_grad(grad: torch.Tensor, how: InputGrad) -> torch.Tensor:
    """The input's gradient from the output's `grad`, as `how` says."""
    if how.grid is not None:
        rows, cols, keep_rows, keep_cols = how.spread
        grid = torch.empty((*grad.shape[:2], *how.grid), dtype=grad.dtype, device=grad.device,
                           memory_format=memory_format(grad)).zero_()
        grid[:, :, rows, cols] = grad[:, :, keep_rows, keep_cols]
        grad = grid
    out = torch.ops.mkldnn._convolution_pointwise(grad, how.kernel, None, how.padding, [1, 1], [1, 1], how.groups,
                                                  "none", [], "")
    if how.shuffle == 1:
        return out
    phases = F.pixel_shuffle(out[:, :, how.crop[0], how.crop[1]], how.shuffle)
    return phases[:, :, :how.size[0], :how.size[1]]
