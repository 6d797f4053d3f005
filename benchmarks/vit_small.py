"""ViT-S/16 at 224 px with seeded random weights, for benchmarks/bench_gpu.py: `benchmarks/vit_small.py:vit_small`.

Speed does not depend on the weights, and a GPU machine may reach no download site.
"""

import torch

INPUT_SIZE = 224
LAYERS = ["blocks.8"]


def vit_small() -> torch.nn.Module:
    import timm

    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    try:
        return timm.create_model("vit_small_patch16_224", pretrained=False).eval()
    finally:
        torch.random.set_rng_state(state)
