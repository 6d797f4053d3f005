"""How many icons go in one optimization batch: a probe of one icon's memory against the device's.

The largest memory of a step is what autograd keeps for the backward pass, so a
forward pass of two probe images under a saved-tensors hook measures it per icon.
The batch takes a share of the device's total memory (not its free memory, which
changes from run to run: the batch size decides which icons share a random stream,
so it must be the same on every run on the same device), up to a cap where larger
batches stop paying (BENCHMARKS.md: on a 2-core CPU, 64 runs faster per icon than
32 or 96).
"""

from __future__ import annotations

import ctypes
import os
from typing import Callable

import torch

MEMORY_SHARE = 0.25
# Gradients and temporaries of the backward pass, on top of the saved tensors.
OVERHEAD = 2.0
CAPS = {"cpu": 64, "cuda": 128}


def total_memory(device: torch.device) -> int:
    """Bytes of memory on `device`: the card's for CUDA, physical RAM (or the cgroup limit) for the CPU."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = open("/sys/fs/cgroup/memory.max").read().strip()
        if limit.isdigit():
            total = min(total, int(limit))
    except OSError:
        pass
    return total


def bytes_per_icon(forward: Callable[[torch.Tensor], torch.Tensor], size_px: int, device: torch.device) -> int:
    """Memory one icon's optimization step needs, from the tensors a probe forward pass saves."""
    saved = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        saved += t.numel() * t.element_size()
        return t

    probe = torch.full((2, forward.model.channels, size_px, size_px), 0.5, device=device, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        forward(probe)
    return int(saved / 2 * OVERHEAD) + 1


def auto_batch_size(forward: Callable[[torch.Tensor], torch.Tensor], size_px: int, tries: int,
                    device: torch.device) -> int:
    """Directions per batch on `device`; each is optimized `tries` times in the same batch."""
    per_icon = bytes_per_icon(forward, size_px, device) * tries
    fits = int(total_memory(device) * MEMORY_SHARE // per_icon)
    return max(1, min(CAPS.get(device.type, 32), fits))


# glibc's mallopt parameters.
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_kept = 0


def keep_freed_memory(nbytes: int) -> None:
    """Let glibc's malloc keep `nbytes` of freed memory for the next step, instead of returning it.

    A step allocates and frees the same large tensors every time. By default glibc maps
    the largest afresh (above 32 MB always) and hands freed memory back to the kernel, so
    every step pays page faults on tens of megabytes: about a tenth of a step on the CPU
    (BENCHMARKS.md). So all allocations come from the heap, and the heap keeps `nbytes`
    free. Process-wide and only ever raised; a no-op where malloc is not glibc's.
    """
    global _kept
    nbytes = min(int(nbytes), 2**31 - 1)
    if nbytes <= _kept:
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):
        return
    if mallopt(_M_MMAP_MAX, 0) and mallopt(_M_TRIM_THRESHOLD, nbytes):
        _kept = nbytes
