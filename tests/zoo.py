"""Small random-weight networks of the architectures atlas supports, loadable as `tests/zoo.py:NAME`.

Each is the real timm or torchvision architecture, made narrow and shallow so that every
stage runs on it in seconds; the weights are seeded, so each factory gives the same model
every time. `SWEEP` names each one's layer under test: `(factory, layer, layout)`.
"""

import torch
from torch import nn

INPUT_SIZE = 64
CLASS_NAMES = [f"kind {i}" for i in range(10)]


def _seeded(make) -> nn.Module:
    state = torch.random.get_rng_state()
    torch.manual_seed(7)
    try:
        return make().eval()
    finally:
        torch.random.set_rng_state(state)


def _timm(name: str, **kwargs) -> nn.Module:
    import timm

    return _seeded(lambda: timm.create_model(name, pretrained=False, num_classes=len(CLASS_NAMES), **kwargs))


def _torchvision(name: str, **kwargs) -> nn.Module:
    import torchvision

    return _seeded(lambda: torchvision.models.get_model(name, weights=None, num_classes=len(CLASS_NAMES), **kwargs))


def _full_heads(net: nn.Module, *heads: str) -> nn.Module:
    # Initialized for training, the heads are near zero, and so are the logits and every attribution.
    with torch.no_grad():
        for name in heads:
            net.get_submodule(name).weight.normal_(generator=torch.Generator().manual_seed(3))
    return net


def vit() -> nn.Module:
    """ViT: a class token, then 8 x 8 patches."""
    return _full_heads(_timm("vit_tiny_patch16_224", img_size=INPUT_SIZE, patch_size=8, depth=3, embed_dim=48,
                             num_heads=3), "head")


def deit() -> nn.Module:
    """DeiT, distilled: a class and a distillation token before the patches, and two heads."""
    return _full_heads(_timm("deit_tiny_distilled_patch16_224", img_size=INPUT_SIZE, patch_size=8, depth=3,
                             embed_dim=48, num_heads=3), "head", "head_dist")


def swin() -> nn.Module:
    """Swin: channels-last stages of shifted windows."""
    return _timm("swin_tiny_patch4_window7_224", img_size=INPUT_SIZE, window_size=2, embed_dim=24,
                 depths=(1, 1, 2, 1), num_heads=(1, 2, 3, 4))


def convnext() -> nn.Module:
    return _timm("convnext_atto")


def resnet() -> nn.Module:
    return _torchvision("resnet18")


def mobilenet() -> nn.Module:
    return _torchvision("mobilenet_v3_small")


def googlenet() -> nn.Module:
    return _torchvision("googlenet", aux_logits=False, init_weights=True)


SWEEP = [
    ("vit", "blocks.1", "tokens"),
    ("deit", "blocks.1", "tokens"),
    ("swin", "layers.1", "channels_last"),
    ("convnext", "stages.1", "map"),
    ("resnet", "layer3", "map"),
    ("mobilenet", "features.6", "map"),
    ("googlenet", "inception4c", "map"),
    ("torchvision_vit", "encoder.layers.encoder_layer_1", "tokens"),
]


def torchvision_vit() -> nn.Module:
    """torchvision's ViT: a class token, and attention through nn.MultiheadAttention."""
    from torchvision.models.vision_transformer import VisionTransformer

    def make():
        net = VisionTransformer(image_size=INPUT_SIZE, patch_size=8, num_layers=3, num_heads=2, hidden_dim=32,
                                mlp_dim=64, num_classes=len(CLASS_NAMES))
        return net

    return _full_heads(_seeded(make), "heads.head")  # torchvision starts it at zero: every logit constant
