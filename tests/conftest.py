"""Shared fixtures: a tiny seeded model, folders of small images, and the ImageNet sample when present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

TESTS = Path(__file__).parent
ROOT = TESTS.parent
TINY_SPEC = f"{TESTS / 'tiny_model.py'}:tiny"
SAMPLE = ROOT.parent / "shared" / "data" / "imagenet-sample"

torch.set_num_threads(2)


def synthetic_image(rng: np.random.Generator, size: tuple[int, int] = (96, 80)) -> Image.Image:
    """Blobs and stripes of random colours: enough structure for a tiny CNN to respond to."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.zeros((h, w, 3))
    for _ in range(4):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(8, 30)
        mask = ((xx - cx) ** 2 + (yy - cy) ** 2) < r * r
        image[mask] = rng.uniform(0, 1, 3)
    freq = rng.uniform(0.1, 0.5)
    image += 0.3 * np.sin(xx * freq + yy * rng.uniform(-0.3, 0.3))[..., None] * rng.uniform(0, 1, 3)
    return Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8))


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory) -> Path:
    """24 synthetic RGB images in nested folders, with one apostrophe in a name."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(24):
        sub = folder / ("a" if i % 2 else "b/c")
        sub.mkdir(parents=True, exist_ok=True)
        name = "jack-o'-lantern.jpg" if i == 0 else f"img{i:02d}.png"
        synthetic_image(rng).save(sub / name)
    return folder


@pytest.fixture(scope="session")
def tiny_model():
    from generator.models import load_model

    return load_model(TINY_SPEC)


@pytest.fixture
def tiny_config(tmp_path, image_dir):
    """A complete, fast build config on the tiny model; returns a function taking overrides."""
    from generator.config import load_config

    def make(**overrides):
        base = {
            "out": str(tmp_path / "site"), "cache": str(tmp_path / "cache"),
            "model": {"name": TINY_SPEC}, "images": {"dir": str(image_dir), "crops_per_image": 3},
            "layout": {"method": "tsne"}, "grid": {"levels": [2, 4], "min_count": 1},
            "icons": {"size_px": 24, "steps": 4, "batch_size": 16},
        }
        for key, value in overrides.items():
            if isinstance(value, dict):
                base.setdefault(key, {}).update(value)
            else:
                base[key] = value
        return load_config(None, base)

    return make
