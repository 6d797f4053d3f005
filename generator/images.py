"""Finding images, reading any of them with the model's channels, and planning the crops the model sees.

Artifact: `samples.json` {"images": [path, ...], "crops": [[image, left, top, right, bottom], ...],
"skipped": N, "channels": C}, crop boxes in each image's own pixels, after turning it upright as
its EXIF orientation says.

A 3-channel model reads every image as RGB and a 1-channel model as greyscale. `.npy`
files hold arrays (a spectrogram, say, or a multispectral tile): (H, W) for one channel,
or (H, W, C) or (C, H, W) with the model's C, as uint8 or as floats in [0, 1], which is
how a model with other channels reads anything but greyscale or RGB pictures.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageOps

from .errors import AtlasError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".npy"}

# Photographs shipped inside scikit-image and scikit-learn: the embedded default set.
_SKIMAGE_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "hubble_deep_field.jpg", "ihc.png",
                   "motorcycle_left.png", "retina.jpg", "rocket.jpg", "camera.png", "brick.png",
                   "grass.png", "gravel.png")
_SKLEARN_PHOTOS = ("china.jpg", "flower.jpg")


@dataclass(frozen=True)
class SamplePlan:
    images: list[str]
    sizes: list[tuple[int, int]]
    crops: list[tuple[int, int, int, int, int]]  # image index, left, top, right, bottom
    skipped: int
    channels: int = 3  # as the model reads them (open_image)

    def to_json(self) -> dict:
        return {"images": self.images, "sizes": [list(s) for s in self.sizes],
                "crops": [list(c) for c in self.crops], "skipped": self.skipped, "channels": self.channels}

    @classmethod
    def from_json(cls, data: dict) -> "SamplePlan":
        return cls(data["images"], [tuple(s) for s in data["sizes"]], [tuple(c) for c in data["crops"]],
                   data["skipped"], data.get("channels", 3))


def default_photos() -> list[Path]:
    """The embedded photographs: colour and greyscale pictures shipped by scikit-image and scikit-learn."""
    import skimage
    import sklearn

    sk = Path(skimage.__file__).parent / "data"
    sl = Path(sklearn.__file__).parent / "datasets" / "images"
    paths = [sk / n for n in _SKIMAGE_PHOTOS] + [sl / n for n in _SKLEARN_PHOTOS]
    return [p for p in paths if p.is_file()]


def find_images(folder: Path) -> list[Path]:
    """Every file under `folder` with an image suffix, recursively, in a stable order."""
    if not folder.exists():
        raise AtlasError(f"image folder {folder} not found: pass --images with an existing folder")
    if not folder.is_dir():
        raise AtlasError(f"{folder} is not a folder: pass --images with a folder of images")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL image as 8-bit RGB: 16-bit and float scaled, palettes expanded, alpha over white, CMYK converted."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        lo, hi = float(array.min()), float(array.max())
        scaled = (array - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(array)
        return Image.fromarray(scaled.astype(np.uint8)).convert("RGB")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image).convert("RGB")
    return image.convert("RGB")


def open_rgb(path: Path | str) -> Image.Image:
    """The image at `path` as RGB, upright as its EXIF orientation says; raises OSError or ValueError
    for files that are not readable images."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # EXIF and decompression warnings are not the user's problem here
        with Image.open(path) as image:
            image.load()
            return to_rgb(_upright(image))


def _read_array(path: Path | str, channels: int) -> np.ndarray:
    """A `.npy` file as (H, W, channels) uint8; raises ValueError saying what is wrong with it."""
    array = np.load(path, allow_pickle=False)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or channels not in (array.shape[0], array.shape[-1]):
        raise ValueError(f"{Path(path).name} holds an array of shape {array.shape}; a {channels}-channel model "
                         f"reads (H, W{', C' if channels > 1 else ''}) arrays" + (f" with C = {channels}" if channels > 1 else ""))
    if array.shape[-1] != channels:
        array = np.moveaxis(array, 0, -1)  # (C, H, W), as torch keeps it
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if not np.issubdtype(array.dtype, np.number) or not np.isfinite(array).all():
        raise ValueError(f"{Path(path).name} holds {array.dtype} values that are not all finite numbers")
    low, high = float(array.min()), float(array.max())
    if low < 0 or high > 1:
        raise ValueError(f"{Path(path).name} holds values from {low:g} to {high:g}: save arrays as uint8 or as "
                         "floats scaled to [0, 1] (a spectrogram in dB, for one, scaled from its floor to 0 dB)")
    return np.ascontiguousarray(np.round(array * 255).astype(np.uint8))


def open_image(path: Path | str, channels: int = 3) -> np.ndarray:
    """The image or `.npy` array at `path` as (H, W, channels) uint8, upright; raises OSError or ValueError
    for a file that is no readable image, or that a model of `channels` channels cannot read."""
    if str(path).lower().endswith(".npy"):
        return _read_array(path, channels)
    if channels == 3:
        return np.asarray(open_rgb(path))
    if channels == 1:
        return np.asarray(open_rgb(path).convert("L"))[..., None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Image.open(path) as image:
            image.load()
            bands = len(image.getbands())
            if bands != channels:
                raise ValueError(f"{Path(path).name} has {bands} bands; a {channels}-channel model reads "
                                 f"{channels}-band images or .npy arrays")
            return np.asarray(_upright(image))


def crop_source(path: Path | str, channels: int = 3) -> Image.Image | list[Image.Image]:
    """What crops are cut from: an RGB picture, or for other channel counts one 8-bit band each."""
    if channels == 3 and not str(path).lower().endswith(".npy"):
        return open_rgb(path)
    array = open_image(path, channels)
    return Image.fromarray(array) if channels == 3 else [Image.fromarray(array[..., c]) for c in range(channels)]


def resize_crop(source: Image.Image | list[Image.Image], box: tuple, size: int) -> np.ndarray:
    """The `box` (left, top, right, bottom) of a crop_source, resized to (size, size, C) uint8, bicubic."""
    if isinstance(source, Image.Image):
        return np.asarray(source.resize((size, size), Image.BICUBIC, box=tuple(box)))
    # PIL resizes RGB one band at a time too: every channel count gets the same filter.
    return np.stack([np.asarray(band.resize((size, size), Image.BICUBIC, box=tuple(box))) for band in source], -1)


def _upright(image: Image.Image) -> Image.Image:
    """`image` turned as its EXIF orientation tag says: a camera held sideways stores the pixels sideways."""
    try:
        ImageOps.exif_transpose(image, in_place=True)  # in place: no copy of the many upright images
    except Exception:  # a damaged EXIF block costs the orientation, not the photograph
        pass
    return image


def plan_samples(paths: list[Path], crops_per_image: int, seed: int, max_images: int = 0,
                 channels: int = 3) -> SamplePlan:
    """Check every image (as a model of `channels` channels reads it, open_image) and choose its crops.

    One crop per picture is the centre square (87.5% of the short side, as ImageNet
    evaluation does); more crops are random squares at several scales. An array's crops
    keep its short side whole and at its scale (a spectrogram's every frequency): squares
    of that side, one at the centre or several spread evenly along the long side.
    """
    rng = np.random.default_rng([seed, 1])
    images, sizes, crops = [], [], []
    skipped, reason = 0, ""
    for path in paths:
        if max_images and len(images) >= max_images:
            break
        try:
            if str(path).lower().endswith(".npy") or channels != 3:
                height, width = open_image(path, channels).shape[:2]
            else:
                width, height = open_rgb(path).size
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            skipped += 1
            reason = reason or (str(exc) if isinstance(exc, ValueError) and Path(path).name in str(exc) else "")
            continue
        if min(width, height) < 8:
            skipped += 1
            continue
        index = len(images)
        images.append(str(path))
        sizes.append((width, height))
        short = min(width, height)
        if str(path).lower().endswith(".npy"):
            span = max(width, height) - short
            offsets = [span // 2] if crops_per_image == 1 else \
                np.unique(np.round(np.linspace(0, span, crops_per_image)).astype(int)).tolist()
            for offset in offsets:
                left, top = (offset, 0) if width >= height else (0, offset)
                crops.append((index, left, top, left + short, top + short))
            continue
        if crops_per_image == 1:
            side = max(1, round(short * 0.875))
            left, top = (width - side) // 2, (height - side) // 2
            crops.append((index, left, top, left + side, top + side))
            continue
        for _ in range(crops_per_image):
            side = max(8, round(short * rng.choice([0.2, 0.3, 0.45, 0.65, 1.0])))
            left = int(rng.integers(0, width - side + 1))
            top = int(rng.integers(0, height - side + 1))
            crops.append((index, left, top, left + side, top + side))
    if not images:
        raise AtlasError(
            f"no usable image among {len(paths)} files ({skipped} unreadable" + (f"; {reason}" if reason else "")
            + f"): give a folder of {', '.join(sorted(s[1:] for s in IMAGE_SUFFIXES))} files"
        )
    return SamplePlan(images, sizes, crops, skipped, channels)


class CropLoader:
    """Loads crops as float tensors in [0, 1] with the plan's channels, keeping the last image decoded
    (crops come grouped by image)."""

    def __init__(self, plan: SamplePlan, size: int):
        self.plan, self.size = plan, size
        self._index, self._image = -1, None

    def load_uint8(self, crop_ids: range | list[int]) -> "torch.Tensor":
        """Crops as (n, C, size, size) uint8, the form that travels between processes (a quarter of float32)."""
        import torch

        out = np.empty((len(crop_ids), self.size, self.size, self.plan.channels), dtype=np.uint8)
        for row, crop_id in enumerate(crop_ids):
            index, *box = self.plan.crops[crop_id]
            if index != self._index:
                self._index, self._image = index, crop_source(self.plan.images[index], self.plan.channels)
            out[row] = resize_crop(self._image, box, self.size)
        return torch.from_numpy(out).permute(0, 3, 1, 2)

    def load(self, crop_ids: range | list[int]) -> "torch.Tensor":
        return self.load_uint8(crop_ids).float().div_(255)


class CropBatches:
    """Batches of crops by number, as a map-style dataset for torch's DataLoader: item i is
    `batches[i]`'s crops as (n, C, size, size) uint8. Each worker process keeps its own last image."""

    def __init__(self, plan: SamplePlan, size: int, batches: list[range]):
        self.loader, self.batches = CropLoader(plan, size), batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> "torch.Tensor":
        return self.loader.load_uint8(self.batches[i])


def auto_workers(device_type: str = "cpu") -> int:
    """Decoding processes for `workers = -1`: on a GPU, every core but one, at most 4; on a CPU, none.

    On a CPU the decoders take cores from the computation: on 2 cores a collection kept
    0.90 of the compute speed decoding in its own process, 0.73 with one decoder
    (BENCHMARKS.md, "Activation collection").
    """
    if device_type != "cuda":
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(0, min(4, cores - 1))


def crop_batches(plan: SamplePlan, size: int, batches: list[range], workers: int = 0,
                 pin_memory: bool = False) -> Iterator["torch.Tensor"]:
    """`batches`' crops in order as (n, C, size, size) uint8, decoded and resized in `workers`
    processes (0: in this one, -1: `auto_workers()`; pinned memory means CUDA), each keeping two batches ready."""
    from torch.utils.data import DataLoader

    workers = auto_workers("cuda" if pin_memory else "cpu") if workers < 0 else workers
    workers = min(workers, len(batches))
    loader = DataLoader(CropBatches(plan, size, batches), batch_size=None, shuffle=False, num_workers=workers,
                        pin_memory=pin_memory, prefetch_factor=2 if workers else None)
    return iter(loader)
