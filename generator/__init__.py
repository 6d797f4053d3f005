"""Activation atlases of image classifiers, published as static websites.

The Python API mirrors the build's stages; each can be called on its own, in a notebook:

    from generator import load_config, build
    build(load_config(None, {"preset": "quick"}))

    from generator import load_model, find_images, plan_samples, collect_activations
    model = load_model("efficientnet_lite0")
    plan = plan_samples(find_images(Path("photos")), crops_per_image=1, seed=0)
    collect_activations(model, ["blocks.4"], plan, {"blocks.4": Path("acts")}, positions=4, batch_size=16, seed=0)
    xy = fit_layout(np.load("acts/activations.npy"))
    levels = bin_grid(xy, vectors, attributions, levels=[8, 16], min_count=2, top=5)
    rendered = render_icons(model, "blocks.4", levels[0].directions, IconSpec())
    rendered.icons, rendered.fidelity, rendered.stats()

Names are imported lazily, so `atlas --help` does not wait for torch.
"""

from importlib import import_module

_EXPORTS = {
    "AtlasError": "errors",
    "Config": "config", "load_config": "config", "PRESETS": "config",
    "build": "pipeline", "BuildResult": "pipeline",
    "load_model": "models", "LoadedModel": "models",
    "find_images": "images", "plan_samples": "images", "default_photos": "images", "CropLoader": "images",
    "collect_activations": "collect", "collect_shard": "collect",
    "fit_layout": "layout",
    "bin_grid": "grid", "bin_level": "grid", "Level": "grid",
    "render_icons": "icons", "IconSpec": "icons", "fidelity": "icons",
    "write_atlas": "tiles", "write_manifest": "tiles",
    "render_site": "site",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'generator' has no attribute {name!r}")
