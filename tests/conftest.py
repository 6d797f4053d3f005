"""Shared fixtures: a tiny seeded model, folders of small images, and the ImageNet sample when present."""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

TESTS = Path(__file__).parent
ROOT = TESTS.parent
TINY_SPEC = f"{TESTS / 'tiny_model.py'}:tiny"
MONO_SPEC = f"{TESTS / 'mono_model.py'}:mono"
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


def synthetic_spectrogram(rng: np.random.Generator, bins: int = 64, frames: int = 96) -> np.ndarray:
    """(bins, frames) float32 in [0, 1]: a few gliding harmonics over noise, like a call's log-mel spectrogram."""
    t = np.linspace(0, 1, frames)
    rows = np.arange(bins)[:, None]
    image = 0.1 * rng.random((bins, frames))
    base, glide = rng.uniform(4, 14), rng.uniform(-8, 8)
    for harmonic in range(1, 4):
        track = harmonic * (base + glide * np.sin(rng.uniform(2, 8) * t))
        image += rng.uniform(0.3, 0.7) / harmonic * np.exp(-(rows - track[None]) ** 2 / 6)
    return np.clip(image, 0, 1).astype(np.float32)


@pytest.fixture(scope="session")
def spectrogram_dir(tmp_path_factory) -> Path:
    """12 spectrograms as .npy arrays in (H, W) and (1, H, W) layouts, 4 greyscale PNGs and one RGB JPEG."""
    folder = tmp_path_factory.mktemp("spectrograms")
    rng = np.random.default_rng(5)
    for i in range(12):
        spec = synthetic_spectrogram(rng)
        np.save(folder / f"call{i:02d}.npy", spec if i % 2 else spec[None])
    for i in range(4):
        grey = (synthetic_spectrogram(rng) * 255).astype(np.uint8)
        Image.fromarray(grey, "L").save(folder / f"grey{i}.png")
    synthetic_image(rng).save(folder / "colour.jpg")
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
            "classes": {"auto": 0},  # class atlases have tests of their own
        }
        for key, value in overrides.items():
            if isinstance(value, dict):
                base.setdefault(key, {}).update(value)
            else:
                base[key] = value
        return load_config(None, base)

    return make


@pytest.fixture(scope="session")
def quick_site(tmp_path_factory):
    """`atlas build --preset quick` on the embedded model and photographs: (site folder, log)."""
    work = tmp_path_factory.mktemp("e2e")
    command = [sys.executable, "-m", "generator.cli", "build", "--preset", "quick",
               "--out", str(work / "site"), "--cache", str(work / "cache")]
    done = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return work / "site", done.stderr


@pytest.fixture(scope="session")
def sample_site(tmp_path_factory):
    """A quick build of the shared ImageNet sample, when that folder is present."""
    if not SAMPLE.is_dir():
        pytest.skip("needs ../shared/data/imagenet-sample")
    work = tmp_path_factory.mktemp("sample")
    command = [sys.executable, "-m", "generator.cli", "build", "--preset", "quick", "--images", str(SAMPLE),
               "--out", str(work / "site"), "--cache", str(work / "cache")]
    done = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return work / "site", done.stderr


@pytest.fixture(scope="module", params=["default", "imagenet-sample"])
def site(request):
    """(name, site folder, manifest) for each site under test."""
    folder, _ = request.getfixturevalue("quick_site" if request.param == "default" else "sample_site")
    return request.param, folder, json.loads((folder / "data" / "manifest.json").read_text())



CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="session")
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("needs Debian's chromium (apt-get install -y chromium)")
    with playwright.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield instance
        instance.close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def serve_under_subpath(tmp_path_factory):
    """serve(site) -> 'http://127.0.0.1:PORT/sub/path/site/': a static host with the site below its root."""
    servers = []

    def serve(site: Path) -> str:
        root = tmp_path_factory.mktemp("www")
        (root / "sub" / "path").mkdir(parents=True)
        (root / "sub" / "path" / "site").symlink_to(site, target_is_directory=True)
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/sub/path/site/"

    yield serve
    for server in servers:
        server.shutdown()
